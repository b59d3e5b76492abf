//! Every reason a bundle can be refused, one variant each, in verification order.

use cloister_protocol::{BindingError, BundleError, Platform};

/// Which certificate of an SNP chain an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertRole {
    /// AMD Root Key.
    Ark,
    /// AMD SEV Signing Key.
    Ask,
    /// Versioned Chip Endorsement Key.
    Vcek,
}

impl std::fmt::Display for CertRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CertRole::Ark => "ARK",
            CertRole::Ask => "ASK",
            CertRole::Vcek => "VCEK",
        })
    }
}

/// Why a bundle was refused. Variants are grouped by the verification step that raises them
/// (see [`crate::Step`]); a test can assert exactly which check refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    // ---- parse -------------------------------------------------------------------------
    /// The bundle itself is malformed.
    #[error("evidence bundle refused: {0}")]
    Bundle(#[from] BundleError),
    /// The SNP report could not be parsed.
    #[error("SNP attestation report is malformed: {0}")]
    SnpReportMalformed(String),
    /// A certificate could not be parsed.
    #[error("{role} certificate is malformed: {reason}")]
    CertificateMalformed {
        /// Which certificate.
        role: CertRole,
        /// Parser message.
        reason: String,
    },
    /// The TDX quote could not be parsed.
    #[error("TDX quote is malformed: {0}")]
    TdxQuoteMalformed(String),
    /// The TDX collateral could not be parsed.
    #[error("TDX collateral is malformed: {0}")]
    TdxCollateralMalformed(String),
    /// The quote is not a TD quote (for example an SGX enclave quote).
    #[error("quote is not a TDX TD quote")]
    TdxNotTdQuote,

    // ---- platform ----------------------------------------------------------------------
    /// The verifier's trust anchor does not cover this platform.
    #[error("platform {platform} is not accepted under the {anchor} trust anchor")]
    PlatformNotTrusted {
        /// Platform the bundle claims.
        platform: Platform,
        /// Name of the verifier's anchor.
        anchor: &'static str,
    },

    // ---- chain to the pinned root --------------------------------------------------------
    /// The chain does not lead to a pinned root (presented ARK is not pinned, or no pinned
    /// ASK issued the VCEK).
    #[error("certificate chain does not lead to a pinned root: {reason}")]
    UntrustedRoot {
        /// What did not match.
        reason: String,
    },
    /// The ARK does not sign the ASK.
    #[error("ARK does not sign the ASK: {0}")]
    AskSignature(String),
    /// The ASK does not sign the VCEK.
    #[error("ASK does not sign the VCEK: {0}")]
    VcekSignature(String),
    /// A certificate is not yet valid at the verifier's time.
    #[error("{role} certificate is not valid before {not_before} (now {now})")]
    CertificateNotYetValid {
        /// Which certificate.
        role: CertRole,
        /// Its notBefore (Unix seconds).
        not_before: u64,
        /// Verifier time.
        now: u64,
    },
    /// A certificate has expired at the verifier's time.
    #[error("{role} certificate expired at {not_after} (now {now})")]
    CertificateExpired {
        /// Which certificate.
        role: CertRole,
        /// Its notAfter (Unix seconds).
        not_after: u64,
        /// Verifier time.
        now: u64,
    },
    /// The VCEK was not issued for this chip or this TCB.
    #[error("VCEK does not match the report: {field}: certificate has {cert}, report has {report}")]
    VcekMismatch {
        /// Which VCEK extension.
        field: &'static str,
        /// Value in the certificate.
        cert: String,
        /// Value in the report.
        report: String,
    },
    /// The report is signed by a key other than the VCEK (VLEK, or none).
    #[error("report signed by key kind {found} (0 = VCEK is the only kind accepted)")]
    UnsupportedSigningKey {
        /// SIGNING_KEY field of the report.
        found: u32,
    },
    /// The report's signature algorithm is not ECDSA P-384 with SHA-384.
    #[error("report signature algorithm {found} is not ECDSA P-384/SHA-384 (1)")]
    UnsupportedSignatureAlgorithm {
        /// SIGNATURE_ALGO field.
        found: u32,
    },
    /// TDX collateral outside its validity window.
    #[error("TDX collateral is not valid at {now}: valid from {not_before} to {not_after}")]
    TdxCollateralExpired {
        /// Latest issue date of the collateral parts.
        not_before: u64,
        /// Earliest next-update of the collateral parts.
        not_after: u64,
        /// Verifier time.
        now: u64,
    },

    // ---- signature -----------------------------------------------------------------------
    /// The VCEK does not sign the report.
    #[error("report signature does not verify under the VCEK: {0}")]
    ReportSignature(String),
    /// dcap-qvl refused the quote (PCK chain to Intel's root, QE report, quote signature,
    /// TCB evaluation).
    #[error("TDX quote verification failed: {0}")]
    TdxQuoteRejected(String),

    // ---- policy --------------------------------------------------------------------------
    /// The guest policy allows debugging (the host could read guest memory).
    #[error("guest policy allows debugging")]
    DebugAllowed,
    /// The guest policy allows a migration agent.
    #[error("guest policy allows a migration agent")]
    MigrationAgentAllowed,
    /// The stapled CRL cannot be parsed, or lacks what its check needs.
    #[error("AMD CRL malformed: {0}")]
    CrlMalformed(String),
    /// The stapled CRL is not the chain's ARK's.
    #[error("the CRL is issued by {issuer}, not by the {product} ARK")]
    CrlWrongIssuer {
        /// Its issuer.
        issuer: String,
        /// The chain's product.
        product: String,
    },
    /// The stapled CRL's signature does not verify under the pinned ARK.
    #[error("AMD CRL signature: {0}")]
    CrlSignature(String),
    /// The stapled CRL is not current (before its thisUpdate or after its nextUpdate).
    #[error("AMD CRL valid {this_update}..{next_update}, not at {now}")]
    CrlStale {
        /// thisUpdate.
        this_update: u64,
        /// nextUpdate.
        next_update: u64,
        /// Verifier time.
        now: u64,
    },
    /// No CRL was stapled and the policy requires one.
    #[error("no AMD CRL stapled to the evidence; revocation cannot be checked")]
    CrlAbsent,
    /// A certificate of the chain is on its issuer's revocation list.
    #[error("the {role} (serial {serial}) is revoked by AMD")]
    Revoked {
        /// Which certificate.
        role: CertRole,
        /// Its serial, hex.
        serial: String,
    },
    /// The report was requested from a VMPL other than 0.
    #[error("report comes from VMPL {found}, only VMPL 0 is accepted")]
    VmplNotZero {
        /// VMPL found.
        found: u32,
    },
    /// A reported TCB component is below the policy's minimum.
    #[error("reported TCB {component} is {found}, the policy requires at least {min}")]
    TcbTooLow {
        /// Which component.
        component: &'static str,
        /// SVN found.
        found: u8,
        /// Minimum SVN.
        min: u8,
    },
    /// The report format is older than the policy accepts.
    #[error("report version {found} is older than the minimum {min}")]
    ReportVersionTooOld {
        /// Version found.
        found: u32,
        /// Minimum version.
        min: u32,
    },
    /// The TD is a debug TD.
    #[error("TD attributes allow debugging")]
    TdxDebug,
    /// No TCB floor applies (a product without a shipped floor, and none in the policy) under
    /// the hardware anchor: a node on any firmware would pass.
    #[error("no TCB floor for {product}: refusing a report no minimum applies to")]
    NoTcbFloor {
        /// Product line.
        product: String,
    },
    /// The platform runs with SMT on and the policy refuses it.
    #[error("the platform has SMT enabled and the policy refuses SMT")]
    SmtEnabled,
    /// The guest policy does not require a single socket and the policy demands it.
    #[error("the guest policy does not require a single socket")]
    SingleSocketNotRequired,
    /// Ciphertext hiding is off on the platform and the policy demands it.
    #[error("the platform does not have ciphertext hiding enabled")]
    CiphertextHidingOff,
    /// The TD is migratable (TD attribute MIGRATABLE): a migration TD could export it.
    #[error("TD attributes allow migration")]
    TdxMigratable,
    /// SEPT_VE_DISABLE is clear: the host can inject #VE through the secure EPT.
    #[error("TD attribute SEPT_VE_DISABLE is not set")]
    TdxSeptVeNotDisabled,
    /// PKS is set and the policy does not allow it.
    #[error("TD attribute PKS is set and not allowed")]
    TdxPksNotAllowed,
    /// PERFMON is set and the policy does not allow it.
    #[error("TD attribute PERFMON is set and not allowed")]
    TdxPerfmonNotAllowed,
    /// Key Locker is set and the policy does not allow it.
    #[error("TD attribute KL is set and not allowed")]
    TdxKeyLockerNotAllowed,
    /// Attribute bits no policy allows (profiling, unknown or reserved bits).
    #[error("TD attributes {bits:#018x} are not allowed")]
    TdxAttributesNotAllowed {
        /// The offending bits.
        bits: u64,
    },
    /// MRCONFIGID differs from the reference.
    #[error("MRCONFIGID {found} is not the reference value")]
    TdxMrConfigIdMismatch {
        /// Found, hex.
        found: String,
    },
    /// MROWNER differs from the reference.
    #[error("MROWNER {found} is not the reference value")]
    TdxMrOwnerMismatch {
        /// Found, hex.
        found: String,
    },
    /// MROWNERCONFIG differs from the reference.
    #[error("MROWNERCONFIG {found} is not the reference value")]
    TdxMrOwnerConfigMismatch {
        /// Found, hex.
        found: String,
    },
    /// MRSERVICETD (TDX 1.5) differs from the reference.
    #[error("MRSERVICETD {found} is not the reference value")]
    TdxServiceTdMismatch {
        /// Found, hex.
        found: String,
    },
    /// The collateral judges the platform by TCB levels older than the policy accepts.
    #[error("TDX TCB evaluation data number {found} is below the minimum {min}")]
    TdxTcbEvaluationTooOld {
        /// Found in the TCB info.
        found: u32,
        /// The policy's minimum.
        min: u32,
    },
    /// The TDX module's SVN is below the policy's minimum.
    #[error("TDX module SVN {major}.{minor} is below the minimum {min_major}.{min_minor}")]
    TdxModuleTooOld {
        /// Major SVN found.
        major: u8,
        /// Minor SVN found.
        minor: u8,
        /// Minimum major.
        min_major: u8,
        /// Minimum minor.
        min_minor: u8,
    },
    /// The platform's TCB status is not in the allowed list.
    #[error("TDX TCB status {status} is not allowed (allowed: {allowed})")]
    TdxTcbStatusNotAllowed {
        /// Status found.
        status: String,
        /// Allowed statuses, comma separated.
        allowed: String,
    },

    // ---- binding -------------------------------------------------------------------------
    /// The report's `report_data` does not bind this key config, expiry and nonce.
    #[error("report_data does not bind the bundle's key config, expiry and nonce")]
    ReportDataMismatch,
    /// The binding could not be computed (for example an overlong nonce).
    #[error("binding could not be computed: {0}")]
    Binding(#[from] BindingError),

    // ---- expiry --------------------------------------------------------------------------
    /// The evidence has expired.
    #[error("evidence expired at {expires_at} (now {now})")]
    Expired {
        /// Expiry in the bundle.
        expires_at: u64,
        /// Verifier time.
        now: u64,
    },
    /// The evidence claims a lifetime longer than the policy accepts.
    #[error("evidence expires at {expires_at}, more than {max_lifetime} s after now ({now})")]
    ExpiryTooFar {
        /// Expiry in the bundle.
        expires_at: u64,
        /// Longest accepted lifetime (seconds).
        max_lifetime: u64,
        /// Verifier time.
        now: u64,
    },

    // ---- measurement ---------------------------------------------------------------------
    /// The SNP launch measurement is not among the accepted ones.
    #[error("measurement {measurement} is not an accepted reference value")]
    MeasurementNotAllowed {
        /// Measurement (hex).
        measurement: String,
    },
    /// The TD's MRTD is not among the accepted ones.
    #[error("MRTD {found} is not an accepted reference value")]
    TdxMrtdMismatch {
        /// MRTD (hex).
        found: String,
    },
    /// A log is trusted but the bundle carries no log proof.
    #[error("the evidence carries no transparency-log proof")]
    LogProofMissing,
    /// The log proof was refused (checkpoint signature, witnesses, inclusion).
    #[error("transparency log: {0}")]
    Log(cloister_transparency::VerifyError),
    /// The logged release does not hold the reported measurement.
    #[error("{platform} measurement {measurement} is not in the logged release")]
    NotInLog {
        /// Platform.
        platform: String,
        /// Measurement (hex).
        measurement: String,
    },
    /// The logged release names another image manifest than the evidence.
    #[error("the logged release names manifest {logged}, the evidence {found}")]
    ManifestNotInLog {
        /// In the record.
        logged: String,
        /// In the evidence.
        found: String,
    },
    /// An RTMR does not match the reference values that carry the report's MRTD.
    #[error("RTMR{index} {found} does not match the reference value for this MRTD")]
    TdxRtmrMismatch {
        /// RTMR index (0..=3).
        index: usize,
        /// RTMR found (hex).
        found: String,
    },
}
