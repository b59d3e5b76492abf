//! What a verifier accepts: platform policy and reference values.
//!
//! A [`Policy`] is plain data and can be read from the JSON reference-values file that
//! `cargo xtask verify --reference-values FILE` takes:
//!
//! ```json
//! {
//!   "snp_measurements": ["<96 hex digits>", "..."],
//!   "snp_min_tcb": {"bootloader": 3, "tee": 0, "snp": 8, "microcode": 115},
//!   "snp_min_report_version": 2,
//!   "snp_platform": {"allow_smt": true, "require_single_socket": false,
//!                    "require_ciphertext_hiding": false},
//!   "tdx": [{"mrtd": "<96 hex>", "rtmr0": "…", "rtmr1": "…", "rtmr2": "…", "rtmr3": "…"}],
//!   "tdx_allowed_tcb_statuses": ["UpToDate"],
//!   "tdx_attributes": {"allow_pks": false, "allow_perfmon": false, "allow_key_locker": false},
//!   "tdx_min_module_svn": {"major": 1, "minor": 5},
//!   "max_evidence_lifetime_secs": 172800
//! }
//! ```
//!
//! Everything but the measurements has a safe default. An empty measurement list accepts
//! nothing: the verifier fails closed. `snp_min_tcb` can only raise the floors the device ships
//! (`crate::floors`, from AMD's bulletins): the verifier enforces the larger of the two.

use std::collections::BTreeSet;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A 48-byte register (SNP MEASUREMENT, TDX MRTD/RTMR), written as 96 lower-case hex digits.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Digest48(pub [u8; 48]);

impl Digest48 {
    /// Lower-case hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses 96 lower-case hex digits.
    pub fn from_hex(s: &str) -> Result<Self, String> {
        if s.len() != 96 || s.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(format!(
                "expected 96 lower-case hex digits, found {:?}",
                clip(s)
            ));
        }
        let mut out = [0u8; 48];
        hex::decode_to_slice(s, &mut out).map_err(|e| format!("{e} in {:?}", clip(s)))?;
        Ok(Digest48(out))
    }
}

fn clip(s: &str) -> String {
    s.chars().take(100).collect()
}

impl std::fmt::Debug for Digest48 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl std::fmt::Display for Digest48 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl Serialize for Digest48 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for Digest48 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Digest48::from_hex(&s).map_err(serde::de::Error::custom)
    }
}

/// Minimum reported TCB (security version numbers of each firmware component).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MinTcb {
    /// PSP bootloader SVN.
    pub bootloader: u8,
    /// PSP OS (TEE) SVN.
    pub tee: u8,
    /// SNP firmware SVN.
    pub snp: u8,
    /// CPU microcode SVN.
    pub microcode: u8,
    /// FMC SVN (Turin and later); ignored for reports that have none.
    #[serde(default)]
    pub fmc: u8,
}

/// Reference values of one TDX image: MRTD and the four RTMRs, and the host-chosen TD fields a
/// production image pins (all zero unless the image uses them: Cloister's does not).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TdxReference {
    /// MRCONFIGID: a software-defined ID the host sets at TD creation.
    #[serde(default = "zero48")]
    pub mr_config_id: Digest48,
    /// MROWNER: the TD owner's ID, set by the host.
    #[serde(default = "zero48")]
    pub mr_owner: Digest48,
    /// MROWNERCONFIG: the owner's configuration, set by the host.
    #[serde(default = "zero48")]
    pub mr_owner_config: Digest48,
    /// MRSERVICETD (TDX 1.5 reports): the hash of the service TDs bound to this TD; zero: none.
    #[serde(default = "zero48")]
    pub mr_service_td: Digest48,
    /// Build-time measurement of the TD (firmware).
    pub mrtd: Digest48,
    /// RTMR0 (firmware configuration).
    pub rtmr0: Digest48,
    /// RTMR1 (kernel).
    pub rtmr1: Digest48,
    /// RTMR2 (command line, initrd).
    pub rtmr2: Digest48,
    /// RTMR3 (run time).
    pub rtmr3: Digest48,
}

impl TdxReference {
    /// RTMRs by index.
    pub fn rtmrs(&self) -> [&Digest48; 4] {
        [&self.rtmr0, &self.rtmr1, &self.rtmr2, &self.rtmr3]
    }
}

/// Default minimum report version: 2 (the first with CHIP_ID and REPORTED_TCB as used here).
pub const DEFAULT_MIN_REPORT_VERSION: u32 = 2;
/// Default longest evidence lifetime a verifier believes: 48 hours.
pub const DEFAULT_MAX_LIFETIME_SECS: u64 = 48 * 3600;

fn zero48() -> Digest48 {
    Digest48([0; 48])
}
fn yes() -> bool {
    true
}

/// SEV-SNP platform and guest-policy bits a deployment pins beyond debug and migration (always
/// refused). Each refusal is its own `VerifyError`; the policy step's line shows what was seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnpPlatformPolicy {
    /// Accept a platform with SMT on (PLATFORM_INFO.SMT_EN). Off narrows cross-thread side
    /// channels; most clouds run with it on.
    #[serde(default = "yes")]
    pub allow_smt: bool,
    /// Demand that the guest policy requires a single socket (SINGLE_SOCKET).
    #[serde(default)]
    pub require_single_socket: bool,
    /// Demand ciphertext hiding on the platform (PLATFORM_INFO.CIPHERTEXT_HIDING_EN; products
    /// and firmware that have it), against ciphertext side channels.
    #[serde(default)]
    pub require_ciphertext_hiding: bool,
}

impl Default for SnpPlatformPolicy {
    fn default() -> Self {
        SnpPlatformPolicy {
            allow_smt: true,
            require_single_socket: false,
            require_ciphertext_hiding: false,
        }
    }
}

/// TD attributes a TD may have beyond the ones always demanded (SEPT_VE_DISABLE) and always
/// refused (DEBUG, MIGRATABLE, the profiling bits, any bit this verifier does not know).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TdxAttributePolicy {
    /// Accept PKS (protection keys for supervisor pages).
    #[serde(default)]
    pub allow_pks: bool,
    /// Accept PERFMON (the TD may use the performance counters).
    #[serde(default)]
    pub allow_perfmon: bool,
    /// Accept KL (Key Locker).
    #[serde(default)]
    pub allow_key_locker: bool,
}

/// A TDX module security version (TEE_TCB_SVN bytes 1 and 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TdxModuleSvn {
    /// Major SVN.
    pub major: u8,
    /// Minor SVN.
    pub minor: u8,
}

/// TDX module 1.5.05 (minor SVN 5, major 1): Intel's advisory for the TDX module
/// (GHSA-gr79-64x9-5p2m, 2024-05) names versions before 1.5.05.46.698 as affected, and Intel's
/// module release notes give 1.5.05 minor SVN 0x05.
pub const DEFAULT_TDX_MIN_MODULE_SVN: TdxModuleSvn = TdxModuleSvn { major: 1, minor: 5 };

/// Intel's TCB evaluation data number 17: the platform TCB levels of Intel's TCB recovery in
/// effect when the real collateral in `testdata/` was issued (Intel PCS TCB info, 2025-06-19).
/// Intel raises the number with each TCB recovery (twice a year); collateral that judges a
/// platform against older levels is refused.
pub const DEFAULT_TDX_MIN_TCB_EVALUATION: u32 = 17;

fn default_tdx_tcb_evaluation() -> u32 {
    DEFAULT_TDX_MIN_TCB_EVALUATION
}

fn default_tdx_module_svn() -> TdxModuleSvn {
    DEFAULT_TDX_MIN_MODULE_SVN
}

fn default_min_report_version() -> u32 {
    DEFAULT_MIN_REPORT_VERSION
}
fn default_tdx_statuses() -> Vec<String> {
    vec!["UpToDate".to_owned()]
}
fn default_max_lifetime() -> u64 {
    DEFAULT_MAX_LIFETIME_SECS
}

/// What a verifier accepts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Accepted SNP launch measurements.
    #[serde(default)]
    pub snp_measurements: BTreeSet<Digest48>,
    /// Minimum reported TCB for SNP, beyond the shipped per-product floors (it can raise them,
    /// never lower them).
    #[serde(default)]
    pub snp_min_tcb: MinTcb,
    /// SNP platform and guest-policy bits.
    #[serde(default)]
    pub snp_platform: SnpPlatformPolicy,
    /// Demand the product's AMD CRL stapled to hardware evidence (revocation checked offline).
    /// Off only for a deployment whose hosts cannot staple one yet; a stapled CRL is always
    /// checked.
    #[serde(default = "yes")]
    pub snp_require_crl: bool,
    /// Minimum SNP report version.
    #[serde(default = "default_min_report_version")]
    pub snp_min_report_version: u32,
    /// Accepted TDX images.
    #[serde(default)]
    pub tdx: Vec<TdxReference>,
    /// TCB statuses accepted from dcap-qvl (`UpToDate`, `SWHardeningNeeded`, …).
    #[serde(default = "default_tdx_statuses")]
    pub tdx_allowed_tcb_statuses: Vec<String>,
    /// TD attributes.
    #[serde(default)]
    pub tdx_attributes: TdxAttributePolicy,
    /// Lowest TDX module SVN accepted.
    #[serde(default = "default_tdx_module_svn")]
    pub tdx_min_module_svn: TdxModuleSvn,
    /// Lowest TCB evaluation data number of the collateral's TCB info (the platform TCB levels
    /// it judges by).
    #[serde(default = "default_tdx_tcb_evaluation")]
    pub tdx_min_tcb_evaluation: u32,
    /// Longest lifetime (expiry minus now) the verifier believes, in seconds.
    #[serde(default = "default_max_lifetime")]
    pub max_evidence_lifetime_secs: u64,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            snp_measurements: BTreeSet::new(),
            snp_min_tcb: MinTcb::default(),
            snp_platform: SnpPlatformPolicy::default(),
            snp_require_crl: true,
            snp_min_report_version: DEFAULT_MIN_REPORT_VERSION,
            tdx: Vec::new(),
            tdx_allowed_tcb_statuses: default_tdx_statuses(),
            tdx_attributes: TdxAttributePolicy::default(),
            tdx_min_module_svn: DEFAULT_TDX_MIN_MODULE_SVN,
            tdx_min_tcb_evaluation: DEFAULT_TDX_MIN_TCB_EVALUATION,
            max_evidence_lifetime_secs: DEFAULT_MAX_LIFETIME_SECS,
        }
    }
}

/// A reference-values file could not be read.
#[derive(Debug, thiserror::Error)]
#[error("reference values are not valid: {0}")]
pub struct PolicyError(String);

impl Policy {
    /// Reads the JSON reference-values format above.
    pub fn from_json(bytes: &[u8]) -> Result<Self, PolicyError> {
        serde_json::from_slice(bytes).map_err(|e| PolicyError(e.to_string()))
    }

    /// Accepts one more SNP launch measurement.
    pub fn with_snp_measurement(mut self, m: [u8; 48]) -> Self {
        self.snp_measurements.insert(Digest48(m));
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_documented_format_with_defaults() {
        let m = "ab".repeat(48);
        let p = Policy::from_json(format!(r#"{{"snp_measurements": ["{m}"]}}"#).as_bytes())
            .expect("parses");
        assert!(p.snp_measurements.contains(&Digest48([0xab; 48])));
        assert_eq!(p.snp_min_report_version, 2);
        assert_eq!(p.tdx_allowed_tcb_statuses, vec!["UpToDate"]);
        assert_eq!(p.max_evidence_lifetime_secs, 48 * 3600);
    }

    #[test]
    fn refuses_bad_digests_and_unknown_keys() {
        for bad in [
            r#"{"snp_measurements": ["abc"]}"#,
            &format!(r#"{{"snp_measurements": ["{}"]}}"#, "AB".repeat(48)),
            r#"{"allow_debug": true}"#,
        ] {
            assert!(Policy::from_json(bad.as_bytes()).is_err(), "{bad}");
        }
    }
}
