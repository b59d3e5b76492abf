//! The SEV hashes table: what QEMU writes into the firmware's hashes page for a measured direct
//! boot (`kernel-hashes=on`), and what the AmdSev firmware checks kernel, initrd and command
//! line against before it runs them.
//!
//! Layout (QEMU `target/i386/sev.c`, `SevHashTable` / `PaddedSevHashTable`; OVMF
//! `OvmfPkg/Library/BlobVerifierLib/BlobVerifierSevHashes.c`): a GUIDed table, packed:
//!
//! ```text
//! GUID 9438d606-4f22-4cc9-b479-a793d411fd21, u16 len = 168
//!   entry: GUID 97d02dd8-bd20-4c94-aa78-e7714d36ab2a (cmdline), u16 len = 50, SHA-256
//!   entry: GUID 44baf731-3a2f-4bd7-9af1-41e29169781d (initrd),  u16 len = 50, SHA-256
//!   entry: GUID 4de79437-abd2-427f-b835-d5b172d2045b (kernel),  u16 len = 50, SHA-256
//! zero padding to a multiple of 16 bytes (176)
//! ```
//!
//! GUIDs are stored in UEFI byte order (first three fields little-endian), lengths little-endian.
//! The page is 4096 zero bytes with the table at the offset of the table's GPA within its page.
//!
//! The `sev` crate builds the same bytes, but only from file paths and only inside its own
//! digest function; the launcher needs the page itself (to inject it under emulation) and the
//! digest from precomputed file hashes, so it is built here and tested against the crate.

use sha2::{Digest as _, Sha256};

use super::LaunchError;

/// `SEV_HASH_TABLE_HEADER_GUID`.
const TABLE_GUID: &str = "9438d606-4f22-4cc9-b479-a793d411fd21";
/// `SEV_CMDLINE_ENTRY_GUID`.
const CMDLINE_GUID: &str = "97d02dd8-bd20-4c94-aa78-e7714d36ab2a";
/// `SEV_INITRD_ENTRY_GUID`.
const INITRD_GUID: &str = "44baf731-3a2f-4bd7-9af1-41e29169781d";
/// `SEV_KERNEL_ENTRY_GUID`.
const KERNEL_GUID: &str = "4de79437-abd2-427f-b835-d5b172d2045b";

const ENTRY_LEN: usize = 16 + 2 + 32;
const TABLE_LEN: usize = 16 + 2 + 3 * ENTRY_LEN;
/// The table padded to a multiple of 16 bytes.
pub const PADDED_TABLE_LEN: usize = TABLE_LEN.div_ceil(16) * 16;
/// A page.
pub const PAGE_LEN: usize = 4096;

/// SHA-256 of the three measured boot inputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BootHashes {
    /// SHA-256 of the kernel file as given to QEMU (`-kernel`).
    pub kernel: [u8; 32],
    /// SHA-256 of the initrd file (of no bytes when there is none).
    pub initrd: [u8; 32],
    /// SHA-256 of the command line followed by one NUL byte (of a lone NUL when there is none).
    pub cmdline: [u8; 32],
}

impl BootHashes {
    /// Hashes of in-memory kernel, initrd and command line.
    ///
    /// The command line is hashed exactly as given plus a NUL, which is what QEMU hashes. A
    /// command line with leading or trailing whitespace is refused: QEMU keeps it, while some
    /// calculators (sev-snp-measure, the `sev` crate) strip it, so its measurement would be
    /// ambiguous.
    pub fn new(kernel: &[u8], initrd: &[u8], cmdline: Option<&str>) -> Result<Self, LaunchError> {
        Ok(BootHashes {
            kernel: Sha256::digest(kernel).into(),
            initrd: Sha256::digest(initrd).into(),
            cmdline: cmdline_hash(cmdline)?,
        })
    }

    /// Hashes from the kernel's and initrd's SHA-256 (as an image manifest records them).
    pub fn from_digests(
        kernel_sha256: [u8; 32],
        initrd_sha256: [u8; 32],
        cmdline: Option<&str>,
    ) -> Result<Self, LaunchError> {
        Ok(BootHashes {
            kernel: kernel_sha256,
            initrd: initrd_sha256,
            cmdline: cmdline_hash(cmdline)?,
        })
    }

    /// The padded hashes table.
    pub fn table(&self) -> [u8; PADDED_TABLE_LEN] {
        let mut t = [0u8; PADDED_TABLE_LEN];
        t[..16].copy_from_slice(&guid_bytes(TABLE_GUID));
        t[16..18].copy_from_slice(&(TABLE_LEN as u16).to_le_bytes());
        for (i, (guid, hash)) in [
            (CMDLINE_GUID, &self.cmdline),
            (INITRD_GUID, &self.initrd),
            (KERNEL_GUID, &self.kernel),
        ]
        .into_iter()
        .enumerate()
        {
            let e = &mut t[18 + i * ENTRY_LEN..18 + (i + 1) * ENTRY_LEN];
            e[..16].copy_from_slice(&guid_bytes(guid));
            e[16..18].copy_from_slice(&(ENTRY_LEN as u16).to_le_bytes());
            e[18..].copy_from_slice(hash);
        }
        t
    }

    /// The 4096-byte hashes page with the table at `offset` (the table GPA's offset in its
    /// page, from the firmware's SEV metadata).
    pub fn page(&self, offset: usize) -> Result<[u8; PAGE_LEN], LaunchError> {
        if offset + PADDED_TABLE_LEN > PAGE_LEN {
            return Err(LaunchError::HashesTableOffset(offset));
        }
        let mut page = [0u8; PAGE_LEN];
        page[offset..offset + PADDED_TABLE_LEN].copy_from_slice(&self.table());
        Ok(page)
    }
}

fn cmdline_hash(cmdline: Option<&str>) -> Result<[u8; 32], LaunchError> {
    let Some(c) = cmdline else {
        return Ok(Sha256::digest([0u8]).into());
    };
    if c.trim() != c {
        return Err(LaunchError::CmdlineWhitespace);
    }
    if c.contains('\0') {
        return Err(LaunchError::CmdlineNul);
    }
    let mut h = Sha256::new();
    h.update(c.as_bytes());
    h.update([0u8]);
    Ok(h.finalize().into())
}

/// A GUID in its UEFI (mixed-endian) byte order.
pub(crate) fn guid_bytes(guid: &str) -> [u8; 16] {
    let hexd: String = guid.chars().filter(|c| *c != '-').collect();
    let mut b = [0u8; 16];
    // The constants above are well-formed; a malformed one yields zeros, which tests catch.
    let _ = hex::decode_to_slice(hexd, &mut b);
    b[0..4].reverse();
    b[4..6].reverse();
    b[6..8].reverse();
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guid_byte_order_is_uefi() {
        assert_eq!(
            hex::encode(guid_bytes(TABLE_GUID)),
            "06d63894224fc94cb479a793d411fd21"
        );
    }

    #[test]
    fn table_matches_the_sev_crate_byte_for_byte() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (k, i) = (dir.path().join("k"), dir.path().join("i"));
        std::fs::write(&k, b"kernel bytes").expect("write");
        std::fs::write(&i, b"initrd bytes").expect("write");
        let ours = BootHashes::new(
            b"kernel bytes",
            b"initrd bytes",
            Some("console=ttyS0 quiet"),
        )
        .expect("hashes");
        let theirs = sev::measurement::sev_hashes::SevHashes::new(
            k.clone(),
            Some(i.clone()),
            Some("console=ttyS0 quiet"),
        )
        .expect("sev crate");
        assert_eq!(
            ours.table().to_vec(),
            theirs.construct_table().expect("table").to_vec()
        );
        assert_eq!(
            ours.page(0xc00).expect("page").to_vec(),
            theirs.construct_page(0xc00).expect("page")
        );
        // No initrd and no command line.
        let ours = BootHashes::new(b"kernel bytes", b"", None).expect("hashes");
        let theirs = sev::measurement::sev_hashes::SevHashes::new(k, None, None).expect("sev");
        assert_eq!(
            ours.table().to_vec(),
            theirs.construct_table().expect("table").to_vec()
        );
    }

    #[test]
    fn refuses_ambiguous_command_lines_and_bad_offsets() {
        assert!(matches!(
            BootHashes::new(b"k", b"", Some(" console=ttyS0")),
            Err(LaunchError::CmdlineWhitespace)
        ));
        assert!(matches!(
            BootHashes::new(b"k", b"", Some("a\0b")),
            Err(LaunchError::CmdlineNul)
        ));
        let h = BootHashes::new(b"k", b"", None).expect("hashes");
        assert!(matches!(
            h.page(4000),
            Err(LaunchError::HashesTableOffset(4000))
        ));
    }
}
