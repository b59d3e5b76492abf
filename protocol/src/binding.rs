//! The report_data binding: what ties a hardware report to the guest's ephemeral OHTTP key.
//!
//! `report_data` (64 bytes, the only guest-chosen field of an SNP report or TDX quote) is
//!
//! ```text
//! SHA-512( "cloister/evidence/v1" 0x00
//!          ‖ u32be(len(key_config)) ‖ key_config
//!          ‖ u64be(expires_at)
//!          ‖ u32be(len(nonce)) ‖ nonce )
//! ```
//!
//! The design note writes the preimage as `domain ‖ key_config ‖ expiry ‖ nonce`; the length
//! prefixes make the encoding injective (two variable-length fields side by side would let bytes
//! slide from one to the other), and the NUL ends the domain so no future domain can be a prefix
//! of this one. The nonce is empty for the cached bundle and client-chosen for a fresh one.

use sha2::{Digest, Sha512};

/// Domain separator of evidence binding version 1.
pub const BINDING_DOMAIN_V1: &[u8] = b"cloister/evidence/v1";

/// Longest nonce a client may ask the guest to bind (bytes).
pub const MAX_NONCE_LEN: usize = 64;

/// Errors building a binding.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum BindingError {
    /// The nonce is longer than [`MAX_NONCE_LEN`].
    #[error("nonce is {found} bytes, at most {max} are allowed")]
    NonceTooLong {
        /// Bytes found.
        found: usize,
        /// Bytes allowed.
        max: usize,
    },
    /// A field does not fit its u32 length prefix.
    #[error("key config is {found} bytes, too long to bind")]
    KeyConfigTooLong {
        /// Bytes found.
        found: usize,
    },
}

/// Computes the 64-byte `report_data` that binds `key_config`, `expires_at` (Unix seconds) and
/// `nonce` into a hardware report.
pub fn report_data(
    key_config: &[u8],
    expires_at: u64,
    nonce: &[u8],
) -> Result<[u8; 64], BindingError> {
    if nonce.len() > MAX_NONCE_LEN {
        return Err(BindingError::NonceTooLong {
            found: nonce.len(),
            max: MAX_NONCE_LEN,
        });
    }
    let key_len = u32::try_from(key_config.len()).map_err(|_| BindingError::KeyConfigTooLong {
        found: key_config.len(),
    })?;
    // Fits: bounded by MAX_NONCE_LEN above.
    let nonce_len = nonce.len() as u32;
    let mut h = Sha512::new();
    h.update(BINDING_DOMAIN_V1);
    h.update([0u8]);
    h.update(key_len.to_be_bytes());
    h.update(key_config);
    h.update(expires_at.to_be_bytes());
    h.update(nonce_len.to_be_bytes());
    h.update(nonce);
    Ok(h.finalize().into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_documented_preimage() {
        // Recompute the preimage by hand, independently of the incremental hasher above.
        let mut pre = Vec::new();
        pre.extend_from_slice(b"cloister/evidence/v1\0");
        pre.extend_from_slice(&[0, 0, 0, 3]);
        pre.extend_from_slice(b"key");
        pre.extend_from_slice(&1_700_000_000u64.to_be_bytes());
        pre.extend_from_slice(&[0, 0, 0, 2]);
        pre.extend_from_slice(b"no");
        let expected: [u8; 64] = Sha512::digest(&pre).into();
        assert_eq!(report_data(b"key", 1_700_000_000, b"no"), Ok(expected));
    }

    #[test]
    fn every_input_changes_the_binding() {
        let base = report_data(b"key", 10, b"").expect("binds");
        assert_ne!(base, report_data(b"kez", 10, b"").expect("binds"));
        assert_ne!(base, report_data(b"key", 11, b"").expect("binds"));
        assert_ne!(base, report_data(b"key", 10, b"\0").expect("binds"));
        // Bytes cannot slide between key config and nonce.
        assert_ne!(
            report_data(b"ab", 10, b"c").expect("binds"),
            report_data(b"a", 10, b"bc").expect("binds")
        );
    }

    #[test]
    fn long_nonce_is_refused() {
        assert_eq!(
            report_data(b"k", 1, &[0u8; 65]),
            Err(BindingError::NonceTooLong { found: 65, max: 64 })
        );
    }
}
