//! Wrappers for what must never reach a log, `Debug` output or the disk: account bearer tokens,
//! Privacy Pass tokens, request and response plaintext. Each zeroizes its memory on drop
//! (`zeroize::Zeroizing`) and prints as `[redacted]`.

use zeroize::Zeroizing;

/// A secret string (an account bearer token, an `Authorization` value).
#[derive(Clone, Default)]
pub struct SecretString(Zeroizing<String>);

impl SecretString {
    /// Wraps `s`; surrounding whitespace (a key file's newline) is dropped.
    pub fn new(s: String) -> Self {
        let s = Zeroizing::new(s);
        SecretString(Zeroizing::new(s.trim().to_owned()))
    }

    /// The secret, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the secret is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for SecretString {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Secret bytes (request or response plaintext).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SecretBytes(Zeroizing<Vec<u8>>);

impl SecretBytes {
    /// Wraps `bytes`.
    pub fn new(bytes: Vec<u8>) -> Self {
        SecretBytes(Zeroizing::new(bytes))
    }

    /// The bytes, for the one place that must read them.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// Length in bytes (not secret).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no bytes.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<Zeroizing<Vec<u8>>> for SecretBytes {
    fn from(z: Zeroizing<Vec<u8>>) -> Self {
        SecretBytes(z)
    }
}

impl std::fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[redacted; {} bytes]", self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_prints_the_secret() {
        let s = SecretString::new(" acct-MARKER-91\n".to_owned());
        assert_eq!(s.expose(), "acct-MARKER-91");
        assert_eq!(format!("{s:?}"), "[redacted]");
        let b = SecretBytes::new(b"MARKER-91".to_vec());
        let dbg = format!("{b:?}");
        assert!(!dbg.contains("MARKER"), "{dbg}");
        assert_eq!(dbg, "[redacted; 9 bytes]");
    }
}
