//! Field codecs shared by the wire types, and the error every decoder returns.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::platform::{Platform, UnknownPlatform};

/// Why a bundle (or another wire object) was refused. Each reason has its own variant so that a
/// caller — and a test — can tell which rule refused it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BundleError {
    /// The whole encoding is larger than allowed.
    #[error("bundle is {found} bytes, at most {max} are accepted")]
    TooLarge {
        /// Bytes found.
        found: usize,
        /// Bytes allowed.
        max: usize,
    },
    /// Not JSON of the expected shape (includes unknown fields).
    #[error("bundle is not valid JSON of the expected shape: {0}")]
    Json(String),
    /// A version this crate does not speak.
    #[error("bundle version {found} is not supported (this build speaks version {supported})")]
    UnsupportedVersion {
        /// Version found.
        found: u32,
        /// Version supported.
        supported: u32,
    },
    /// A platform name this crate does not know.
    #[error("platform {found:?} is unknown (expected sev-snp, tdx or emulated-sev-snp)")]
    UnknownPlatform {
        /// Name found (clipped).
        found: String,
    },
    /// A field is larger than its limit.
    #[error("field {field} is {found} bytes, at most {max} are accepted")]
    FieldTooLarge {
        /// Field name.
        field: &'static str,
        /// Size found.
        found: usize,
        /// Size allowed.
        max: usize,
    },
    /// A list has more items than allowed.
    #[error("field {field} has {found} items, at most {max} are accepted")]
    TooManyItems {
        /// Field name.
        field: &'static str,
        /// Items found.
        found: usize,
        /// Items allowed.
        max: usize,
    },
    /// A field is not valid standard base64.
    #[error("field {field} is not valid base64")]
    Base64 {
        /// Field name.
        field: &'static str,
    },
    /// A field is not lower-case hex.
    #[error("field {field} is not lower-case hex")]
    Hex {
        /// Field name.
        field: &'static str,
    },
    /// A fixed-size field has the wrong size.
    #[error("field {field} is {found} bytes, expected {expected}")]
    WrongLength {
        /// Field name.
        field: &'static str,
        /// Size found.
        found: usize,
        /// Size expected.
        expected: usize,
    },
    /// The platform requires a field that is absent.
    #[error("field {field} is required for platform {platform}")]
    MissingField {
        /// Field name.
        field: &'static str,
        /// Platform of the bundle.
        platform: Platform,
    },
    /// A field that the platform does not use is present.
    #[error("field {field} is not used by platform {platform}")]
    UnexpectedField {
        /// Field name.
        field: &'static str,
        /// Platform of the bundle.
        platform: Platform,
    },
}

/// Clips attacker-chosen text before it goes into an error message.
impl From<UnknownPlatform> for BundleError {
    fn from(e: UnknownPlatform) -> Self {
        BundleError::UnknownPlatform { found: e.0 }
    }
}

pub(crate) fn clip(s: &str) -> String {
    s.chars().take(40).collect()
}

pub(crate) fn json_error(e: serde_json::Error) -> BundleError {
    BundleError::Json(e.to_string())
}

pub(crate) fn enc(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

/// Decodes base64, refusing before decoding anything whose decoded size would exceed `max`.
pub(crate) fn b64(field: &'static str, s: &str, max: usize) -> Result<Vec<u8>, BundleError> {
    // Padded base64: 4 characters per 3 bytes.
    let decoded_upper = s.len() / 4 * 3;
    if decoded_upper > max + 2 {
        return Err(BundleError::FieldTooLarge {
            field,
            found: decoded_upper,
            max,
        });
    }
    let raw = STANDARD
        .decode(s.as_bytes())
        .map_err(|_| BundleError::Base64 { field })?;
    if raw.len() > max {
        return Err(BundleError::FieldTooLarge {
            field,
            found: raw.len(),
            max,
        });
    }
    Ok(raw)
}

pub(crate) fn b64_opt(
    field: &'static str,
    s: Option<&str>,
    max: usize,
) -> Result<Option<Vec<u8>>, BundleError> {
    s.map(|s| b64(field, s, max)).transpose()
}

/// Decodes a 32-byte digest written as 64 lower-case hex digits.
pub(crate) fn hex32(field: &'static str, s: &str) -> Result<[u8; 32], BundleError> {
    if s.len() != 64 {
        return Err(BundleError::WrongLength {
            field,
            found: s.len() / 2,
            expected: 32,
        });
    }
    if s.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(BundleError::Hex { field });
    }
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out).map_err(|_| BundleError::Hex { field })?;
    Ok(out)
}
