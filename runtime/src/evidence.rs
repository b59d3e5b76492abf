//! Evidence bundles for the current key: attester output bound to the key config and expiry,
//! cached for the key's life when the client brings no nonce.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use cloister_protocol::{EvidenceBundle, report_data};

use crate::attest::{AttestError, Attester};
use crate::keys::KeyEpoch;

/// Why a bundle could not be produced.
#[derive(Debug, thiserror::Error)]
pub enum EvidenceError {
    /// The nonce is not acceptable.
    #[error("nonce refused: {0}")]
    Nonce(#[from] cloister_protocol::BindingError),
    /// The attester failed.
    #[error(transparent)]
    Attest(#[from] AttestError),
}

/// Produces and caches bundles.
#[derive(Debug)]
pub struct EvidenceService {
    attester: Arc<dyn Attester>,
    image_manifest_digest: [u8; 32],
    cache: Mutex<HashMap<u8, Arc<Vec<u8>>>>,
}

impl EvidenceService {
    /// A service over an attester, for an image whose manifest has this SHA-256.
    pub fn new(attester: Arc<dyn Attester>, image_manifest_digest: [u8; 32]) -> Self {
        EvidenceService {
            attester,
            image_manifest_digest,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The JSON bundle for `epoch` binding `nonce` (empty: the cached bundle). Blocking.
    pub fn bundle(&self, epoch: &KeyEpoch, nonce: &[u8]) -> Result<Arc<Vec<u8>>, EvidenceError> {
        if nonce.is_empty()
            && let Some(b) = self
                .cache
                .lock()
                .ok()
                .and_then(|c| c.get(&epoch.key_id()).cloned())
        {
            return Ok(b);
        }
        let rd = report_data(epoch.config(), epoch.expires_at(), nonce)?;
        let ev = self.attester.evidence(&rd)?;
        let bundle = EvidenceBundle {
            platform: ev.platform,
            evidence: ev.evidence,
            endorsements: ev.endorsements,
            key_config: epoch.config().to_vec(),
            expires_at: epoch.expires_at(),
            image_manifest_digest: self.image_manifest_digest,
            log_proof: None,
        };
        let json = Arc::new(bundle.to_json());
        if nonce.is_empty()
            && let Ok(mut c) = self.cache.lock()
        {
            // Only the current and previous keys matter; drop the rest.
            if c.len() > 4 {
                c.clear();
            }
            c.insert(epoch.key_id(), Arc::clone(&json));
        }
        Ok(json)
    }
}
