//! What a production policy pins in a TD report beyond its TCB status: the TD attributes, the
//! host-chosen ID fields, the service-TD hash (TDX 1.5) and the TDX module's SVN.
//!
//! TD attribute bits: Intel TDX Module ABI specification, TDINFO_STRUCT.ATTRIBUTES, as Linux
//! names them (`arch/x86/include/asm/shared/tdx.h`, `TDX_ATTR_*`).

use dcap_qvl::quote::{Report, TDReport10};

use crate::error::VerifyError;
use crate::policy::{Digest48, Policy, TdxReference};

/// DEBUG: the host can read and write the TD's state.
pub(crate) const DEBUG: u64 = 1 << 0;
/// LASS: linear address space separation in the TD (a hardening; always accepted).
const LASS: u64 = 1 << 27;
/// SEPT_VE_DISABLE: EPT violations become TD exits, not #VE the host could provoke.
pub(crate) const SEPT_VE_DISABLE: u64 = 1 << 28;
/// MIGRATABLE: a migration TD may export the TD.
pub(crate) const MIGRATABLE: u64 = 1 << 29;
/// PKS: protection keys for supervisor pages.
pub(crate) const PKS: u64 = 1 << 30;
/// KL: Key Locker.
pub(crate) const KL: u64 = 1 << 31;
/// PERFMON: the TD may use the performance monitoring counters.
pub(crate) const PERFMON: u64 = 1 << 63;

/// The TD attributes as one little-endian word.
pub(crate) fn attributes(td: &TDReport10) -> u64 {
    u64::from_le_bytes(td.td_attributes)
}

/// DEBUG and MIGRATABLE refused, SEPT_VE_DISABLE demanded, PKS/PERFMON/KL as the policy says,
/// every other bit (the profiling bits HGS_PLUS_PROF, PERF_PROF and PMT_PROF, ICSSD, TPA,
/// reserved and unknown bits) refused.
pub(crate) fn check_attributes(td: &TDReport10, policy: &Policy) -> Result<(), VerifyError> {
    let a = attributes(td);
    let p = &policy.tdx_attributes;
    if a & DEBUG != 0 {
        return Err(VerifyError::TdxDebug);
    }
    if a & MIGRATABLE != 0 {
        return Err(VerifyError::TdxMigratable);
    }
    if a & SEPT_VE_DISABLE == 0 {
        return Err(VerifyError::TdxSeptVeNotDisabled);
    }
    if a & PKS != 0 && !p.allow_pks {
        return Err(VerifyError::TdxPksNotAllowed);
    }
    if a & PERFMON != 0 && !p.allow_perfmon {
        return Err(VerifyError::TdxPerfmonNotAllowed);
    }
    if a & KL != 0 && !p.allow_key_locker {
        return Err(VerifyError::TdxKeyLockerNotAllowed);
    }
    let allowed = LASS | SEPT_VE_DISABLE | PKS | PERFMON | KL;
    let other = a & !allowed;
    if other != 0 {
        return Err(VerifyError::TdxAttributesNotAllowed { bits: other });
    }
    Ok(())
}

/// The TDX module SVNs the report names: TEE_TCB_SVN (bytes 0 and 1: minor, major) and, in a
/// TDX 1.5 report, TEE_TCB_SVN2 when it is set (the module after a TD-preserving update).
fn module_svns(report: &Report, td: &TDReport10) -> Vec<(u8, u8)> {
    let mut out = vec![(td.tee_tcb_svn[1], td.tee_tcb_svn[0])];
    let second = match report {
        Report::TD15(r) => Some(r.tee_tcb_svn2),
        Report::TD15Ex(r) => Some(r.base.tee_tcb_svn2),
        _ => None,
    };
    if let Some(s) = second.filter(|s| s.iter().any(|b| *b != 0)) {
        out.push((s[1], s[0]));
    }
    out
}

/// Every module SVN the report names is at or above the policy's minimum.
pub(crate) fn check_module(
    report: &Report,
    td: &TDReport10,
    policy: &Policy,
) -> Result<(), VerifyError> {
    let min = policy.tdx_min_module_svn;
    for (major, minor) in module_svns(report, td) {
        if (major, minor) < (min.major, min.minor) {
            return Err(VerifyError::TdxModuleTooOld {
                major,
                minor,
                min_major: min.major,
                min_minor: min.minor,
            });
        }
    }
    Ok(())
}

/// MRCONFIGID, MROWNER, MROWNERCONFIG and (TDX 1.5) MRSERVICETD equal the reference's.
pub(crate) fn check_fields(
    report: &Report,
    td: &TDReport10,
    reference: &TdxReference,
) -> Result<(), VerifyError> {
    let hex = |b: &[u8; 48]| Digest48(*b).to_hex();
    if td.mr_config_id != reference.mr_config_id.0 {
        return Err(VerifyError::TdxMrConfigIdMismatch {
            found: hex(&td.mr_config_id),
        });
    }
    if td.mr_owner != reference.mr_owner.0 {
        return Err(VerifyError::TdxMrOwnerMismatch {
            found: hex(&td.mr_owner),
        });
    }
    if td.mr_owner_config != reference.mr_owner_config.0 {
        return Err(VerifyError::TdxMrOwnerConfigMismatch {
            found: hex(&td.mr_owner_config),
        });
    }
    let service_td = match report {
        Report::TD15(r) => Some(r.mr_service_td),
        Report::TD15Ex(r) => Some(r.base.mr_service_td),
        _ => None,
    };
    if let Some(s) = service_td
        && s != reference.mr_service_td.0
    {
        return Err(VerifyError::TdxServiceTdMismatch { found: hex(&s) });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    //! The attribute tamper table, on the real sample quote's TD report (dcap-qvl 0.7.1's
    //! `sample/tdx_quote`, see `testdata/README.md`): its attributes are SEPT_VE_DISABLE alone.
    //! A quote cannot be re-signed here, so each row changes the parsed report the checks read.
    use super::*;
    use crate::policy::TdxModuleSvn;

    fn real() -> (Report, TDReport10) {
        let raw = include_bytes!("../testdata/tdx_quote.bin");
        let q = dcap_qvl::quote::Quote::parse(raw).expect("the sample parses");
        let td = match &q.report {
            Report::TD10(r) => *r,
            Report::TD15(r) => r.base,
            other => panic!("not a TD report: {other:?}"),
        };
        (q.report, td)
    }

    fn reference(td: &TDReport10) -> TdxReference {
        TdxReference {
            mrtd: Digest48(td.mr_td),
            rtmr0: Digest48(td.rt_mr0),
            rtmr1: Digest48(td.rt_mr1),
            rtmr2: Digest48(td.rt_mr2),
            rtmr3: Digest48(td.rt_mr3),
            mr_config_id: Digest48([0; 48]),
            mr_owner: Digest48([0; 48]),
            mr_owner_config: Digest48([0; 48]),
            mr_service_td: Digest48([0; 48]),
        }
    }

    fn with_attributes(td: &TDReport10, set: u64, clear: u64) -> TDReport10 {
        let mut t = *td;
        t.td_attributes = ((attributes(td) | set) & !clear).to_le_bytes();
        t
    }

    #[test]
    fn the_real_report_passes_the_default_policy() {
        let (report, td) = real();
        assert_eq!(attributes(&td), SEPT_VE_DISABLE);
        let p = Policy::default();
        check_attributes(&td, &p).expect("attributes");
        check_module(&report, &td, &p).expect("module");
        check_fields(&report, &td, &reference(&td)).expect("fields");
    }

    #[test]
    fn each_attribute_is_refused_by_its_own_error() {
        let (_, td) = real();
        let p = Policy::default();
        type Expect = fn(&VerifyError) -> bool;
        let rows: [(&str, u64, u64, Expect); 8] = [
            ("DEBUG", DEBUG, 0, |e| matches!(e, VerifyError::TdxDebug)),
            ("MIGRATABLE", MIGRATABLE, 0, |e| {
                matches!(e, VerifyError::TdxMigratable)
            }),
            ("SEPT_VE_DISABLE clear", 0, SEPT_VE_DISABLE, |e| {
                matches!(e, VerifyError::TdxSeptVeNotDisabled)
            }),
            ("PKS", PKS, 0, |e| {
                matches!(e, VerifyError::TdxPksNotAllowed)
            }),
            ("PERFMON", PERFMON, 0, |e| {
                matches!(e, VerifyError::TdxPerfmonNotAllowed)
            }),
            ("KL", KL, 0, |e| {
                matches!(e, VerifyError::TdxKeyLockerNotAllowed)
            }),
            ("PERF_PROF", 1 << 5, 0, |e| {
                matches!(e, VerifyError::TdxAttributesNotAllowed { bits: 0x20 })
            }),
            ("reserved bit 40", 1 << 40, 0, |e| {
                matches!(e, VerifyError::TdxAttributesNotAllowed { .. })
            }),
        ];
        for (name, set, clear, expect) in rows {
            let err = check_attributes(&with_attributes(&td, set, clear), &p).expect_err(name);
            assert!(expect(&err), "{name}: {err}");
        }
        // What the policy allows by name passes; LASS always does.
        let mut allowing = Policy::default();
        allowing.tdx_attributes.allow_pks = true;
        allowing.tdx_attributes.allow_perfmon = true;
        allowing.tdx_attributes.allow_key_locker = true;
        check_attributes(
            &with_attributes(&td, PKS | PERFMON | KL | LASS, 0),
            &allowing,
        )
        .expect("allowed by name");
    }

    #[test]
    fn each_pinned_field_is_refused_by_its_own_error() {
        let (report, td) = real();
        let r = reference(&td);
        let mut t = td;
        t.mr_config_id[0] = 1;
        assert!(matches!(
            check_fields(&report, &t, &r),
            Err(VerifyError::TdxMrConfigIdMismatch { .. })
        ));
        let mut t = td;
        t.mr_owner[47] = 1;
        assert!(matches!(
            check_fields(&report, &t, &r),
            Err(VerifyError::TdxMrOwnerMismatch { .. })
        ));
        let mut t = td;
        t.mr_owner_config[3] = 1;
        assert!(matches!(
            check_fields(&report, &t, &r),
            Err(VerifyError::TdxMrOwnerConfigMismatch { .. })
        ));
        // A TDX 1.5 report names its service TDs: one the reference does not is refused.
        let report15 = Report::TD15(dcap_qvl::quote::TDReport15 {
            base: td,
            tee_tcb_svn2: [0; 16],
            mr_service_td: [7; 48],
        });
        assert!(matches!(
            check_fields(&report15, &td, &r),
            Err(VerifyError::TdxServiceTdMismatch { .. })
        ));
    }

    #[test]
    fn an_old_module_is_refused_and_so_is_an_old_updated_one() {
        let (report, td) = real();
        // The sample's module is 1.6 (TEE_TCB_SVN 06 01 …).
        assert_eq!(module_svns(&report, &td), vec![(1, 6)]);
        let p = Policy {
            tdx_min_module_svn: TdxModuleSvn { major: 1, minor: 7 },
            ..Policy::default()
        };
        assert!(matches!(
            check_module(&report, &td, &p),
            Err(VerifyError::TdxModuleTooOld {
                major: 1,
                minor: 6,
                ..
            })
        ));
        let mut old = td;
        old.tee_tcb_svn[0] = 3;
        assert!(matches!(
            check_module(&report, &old, &Policy::default()),
            Err(VerifyError::TdxModuleTooOld { minor: 3, .. })
        ));
        let mut svn2 = [0u8; 16];
        svn2[0] = 2;
        svn2[1] = 1;
        let updated = Report::TD15(dcap_qvl::quote::TDReport15 {
            base: td,
            tee_tcb_svn2: svn2,
            mr_service_td: [0; 48],
        });
        assert!(matches!(
            check_module(&updated, &td, &Policy::default()),
            Err(VerifyError::TdxModuleTooOld { minor: 2, .. })
        ));
    }
}
