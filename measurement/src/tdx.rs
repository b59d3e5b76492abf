//! Intel TDX evidence: a DCAP quote verified with `dcap-qvl` against Intel's root at the
//! verifier's time, then TCB status, TD attributes and measurement registers.

use dcap_qvl::QuoteCollateralV3;
use dcap_qvl::quote::{Quote, Report, TDReport10};
use dcap_qvl::verify::VerifiedReport;
use der::Decode as _;

use crate::error::VerifyError;
use crate::machine::MachineId;
use crate::policy::{Digest48, Policy};
use crate::tdx_policy;

/// A parsed, not yet verified TDX bundle.
pub(crate) struct TdxEvidence {
    raw: Vec<u8>,
    collateral: QuoteCollateralV3,
    pub(crate) td: TDReport10,
}

fn td_report(report: &Report) -> Option<&TDReport10> {
    match report {
        Report::TD10(r) => Some(r),
        Report::TD15(r) => Some(&r.base),
        Report::TD15Ex(r) => Some(&r.base.base),
        Report::SgxEnclave(_) => None,
    }
}

pub(crate) fn parse(raw: &[u8], collateral: &[u8]) -> Result<TdxEvidence, VerifyError> {
    let quote = Quote::parse(raw).map_err(|e| VerifyError::TdxQuoteMalformed(format!("{e:#}")))?;
    let td = *td_report(&quote.report).ok_or(VerifyError::TdxNotTdQuote)?;
    let collateral: QuoteCollateralV3 = serde_json::from_slice(collateral)
        .map_err(|e| VerifyError::TdxCollateralMalformed(e.to_string()))?;
    Ok(TdxEvidence {
        raw: raw.to_vec(),
        collateral,
        td,
    })
}

fn rfc3339(field: &str, json: &str, key: &str) -> Result<u64, VerifyError> {
    let malformed =
        |why: String| VerifyError::TdxCollateralMalformed(format!("{field}.{key}: {why}"));
    let v: serde_json::Value = serde_json::from_str(json).map_err(|e| malformed(e.to_string()))?;
    let s = v[key]
        .as_str()
        .ok_or_else(|| malformed("absent".to_owned()))?;
    let t = chrono::DateTime::parse_from_rfc3339(s).map_err(|e| malformed(e.to_string()))?;
    u64::try_from(t.timestamp()).map_err(|_| malformed("before 1970".to_owned()))
}

fn crl_window(field: &str, der: &[u8]) -> Result<(u64, Option<u64>), VerifyError> {
    let crl = x509_cert::crl::CertificateList::from_der(der)
        .map_err(|e| VerifyError::TdxCollateralMalformed(format!("{field}: {e}")))?;
    let tbs = &crl.tbs_cert_list;
    Ok((
        tbs.this_update.to_unix_duration().as_secs(),
        tbs.next_update.map(|t| t.to_unix_duration().as_secs()),
    ))
}

/// The collateral's own validity window (TCB info, QE identity, both CRLs): checked here so
/// that stale collateral gets its own error; dcap-qvl checks it again, with the certificates.
/// And the TCB info's evaluation data number: at least the policy's.
pub(crate) fn check_collateral_window(
    ev: &TdxEvidence,
    now: u64,
    policy: &Policy,
) -> Result<String, VerifyError> {
    let c = &ev.collateral;
    let mut not_before = 0u64;
    let mut not_after = u64::MAX;
    for (field, json) in [("tcb_info", &c.tcb_info), ("qe_identity", &c.qe_identity)] {
        not_before = not_before.max(rfc3339(field, json, "issueDate")?);
        not_after = not_after.min(rfc3339(field, json, "nextUpdate")?);
    }
    for (field, der) in [("root_ca_crl", &c.root_ca_crl), ("pck_crl", &c.pck_crl)] {
        let (this, next) = crl_window(field, der)?;
        not_before = not_before.max(this);
        if let Some(next) = next {
            not_after = not_after.min(next);
        }
    }
    if now < not_before || now > not_after {
        return Err(VerifyError::TdxCollateralExpired {
            not_before,
            not_after,
            now,
        });
    }
    let evaluation = serde_json::from_str::<serde_json::Value>(&c.tcb_info)
        .ok()
        .and_then(|v| v["tcbEvaluationDataNumber"].as_u64())
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| {
            VerifyError::TdxCollateralMalformed("tcb_info.tcbEvaluationDataNumber: absent".into())
        })?;
    if evaluation < policy.tdx_min_tcb_evaluation {
        return Err(VerifyError::TdxTcbEvaluationTooOld {
            found: evaluation,
            min: policy.tdx_min_tcb_evaluation,
        });
    }
    Ok(format!(
        "collateral valid {not_before}..{not_after}, TCB evaluation {evaluation}"
    ))
}

/// PCK chain to Intel's root, QE report and identity, quote signature, TCB level: dcap-qvl;
/// and the platform's PPID from the PCK certificate that chain authenticated.
pub(crate) fn check_quote(
    ev: &TdxEvidence,
    now: u64,
) -> Result<(VerifiedReport, MachineId), VerifyError> {
    let verified = dcap_qvl::verify::verify(&ev.raw, &ev.collateral, now)
        .map_err(|e| VerifyError::TdxQuoteRejected(format!("{e:#}")))?;
    Ok((verified, platform_id(&ev.raw)?))
}

/// The PPID in the quote's PCK certificate (the chain's first, the leaf).
fn platform_id(raw: &[u8]) -> Result<MachineId, VerifyError> {
    let refuse = |why: String| VerifyError::TdxQuoteRejected(format!("PCK certificate: {why}"));
    let quote = Quote::parse(raw).map_err(|e| refuse(format!("{e:#}")))?;
    let chain =
        dcap_qvl::intel::extract_cert_chain(&quote).map_err(|e| refuse(format!("{e:#}")))?;
    let leaf = chain.first().ok_or_else(|| refuse("absent".to_owned()))?;
    let ext = dcap_qvl::intel::parse_pck_extension(leaf).map_err(|e| refuse(format!("{e:#}")))?;
    if ext.ppid.is_empty() || ext.ppid.iter().all(|b| *b == 0) {
        return Err(refuse("no PPID".to_owned()));
    }
    Ok(MachineId::TdxPlatform(ext.ppid))
}

pub(crate) fn check_policy(
    verified: &VerifiedReport,
    policy: &Policy,
) -> Result<String, VerifyError> {
    if !policy.tdx_allowed_tcb_statuses.contains(&verified.status) {
        return Err(VerifyError::TdxTcbStatusNotAllowed {
            status: verified.status.clone(),
            allowed: policy.tdx_allowed_tcb_statuses.join(","),
        });
    }
    let td = td_report(&verified.report).ok_or(VerifyError::TdxNotTdQuote)?;
    tdx_policy::check_attributes(td, policy)?;
    tdx_policy::check_module(&verified.report, td, policy)?;
    Ok(format!(
        "TCB status {}, attributes {:#018x} (debug and migration off, SEPT_VE_DISABLE on), \
         module SVN {}.{}",
        verified.status,
        tdx_policy::attributes(td),
        td.tee_tcb_svn[1],
        td.tee_tcb_svn[0]
    ))
}

/// The verified report's registers.
pub(crate) fn registers(
    verified: &VerifiedReport,
) -> Result<(Digest48, [Digest48; 4], [u8; 64]), VerifyError> {
    let td = td_report(&verified.report).ok_or(VerifyError::TdxNotTdQuote)?;
    Ok((
        Digest48(td.mr_td),
        [
            Digest48(td.rt_mr0),
            Digest48(td.rt_mr1),
            Digest48(td.rt_mr2),
            Digest48(td.rt_mr3),
        ],
        td.report_data,
    ))
}

/// MRTD must be a reference value, the RTMRs must equal that reference's, and so must the
/// host-chosen fields (MRCONFIGID, MROWNER, MROWNERCONFIG, MRSERVICETD).
pub(crate) fn check_measurement(
    verified: &VerifiedReport,
    mrtd: &Digest48,
    rtmrs: &[Digest48; 4],
    policy: &Policy,
) -> Result<String, VerifyError> {
    let td = td_report(&verified.report).ok_or(VerifyError::TdxNotTdQuote)?;
    let candidates: Vec<_> = policy.tdx.iter().filter(|r| r.mrtd == *mrtd).collect();
    let Some(first) = candidates.first() else {
        return Err(VerifyError::TdxMrtdMismatch {
            found: mrtd.to_hex(),
        });
    };
    if let Some(reference) = candidates
        .iter()
        .find(|r| r.rtmrs().iter().zip(rtmrs).all(|(a, b)| *a == b))
    {
        tdx_policy::check_fields(&verified.report, td, reference)?;
        return Ok(format!(
            "MRTD {}…, RTMR0–3, MRCONFIGID, MROWNER, MROWNERCONFIG and MRSERVICETD match",
            &mrtd.to_hex()[..16]
        ));
    }
    let index = first
        .rtmrs()
        .iter()
        .zip(rtmrs)
        .position(|(a, b)| *a != b)
        .unwrap_or(0);
    Err(VerifyError::TdxRtmrMismatch {
        index,
        found: rtmrs[index].to_hex(),
    })
}
