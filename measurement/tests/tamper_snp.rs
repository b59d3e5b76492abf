//! The SNP tamper table: one row per field an attacker (host, hypervisor, network) can touch,
//! each refused by exactly the check that owns it. Reports come from the emulated AMD secure
//! processor, so rows can re-sign what they change and reach the check behind the signature.
mod common;

use cloister_measurement::{
    CertRole, FixedClock, MinTcb, Policy, TrustAnchor, Verifier, VerifyError,
};
use cloister_protocol::{BindingError, Endorsements, EvidenceBundle, Platform};
use common::*;

/// Offsets in the 1184-byte report (AMD 56860, Table 23).
const OFF_MEASUREMENT: usize = 0x90;
const OFF_SIG_R: usize = 0x2a0;
const OFF_SIG_S: usize = 0x2a0 + 72;

struct Row {
    name: &'static str,
    bundle: EvidenceBundle,
    nonce: Vec<u8>,
    verifier: Verifier<FixedClock>,
    expect: fn(&VerifyError) -> bool,
}

fn row(name: &'static str, bundle: EvidenceBundle, expect: fn(&VerifyError) -> bool) -> Row {
    Row {
        name,
        bundle,
        nonce: Vec::new(),
        verifier: emulated_verifier(),
        expect,
    }
}

fn good() -> EvidenceBundle {
    emulated_bundle(emulated_report(|_| {}))
}

fn flip(mut bytes: Vec<u8>, at: usize) -> Vec<u8> {
    bytes[at] ^= 0x01;
    bytes
}

fn with_certs(edit: impl FnOnce(&mut cloister_protocol::SnpCertificates)) -> EvidenceBundle {
    let mut b = good();
    if let Endorsements::Snp(c) = &mut b.endorsements {
        edit(c);
    }
    b
}

fn policy_with(edit: impl FnOnce(&mut Policy)) -> Verifier<FixedClock> {
    let mut p = emulated_policy();
    edit(&mut p);
    emulated_verifier_with(p, NOW)
}

fn rows() -> Vec<Row> {
    let other = other_emulated().certificates();
    let last = |v: &Vec<u8>| v.len() - 1;
    let mut rows = vec![
        row(
            "signature r",
            emulated_bundle(flip(emulated_report(|_| {}), OFF_SIG_R)),
            |e| matches!(e, VerifyError::ReportSignature(_)),
        ),
        row(
            "signature s",
            emulated_bundle(flip(emulated_report(|_| {}), OFF_SIG_S + 5)),
            |e| matches!(e, VerifyError::ReportSignature(_)),
        ),
        row(
            "measurement, not re-signed",
            emulated_bundle(flip(emulated_report(|_| {}), OFF_MEASUREMENT)),
            |e| matches!(e, VerifyError::ReportSignature(_)),
        ),
        row(
            "measurement, re-signed",
            emulated_bundle(emulated_report(|r| r.measurement[0] ^= 1)),
            |e| matches!(e, VerifyError::MeasurementNotAllowed { .. }),
        ),
        row(
            "report_data, re-signed",
            emulated_bundle(emulated_report(|r| r.report_data[63] ^= 1)),
            |e| matches!(e, VerifyError::ReportDataMismatch),
        ),
        row(
            "key config swapped in the bundle",
            {
                let mut b = good();
                b.key_config[3] ^= 1;
                b
            },
            |e| matches!(e, VerifyError::ReportDataMismatch),
        ),
        row(
            "expiry extended in the bundle",
            {
                let mut b = good();
                b.expires_at += 1;
                b
            },
            |e| matches!(e, VerifyError::ReportDataMismatch),
        ),
        row(
            "policy: debug allowed",
            emulated_bundle(emulated_report(|r| r.policy.set_debug_allowed(true))),
            |e| matches!(e, VerifyError::DebugAllowed),
        ),
        row(
            "policy: migration agent allowed",
            emulated_bundle(emulated_report(|r| r.policy.set_migrate_ma_allowed(true))),
            |e| matches!(e, VerifyError::MigrationAgentAllowed),
        ),
        row(
            "VMPL 1",
            emulated_bundle(emulated_report(|r| r.vmpl = 1)),
            |e| matches!(e, VerifyError::VmplNotZero { found: 1 }),
        ),
        row(
            "chip id (VCEK issued for another chip)",
            emulated_bundle(emulated_report(|r| r.chip_id[0] ^= 1)),
            |e| matches!(e, VerifyError::VcekMismatch { field: "hwID", .. }),
        ),
        row(
            "reported TCB differs from the VCEK's",
            emulated_bundle(emulated_report(|r| r.reported_tcb.snp += 1)),
            |e| {
                matches!(
                    e,
                    VerifyError::VcekMismatch {
                        field: "snpSPL",
                        ..
                    }
                )
            },
        ),
        row(
            "signed by a VLEK",
            emulated_bundle(emulated_report(|r| r.key_info = (1u32 << 2).into())),
            |e| matches!(e, VerifyError::UnsupportedSigningKey { found: 1 }),
        ),
        row(
            "signature algorithm",
            emulated_bundle(emulated_report(|r| r.sig_algo = 2)),
            |e| matches!(e, VerifyError::UnsupportedSignatureAlgorithm { found: 2 }),
        ),
        row(
            "ARK swapped for another emulated root",
            with_certs(|c| c.ark = other.ark.clone()),
            |e| matches!(e, VerifyError::UntrustedRoot { .. }),
        ),
        row(
            "ASK from another root",
            with_certs(|c| c.ask = other.ask.clone()),
            |e| matches!(e, VerifyError::AskSignature(_)),
        ),
        row(
            "VCEK from another processor",
            with_certs(|c| c.vcek = other.vcek.clone()),
            |e| matches!(e, VerifyError::VcekSignature(_)),
        ),
        row(
            "VCEK certificate signature",
            with_certs(|c| {
                let at = last(&c.vcek);
                c.vcek[at] ^= 1;
            }),
            |e| matches!(e, VerifyError::VcekSignature(_)),
        ),
        row(
            "ASK certificate signature",
            with_certs(|c| {
                let ask = c.ask.as_mut().expect("ask");
                let at = ask.len() - 1;
                ask[at] ^= 1;
            }),
            |e| matches!(e, VerifyError::AskSignature(_)),
        ),
        row("VCEK not DER", with_certs(|c| c.vcek.truncate(100)), |e| {
            matches!(
                e,
                VerifyError::CertificateMalformed {
                    role: CertRole::Vcek,
                    ..
                }
            )
        }),
        row(
            "report truncated",
            emulated_bundle(emulated_report(|_| {})[..1000].to_vec()),
            |e| matches!(e, VerifyError::SnpReportMalformed(_)),
        ),
        row(
            "emulated report labelled sev-snp",
            {
                let mut b = good();
                b.platform = Platform::SevSnp;
                b
            },
            |e| {
                matches!(
                    e,
                    VerifyError::PlatformNotTrusted {
                        platform: Platform::SevSnp,
                        ..
                    }
                )
            },
        ),
    ];

    // Rows that change the verifier's side: the client's nonce, the policy, the clock, the
    // anchor.
    let mut nonce = row("client nonce not bound", good(), |e| {
        matches!(e, VerifyError::ReportDataMismatch)
    });
    nonce.nonce = b"fresh-client-nonce".to_vec();
    rows.push(nonce);
    let mut long_nonce = row("overlong nonce", good(), |e| {
        matches!(e, VerifyError::Binding(BindingError::NonceTooLong { .. }))
    });
    long_nonce.nonce = vec![0; 65];
    rows.push(long_nonce);

    // Revocation: a CRL stapled to the evidence is checked even under the emulated anchor
    // (which does not demand one).
    let crl = |signer: &cloister_insecure_emulated_sp::EmulatedSnpSigner,
               revoked: &[u32],
               from: u64,
               to: u64| { signer.crl(revoked, from, to).expect("signs a CRL") };
    rows.push(row(
        "CRL revokes the ASK",
        with_certs(|c| c.crl = Some(crl(emulated(), &[7, 2], NOW - 3600, NOW + 86_400))),
        |e| matches!(e, VerifyError::Revoked { role: CertRole::Ask, serial } if serial == "02"),
    ));
    rows.push(row(
        "CRL past its nextUpdate",
        with_certs(|c| c.crl = Some(crl(emulated(), &[], NOW - 864_000, NOW - 1))),
        |e| matches!(e, VerifyError::CrlStale { .. }),
    ));
    rows.push(row(
        "CRL signed by another ARK",
        with_certs(|c| c.crl = Some(crl(other_emulated(), &[], NOW - 3600, NOW + 86_400))),
        |e| matches!(e, VerifyError::CrlSignature(_)),
    ));
    rows.push(row(
        "CRL bytes not a CRL",
        with_certs(|c| c.crl = Some(b"not a CRL".to_vec())),
        |e| matches!(e, VerifyError::CrlMalformed(_)),
    ));

    // Platform and guest-policy pins (the emulated platform reports SMT on, ciphertext hiding
    // off, and a guest policy that allows SMT and does not require a single socket).
    let mut r = row("platform: SMT on, refused by the policy", good(), |e| {
        matches!(e, VerifyError::SmtEnabled)
    });
    r.verifier = policy_with(|p| p.snp_platform.allow_smt = false);
    rows.push(r);
    let mut r = row("guest policy: single socket not required", good(), |e| {
        matches!(e, VerifyError::SingleSocketNotRequired)
    });
    r.verifier = policy_with(|p| p.snp_platform.require_single_socket = true);
    rows.push(r);
    let mut r = row("platform: ciphertext hiding off", good(), |e| {
        matches!(e, VerifyError::CiphertextHidingOff)
    });
    r.verifier = policy_with(|p| p.snp_platform.require_ciphertext_hiding = true);
    rows.push(r);
    let mut r = row(
        "pins met (ciphertext hiding on, SMT off, single socket): the TCB step is next",
        emulated_bundle(emulated_report(|r| {
            r.plat_info = 0x12.into();
            r.policy.set_single_socket_required(true);
        })),
        |e| {
            matches!(
                e,
                VerifyError::TcbTooLow {
                    component: "snp",
                    ..
                }
            )
        },
    );
    r.verifier = policy_with(|p| {
        p.snp_platform = cloister_measurement::SnpPlatformPolicy {
            allow_smt: false,
            require_single_socket: true,
            require_ciphertext_hiding: true,
        };
        p.snp_min_tcb.snp = 200;
    });
    rows.push(r);

    let mut r = row("report version below the minimum", good(), |e| {
        matches!(e, VerifyError::ReportVersionTooOld { found: 3, min: 5 })
    });
    r.verifier = policy_with(|p| p.snp_min_report_version = 5);
    rows.push(r);

    for (component, min) in [
        (
            "bootloader",
            MinTcb {
                bootloader: 10,
                ..MinTcb::default()
            },
        ),
        (
            "tee",
            MinTcb {
                tee: 1,
                ..MinTcb::default()
            },
        ),
        (
            "snp",
            MinTcb {
                snp: 24,
                ..MinTcb::default()
            },
        ),
        (
            "microcode",
            MinTcb {
                microcode: 73,
                ..MinTcb::default()
            },
        ),
    ] {
        let mut r = row(component, good(), |_| false);
        r.verifier = policy_with(|p| p.snp_min_tcb = min);
        r.expect = match component {
            "bootloader" => |e| {
                matches!(
                    e,
                    VerifyError::TcbTooLow {
                        component: "bootloader",
                        found: 9,
                        min: 10
                    }
                )
            },
            "tee" => |e| {
                matches!(
                    e,
                    VerifyError::TcbTooLow {
                        component: "tee",
                        ..
                    }
                )
            },
            "snp" => |e| {
                matches!(
                    e,
                    VerifyError::TcbTooLow {
                        component: "snp",
                        ..
                    }
                )
            },
            _ => |e| {
                matches!(
                    e,
                    VerifyError::TcbTooLow {
                        component: "microcode",
                        ..
                    }
                )
            },
        };
        rows.push(r);
    }

    let mut r = row("measurement not in the allow-set", good(), |e| {
        matches!(e, VerifyError::MeasurementNotAllowed { .. })
    });
    r.verifier = policy_with(|p| p.snp_measurements.clear());
    rows.push(r);

    let mut r = row("expired", good(), |e| {
        matches!(e, VerifyError::Expired { .. })
    });
    r.verifier = emulated_verifier_with(emulated_policy(), EXPIRES_AT);
    rows.push(r);

    let mut r = row("lifetime longer than the policy believes", good(), |e| {
        matches!(e, VerifyError::ExpiryTooFar { .. })
    });
    r.verifier = policy_with(|p| p.max_evidence_lifetime_secs = 3600);
    rows.push(r);

    let mut r = row("certificates expired", good(), |e| {
        matches!(
            e,
            VerifyError::CertificateExpired {
                role: CertRole::Ark,
                ..
            }
        )
    });
    r.verifier = emulated_verifier_with(emulated_policy(), 2_600_000_000);
    rows.push(r);

    let mut r = row("certificates not yet valid", good(), |e| {
        matches!(
            e,
            VerifyError::CertificateNotYetValid {
                role: CertRole::Ark,
                ..
            }
        )
    });
    r.verifier = emulated_verifier_with(emulated_policy(), 1_700_000_000);
    rows.push(r);

    let hardware = || {
        Verifier::new(
            TrustAnchor::hardware().expect("pinned"),
            emulated_policy(),
            FixedClock(NOW),
        )
    };
    let mut r = row("emulated chain under the AMD anchor", good(), |e| {
        matches!(e, VerifyError::UntrustedRoot { .. })
    });
    r.bundle.platform = Platform::SevSnp;
    r.verifier = hardware();
    rows.push(r);

    let mut r = row("emulated platform under the AMD anchor", good(), |e| {
        matches!(
            e,
            VerifyError::PlatformNotTrusted {
                platform: Platform::EmulatedSevSnp,
                ..
            }
        )
    });
    r.verifier = hardware();
    rows.push(r);

    rows
}

#[test]
fn the_untampered_bundle_verifies() {
    let v = emulated_verifier().verify(&good(), b"").expect("verifies");
    assert_eq!(v.platform, Platform::EmulatedSevSnp);
    assert_eq!(v.key_config, KEY_CONFIG);
    assert_eq!(v.checks.len(), 8);
    // And through the wire form.
    emulated_verifier()
        .verify_json(&good().to_json(), b"")
        .expect("verifies from JSON");
    // A bound client nonce verifies too.
    let b = emulated_bundle(emulated_report(|r| r.report_data = bound_report_data(b"n")));
    emulated_verifier()
        .verify(&b, b"n")
        .expect("nonce-bound bundle verifies");
}

#[test]
fn each_tampered_field_is_refused_by_its_own_check() {
    let rows = rows();
    assert!(rows.len() >= 20, "{} rows", rows.len());
    let mut failures = Vec::new();
    for r in &rows {
        match r.verifier.verify(&r.bundle, &r.nonce) {
            Ok(_) => failures.push(format!("{}: accepted", r.name)),
            Err(e) if !(r.expect)(&e) => failures.push(format!("{}: wrong error {e:?}", r.name)),
            Err(_) => {}
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
