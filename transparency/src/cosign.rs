//! C2SP `tlog-cosignature/v1` (signature type 0x04): a witness's Ed25519 signature over
//! `cosignature/v1\ntime T\n` followed by the checkpoint, sent as the 8-byte big-endian time
//! and the 64-byte signature. `signed_note` verifies notes through its `Verifier` trait; these
//! are the signer and verifier it lacks for this type.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use signed_note::{Signer, Verifier};
use zeroize::Zeroizing;

use crate::LogError;

/// The signature type byte of a cosignature key.
const COSIGNATURE_V1: u8 = 0x04;

/// The message a cosignature at `time` signs.
fn message(time: u64, checkpoint: &[u8]) -> Vec<u8> {
    let mut m = format!("cosignature/v1\ntime {time}\n").into_bytes();
    m.extend_from_slice(checkpoint);
    m
}

fn key_id(name: &str, key: &VerifyingKey) -> u32 {
    let mut typed = vec![COSIGNATURE_V1];
    typed.extend_from_slice(key.as_bytes());
    signed_note::key_id(name, &typed)
}

/// A witness's signing key; the seed is zeroized when dropped and never printed.
pub struct CosignatureSigner {
    name: String,
    key: SigningKey,
    id: u32,
    time: u64,
}

impl std::fmt::Debug for CosignatureSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CosignatureSigner")
            .field("name", &self.name)
            .field("id", &format_args!("{:08x}", self.id))
            .finish_non_exhaustive()
    }
}

impl CosignatureSigner {
    /// A signer named `name` with the 32-byte Ed25519 seed `seed`, signing at `time`
    /// (seconds since the epoch).
    pub fn new(name: &str, seed: &Zeroizing<[u8; 32]>, time: u64) -> Result<Self, LogError> {
        if !signed_note::is_key_name_valid(name) {
            return Err(LogError::KeyName(name.into()));
        }
        let key = SigningKey::from_bytes(seed);
        let id = key_id(name, &key.verifying_key());
        Ok(CosignatureSigner {
            name: name.into(),
            key,
            id,
            time,
        })
    }

    /// Signs at `time` from now on.
    pub fn set_time(&mut self, time: u64) {
        self.time = time;
    }

    /// The verifier key, `name+id+base64(0x04 ‖ public key)`.
    pub fn verifier_key(&self) -> String {
        let mut typed = vec![COSIGNATURE_V1];
        typed.extend_from_slice(self.key.verifying_key().as_bytes());
        format!("{}+{:08x}+{}", self.name, self.id, STANDARD.encode(typed))
    }
}

impl Signer for CosignatureSigner {
    fn name(&self) -> &str {
        &self.name
    }

    fn key_id(&self) -> u32 {
        self.id
    }

    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, signature::Error> {
        let sig = self.key.sign(&message(self.time, msg));
        let mut out = self.time.to_be_bytes().to_vec();
        out.extend_from_slice(&sig.to_bytes());
        Ok(out)
    }
}

/// A witness's public key, parsed from its verifier key.
#[derive(Debug, Clone)]
pub struct CosignatureVerifier {
    name: String,
    id: u32,
    key: VerifyingKey,
}

impl CosignatureVerifier {
    /// Parses `name+id+base64(0x04 ‖ key)`, checking the id against the key.
    pub fn new(vkey: &str) -> Result<Self, LogError> {
        let bad = || LogError::VerifierKey(vkey.chars().take(80).collect());
        let mut parts = vkey.splitn(3, '+');
        let (Some(name), Some(id), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad());
        };
        let id = u32::from_str_radix(id, 16).map_err(|_| bad())?;
        let typed = STANDARD.decode(key).map_err(|_| bad())?;
        let [COSIGNATURE_V1, rest @ ..] = typed.as_slice() else {
            return Err(bad());
        };
        let bytes: [u8; 32] = rest.try_into().map_err(|_| bad())?;
        let key = VerifyingKey::from_bytes(&bytes).map_err(|_| bad())?;
        if !signed_note::is_key_name_valid(name) || key_id(name, &key) != id {
            return Err(bad());
        }
        Ok(CosignatureVerifier {
            name: name.into(),
            id,
            key,
        })
    }

    /// The time a cosignature states, if it is one of this shape.
    pub fn time(sig: &[u8]) -> Option<u64> {
        Some(u64::from_be_bytes(sig.get(..8)?.try_into().ok()?))
    }
}

impl Verifier for CosignatureVerifier {
    fn name(&self) -> &str {
        &self.name
    }

    fn key_id(&self) -> u32 {
        self.id
    }

    fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        let (Some(time), Some(raw)) = (Self::time(sig), sig.get(8..)) else {
            return false;
        };
        let Ok(sig) = Signature::from_slice(raw) else {
            return false;
        };
        self.key.verify_strict(&message(time, msg), &sig).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cosignature_verifies_under_its_key_and_nothing_else() {
        let seed = Zeroizing::new([7u8; 32]);
        let signer =
            CosignatureSigner::new("witness.example", &seed, 1_700_000_000).expect("test value");
        let verifier = CosignatureVerifier::new(&signer.verifier_key()).expect("test value");
        assert_eq!(verifier.key_id(), signer.key_id());
        let text = b"log.example\n5\nAAAA\n";
        let sig = signer.sign(text).expect("test value");
        assert_eq!(sig.len(), 72);
        assert_eq!(CosignatureVerifier::time(&sig), Some(1_700_000_000));
        assert!(verifier.verify(text, &sig));
        assert!(!verifier.verify(b"log.example\n6\nAAAA\n", &sig));
        let mut later = sig.clone();
        later[7] ^= 1;
        assert!(!verifier.verify(text, &later), "the time is signed");
        let other = CosignatureSigner::new("witness.example", &Zeroizing::new([8u8; 32]), 1)
            .expect("test value");
        assert!(
            !CosignatureVerifier::new(&other.verifier_key())
                .expect("test value")
                .verify(text, &sig)
        );
        assert!(!format!("{signer:?}").contains("[7"));
    }

    #[test]
    fn malformed_verifier_keys_are_refused() {
        let signer =
            CosignatureSigner::new("w", &Zeroizing::new([1u8; 32]), 0).expect("test value");
        let good = signer.verifier_key();
        let (name, rest) = good.split_once('+').expect("test value");
        for bad in [
            String::new(),
            "w+00000000".into(),
            format!(
                "{name}+ffffffff+{}",
                rest.split_once('+').expect("test value").1
            ),
            format!("{name}+{}", rest.replace('+', "+A")),
            good.replace("+", " +"),
        ] {
            assert!(
                matches!(
                    CosignatureVerifier::new(&bad),
                    Err(LogError::VerifierKey(_))
                ),
                "{bad}"
            );
        }
        assert!(matches!(
            CosignatureSigner::new("a b", &Zeroizing::new([1u8; 32]), 0),
            Err(LogError::KeyName(_))
        ));
    }
}
