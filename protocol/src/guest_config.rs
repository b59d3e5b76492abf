//! The guest's configuration, carried on the kernel command line so that it is measured: an
//! image configured for emulated attestation has another launch digest than a production one.
//!
//! The builder renders a [`GuestConfig`] into `cloister.*` parameters; the guest parses them
//! back. Parameters without the `cloister.` prefix belong to the kernel and are ignored here;
//! an unknown `cloister.*` key, a missing value, a duplicate or a malformed value is an error,
//! so a typo cannot silently fall back to a default.

use std::fmt;
use std::time::Duration;

use crate::weights::Weights;

/// Where the image keeps model weights, one directory per pinned model (the builder writes
/// them there, in the initramfs or on the weights disk's mount point; the runtime reads them).
pub const MODELS_DIR: &str = "/cloister/models";

/// Where the guest gets its evidence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttestMode {
    /// AMD SEV-SNP hardware (configfs-tsm, else /dev/sev-guest).
    Snp,
    /// Intel TDX hardware (configfs-tsm).
    Tdx,
    /// The emulated AMD secure processor on the host (insecure; CI and research).
    Emulated,
}

impl AttestMode {
    /// Command-line value.
    pub fn as_str(self) -> &'static str {
        match self {
            AttestMode::Snp => "snp",
            AttestMode::Tdx => "tdx",
            AttestMode::Emulated => "emulated",
        }
    }
}

/// Default vsock port of the guest's HTTP server.
pub const DEFAULT_PORT: u32 = 8000;
/// Default vsock port of the emulated secure processor on the host (CID 2).
pub const DEFAULT_EMULATED_SP_PORT: u32 = 5000;

/// Everything the guest runtime is told at boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestConfig {
    /// `cloister.attest=snp|tdx|emulated` (required).
    pub attest: AttestMode,
    /// `cloister.port=` vsock port to serve on.
    pub port: u32,
    /// `cloister.sp_port=` host vsock port of the emulated secure processor.
    pub emulated_sp_port: u32,
    /// `cloister.model=` workload model name (`none` serves only `echo`).
    pub model: String,
    /// `cloister.weights=` where the model weights are (initramfs, or a dm-verity disk).
    pub weights: Weights,
    /// `cloister.max_body=` largest request body, bytes.
    pub max_body: usize,
    /// `cloister.max_concurrent=` requests processed at once (more get 503).
    pub max_concurrent: usize,
    /// `cloister.deadline_ms=` per-request deadline.
    pub deadline: Duration,
    /// `cloister.key_lifetime_s=` lifetime of an ephemeral key and its evidence.
    pub key_lifetime: Duration,
}

impl GuestConfig {
    /// Defaults around an attestation mode.
    pub fn new(attest: AttestMode) -> Self {
        GuestConfig {
            attest,
            port: DEFAULT_PORT,
            emulated_sp_port: DEFAULT_EMULATED_SP_PORT,
            model: "none".to_owned(),
            weights: Weights::Initramfs,
            max_body: 1 << 20,
            max_concurrent: 4,
            deadline: Duration::from_secs(120),
            key_lifetime: Duration::from_secs(24 * 3600),
        }
    }
}

/// Why a command line was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A `cloister.*` key this build does not know.
    #[error("unknown kernel parameter {0}")]
    UnknownKey(String),
    /// `cloister.key` without `=value`.
    #[error("kernel parameter {0} has no value")]
    MissingValue(String),
    /// A key given twice.
    #[error("kernel parameter {0} is given twice")]
    Duplicate(String),
    /// A value that does not parse.
    #[error("kernel parameter {key} has an invalid value {value:?}: {expected}")]
    InvalidValue {
        /// Key.
        key: String,
        /// Value found (clipped).
        value: String,
        /// What was expected.
        expected: &'static str,
    },
    /// A required key is absent.
    #[error("required kernel parameter {0} is missing")]
    Missing(&'static str),
}

const KEYS: [&str; 9] = [
    "cloister.attest",
    "cloister.port",
    "cloister.sp_port",
    "cloister.model",
    "cloister.weights",
    "cloister.max_body",
    "cloister.max_concurrent",
    "cloister.deadline_ms",
    "cloister.key_lifetime_s",
];

fn invalid(key: &str, value: &str, expected: &'static str) -> ConfigError {
    ConfigError::InvalidValue {
        key: key.to_owned(),
        value: value.chars().take(40).collect(),
        expected,
    }
}

fn number<T: std::str::FromStr + PartialOrd>(
    key: &str,
    value: &str,
    min: T,
    max: T,
    expected: &'static str,
) -> Result<T, ConfigError> {
    // Decimal digits only: no signs, no spaces, no hex.
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid(key, value, expected));
    }
    let n: T = value.parse().map_err(|_| invalid(key, value, expected))?;
    if n < min || n > max {
        return Err(invalid(key, value, expected));
    }
    Ok(n)
}

impl GuestConfig {
    /// Parses the `cloister.*` parameters of a kernel command line.
    pub fn from_cmdline(cmdline: &str) -> Result<Self, ConfigError> {
        let mut seen: Vec<&str> = Vec::new();
        let mut attest = None;
        let mut cfg = GuestConfig::new(AttestMode::Emulated);
        for token in cmdline.split_ascii_whitespace() {
            if !token.starts_with("cloister.") {
                continue;
            }
            let (key, value) = match token.split_once('=') {
                Some((k, v)) => (k, v),
                None => return Err(ConfigError::MissingValue(token.chars().take(40).collect())),
            };
            if !KEYS.contains(&key) {
                return Err(ConfigError::UnknownKey(key.chars().take(40).collect()));
            }
            if seen.contains(&key) {
                return Err(ConfigError::Duplicate(key.to_owned()));
            }
            seen.push(key);
            match key {
                "cloister.attest" => {
                    attest = Some(match value {
                        "snp" => AttestMode::Snp,
                        "tdx" => AttestMode::Tdx,
                        "emulated" => AttestMode::Emulated,
                        _ => return Err(invalid(key, value, "snp, tdx or emulated")),
                    })
                }
                "cloister.port" => cfg.port = number(key, value, 1, u32::MAX - 1, "a vsock port")?,
                "cloister.sp_port" => {
                    cfg.emulated_sp_port = number(key, value, 1, u32::MAX - 1, "a vsock port")?
                }
                "cloister.model" => {
                    let ok = !value.is_empty()
                        && value.len() <= 64
                        && value
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
                    if !ok {
                        return Err(invalid(key, value, "a model name ([A-Za-z0-9._-], ≤ 64)"));
                    }
                    cfg.model = value.to_owned();
                }
                "cloister.weights" => {
                    cfg.weights = value.parse().map_err(|e: crate::weights::WeightsError| {
                        ConfigError::InvalidValue {
                            key: key.to_owned(),
                            value: value.chars().take(40).collect(),
                            expected: e.expected(),
                        }
                    })?
                }
                "cloister.max_body" => {
                    cfg.max_body = number(key, value, 1024, 64 << 20, "bytes, 1 KiB to 64 MiB")?
                }
                "cloister.max_concurrent" => {
                    cfg.max_concurrent = number(key, value, 1, 1024, "1 to 1024")?
                }
                "cloister.deadline_ms" => {
                    cfg.deadline = Duration::from_millis(number(
                        key,
                        value,
                        100,
                        3_600_000,
                        "milliseconds, 100 to 3600000",
                    )?)
                }
                _ => {
                    cfg.key_lifetime = Duration::from_secs(number(
                        key,
                        value,
                        600,
                        7 * 24 * 3600,
                        "seconds, 600 to 604800",
                    )?)
                }
            }
        }
        cfg.attest = attest.ok_or(ConfigError::Missing("cloister.attest"))?;
        Ok(cfg)
    }

    /// Renders the `cloister.*` parameters (every key, so the measurement pins all of them).
    pub fn to_cmdline(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for GuestConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cloister.attest={} cloister.port={} cloister.sp_port={} cloister.model={} \
             cloister.weights={} cloister.max_body={} cloister.max_concurrent={} cloister.deadline_ms={} \
             cloister.key_lifetime_s={}",
            self.attest.as_str(),
            self.port,
            self.emulated_sp_port,
            self.model,
            self.weights,
            self.max_body,
            self.max_concurrent,
            self.deadline.as_millis(),
            self.key_lifetime.as_secs()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_ignores_kernel_parameters() {
        let mut c = GuestConfig::new(AttestMode::Snp);
        c.port = 9000;
        c.model = "qwen2.5-1.5b".to_owned();
        c.weights = Weights::Verity(crate::weights::VerityWeights {
            data_blocks: 3,
            root_hash: [7; 32],
            salt: [9; 32],
        });
        c.deadline = Duration::from_millis(2500);
        let line = format!("console=ttyS0 panic=-1 {} quiet", c.to_cmdline());
        assert_eq!(GuestConfig::from_cmdline(&line), Ok(c));
    }

    #[test]
    fn refuses_every_kind_of_mistake() {
        let base = "cloister.attest=emulated";
        for (line, expected) in [
            ("console=ttyS0", ConfigError::Missing("cloister.attest")),
            (
                &*format!("{base} cloister.prot=8000"),
                ConfigError::UnknownKey("cloister.prot".into()),
            ),
            (
                &*format!("{base} cloister.port"),
                ConfigError::MissingValue("cloister.port".into()),
            ),
            (
                &*format!("{base} cloister.attest=snp"),
                ConfigError::Duplicate("cloister.attest".into()),
            ),
        ] {
            assert_eq!(GuestConfig::from_cmdline(line), Err(expected), "{line}");
        }
        for bad in [
            "cloister.attest=sev",
            "cloister.attest=emulated cloister.port=-1",
            "cloister.attest=emulated cloister.port=0x10",
            "cloister.attest=emulated cloister.port=99999999999",
            "cloister.attest=emulated cloister.max_concurrent=0",
            "cloister.attest=emulated cloister.deadline_ms=",
            "cloister.attest=emulated cloister.model=../../etc",
            "cloister.attest=emulated cloister.key_lifetime_s=5",
            "cloister.attest=emulated cloister.weights=disk",
            "cloister.attest=emulated cloister.weights=verity:1:00:00",
        ] {
            assert!(
                matches!(
                    GuestConfig::from_cmdline(bad),
                    Err(ConfigError::InvalidValue { .. })
                ),
                "{bad}"
            );
        }
    }
}
