//! Where the guest finds its model weights, as the measured kernel command line says.
//!
//! Either inside the initramfs (hashed whole by the firmware before the kernel starts), or on a
//! read-only virtio disk that the guest opens through dm-verity: the disk is an EROFS image
//! followed by its hash tree, and the tree's root hash is on the command line, so the launch
//! measurement binds every byte of the weights while the guest verifies each block only as it
//! reads it.
//!
//! `cloister.weights=initramfs` or `cloister.weights=verity:BLOCKS:ROOT:SALT`, where BLOCKS is
//! the number of 4096-byte data blocks (the hash tree starts right after them, no verity
//! superblock), ROOT the SHA-256 root hash and SALT the 32-byte salt, both in lower-case hex.

use std::fmt;

/// Data and hash block size of the weights disk, bytes.
pub const VERITY_BLOCK_SIZE: u64 = 4096;
/// The verity hash algorithm (as dm-verity and veritysetup name it).
pub const VERITY_HASH: &str = "sha256";

/// How the weights reach the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Weights {
    /// Files under `/cloister/models` in the initramfs.
    #[default]
    Initramfs,
    /// An EROFS image on the first virtio disk, opened through dm-verity.
    Verity(VerityWeights),
}

/// The dm-verity parameters of a weights disk: data blocks, then the hash tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerityWeights {
    /// 4096-byte data blocks (the file system); the hash tree starts at this block.
    pub data_blocks: u64,
    /// Root hash of the tree.
    pub root_hash: [u8; 32],
    /// Salt hashed before every block.
    pub salt: [u8; 32],
}

impl VerityWeights {
    /// Bytes of file system before the hash tree.
    pub fn data_bytes(&self) -> u64 {
        self.data_blocks * VERITY_BLOCK_SIZE
    }

    /// The dm-verity target line (`dmsetup` table syntax) over `device`, which holds the data
    /// and, after it, the hash tree: format version 1, 4096-byte blocks, SHA-256.
    pub fn table(&self, device: &str) -> String {
        format!(
            "0 {sectors} verity 1 {device} {device} {bs} {bs} {blocks} {blocks} {VERITY_HASH} {root} {salt}",
            sectors = self.data_bytes() / 512,
            bs = VERITY_BLOCK_SIZE,
            blocks = self.data_blocks,
            root = hex::encode(self.root_hash),
            salt = hex::encode(self.salt),
        )
    }
}

/// Why a `cloister.weights` value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WeightsError {
    /// Neither `initramfs` nor `verity:…`.
    #[error("expected initramfs or verity:BLOCKS:ROOT:SALT")]
    Kind,
    /// The verity form without exactly three fields.
    #[error("verity needs three fields, BLOCKS:ROOT:SALT")]
    Fields,
    /// BLOCKS is not a decimal count between 1 and 2^40.
    #[error("the data block count is not a number from 1 to 2^40")]
    Blocks,
    /// ROOT or SALT is not 64 lower-case hex digits.
    #[error("the {0} is not 64 lower-case hex digits")]
    Hex(&'static str),
}

impl WeightsError {
    /// What was expected, for the command-line error.
    pub fn expected(&self) -> &'static str {
        match self {
            WeightsError::Kind => "initramfs or verity:BLOCKS:ROOT:SALT",
            WeightsError::Fields => "verity:BLOCKS:ROOT:SALT (three fields)",
            WeightsError::Blocks => "verity:BLOCKS:… with BLOCKS from 1 to 2^40",
            WeightsError::Hex("salt") => "verity:…:SALT with SALT 64 lower-case hex digits",
            WeightsError::Hex(_) => "verity:…:ROOT:… with ROOT 64 lower-case hex digits",
        }
    }
}

/// Largest data block count accepted (4 PiB of weights).
const MAX_BLOCKS: u64 = 1 << 40;

fn hex32(field: &str, what: &'static str) -> Result<[u8; 32], WeightsError> {
    let lower = field
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    let mut out = [0u8; 32];
    if field.len() != 64 || !lower || hex::decode_to_slice(field, &mut out).is_err() {
        return Err(WeightsError::Hex(what));
    }
    Ok(out)
}

impl std::str::FromStr for Weights {
    type Err = WeightsError;

    fn from_str(value: &str) -> Result<Self, WeightsError> {
        if value == "initramfs" {
            return Ok(Weights::Initramfs);
        }
        let Some(rest) = value.strip_prefix("verity:") else {
            return Err(WeightsError::Kind);
        };
        let fields: Vec<&str> = rest.split(':').collect();
        let [blocks, root, salt] = fields[..] else {
            return Err(WeightsError::Fields);
        };
        let digits = !blocks.is_empty() && blocks.bytes().all(|b| b.is_ascii_digit());
        let data_blocks: u64 = match blocks.parse() {
            Ok(n) if digits && (1..=MAX_BLOCKS).contains(&n) => n,
            _ => return Err(WeightsError::Blocks),
        };
        Ok(Weights::Verity(VerityWeights {
            data_blocks,
            root_hash: hex32(root, "root hash")?,
            salt: hex32(salt, "salt")?,
        }))
    }
}

impl fmt::Display for Weights {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Weights::Initramfs => f.write_str("initramfs"),
            Weights::Verity(v) => write!(
                f,
                "verity:{}:{}:{}",
                v.data_blocks,
                hex::encode(v.root_hash),
                hex::encode(v.salt)
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOT: &str = "c5ac36e13f90f983b3fe1aaaae7d26a54621cedbda5f64862f60510e4bf9e306";
    const SALT: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

    #[test]
    fn round_trips_both_forms() {
        for text in ["initramfs".to_owned(), format!("verity:26:{ROOT}:{SALT}")] {
            let w: Weights = text.parse().expect("parses");
            assert_eq!(w.to_string(), text);
        }
    }

    #[test]
    fn renders_the_table_veritysetup_would_open() {
        // `veritysetup format --no-superblock --data-blocks=26 --hash-offset=106496` over a
        // 26-block EROFS image printed this root hash for this salt.
        let Ok(Weights::Verity(v)) = format!("verity:26:{ROOT}:{SALT}").parse() else {
            panic!("verity form");
        };
        assert_eq!(
            v.table("/dev/vda"),
            format!("0 208 verity 1 /dev/vda /dev/vda 4096 4096 26 26 sha256 {ROOT} {SALT}")
        );
    }

    #[test]
    fn refuses_each_malformed_value_by_name() {
        let upper = ROOT.to_uppercase();
        for (value, expected) in [
            ("", WeightsError::Kind),
            ("disk", WeightsError::Kind),
            ("verity", WeightsError::Kind),
            ("verity:26", WeightsError::Fields),
            (&*format!("verity:26:{ROOT}:{SALT}:x"), WeightsError::Fields),
            (&*format!("verity:0:{ROOT}:{SALT}"), WeightsError::Blocks),
            (&*format!("verity:+1:{ROOT}:{SALT}"), WeightsError::Blocks),
            (&*format!("verity::{ROOT}:{SALT}"), WeightsError::Blocks),
            (
                &*format!("verity:1099511627777:{ROOT}:{SALT}"),
                WeightsError::Blocks,
            ),
            (
                &*format!("verity:1:{upper}:{SALT}"),
                WeightsError::Hex("root hash"),
            ),
            (&*format!("verity:1:{ROOT}:abcd"), WeightsError::Hex("salt")),
        ] {
            assert_eq!(value.parse::<Weights>(), Err(expected), "{value:?}");
        }
    }
}
