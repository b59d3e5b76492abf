//! The measurement step with a trusted transparency log: the emulated node's evidence carries
//! a log proof for its release; each way the proof or the release can fail to cover the
//! report is refused by name, and without a log the policy's allow-set still decides.

mod common;

use cloister_measurement::{Policy, Step, VerifyError};
use cloister_protocol::LogProof;
use cloister_transparency::cosign::CosignatureSigner;
use cloister_transparency::{Log, Measurement, Quorum, ReleaseRecord, TrustedLog, Witness};
use common::*;
use zeroize::Zeroizing;

fn release(measurement: [u8; 48], manifest: [u8; 32]) -> Vec<u8> {
    let h = hex::encode([7u8; 32]);
    ReleaseRecord {
        schema: cloister_transparency::SCHEMA.into(),
        measurements: vec![Measurement {
            platform: "emulated-sev-snp".into(),
            vcpus: 1,
            vcpu_type: "EPYC-v4".into(),
            digest: hex::encode(measurement),
        }],
        manifest_sha256: hex::encode(manifest),
        kernel_sha256: h.clone(),
        initramfs_sha256: h.clone(),
        firmware_sha256: h,
        cmdline: "console=ttyS0 cloister.attest=emulated".into(),
        weights_disk_sha256: None,
        source_revision: "test".into(),
        source_date_epoch: 0,
        snp_min_tcb: None,
    }
    .to_bytes()
    .expect("a record")
}

/// A log holding three releases (the node's at index 1 unless `records` says otherwise),
/// cosigned by one witness when `cosign`; the proof of `index` and the trusted keys.
fn logged(records: &[Vec<u8>], index: u64, cosign: bool) -> (LogProof, TrustedLog) {
    let dir = tempfile::tempdir().expect("test value");
    let (skey, vkey) = signed_note::generate_key(&mut rand_core::OsRng, "log.example/releases");
    let log =
        Log::create(&dir.path().join("log"), &Zeroizing::new(skey), &vkey).expect("test value");
    log.append(records, |_| {}).expect("test value");
    let signer =
        CosignatureSigner::new("w.example", &Zeroizing::new([3u8; 32]), NOW).expect("test value");
    let wkey = signer.verifier_key();
    let witness = Witness::new(signer, &vkey, &dir.path().join("w.json")).expect("test value");
    let mut proof = log.log_proof(index).expect("test value");
    if cosign {
        let cp = witness
            .cosign(proof.checkpoint.as_bytes(), &[])
            .expect("test value");
        proof.checkpoint = String::from_utf8(cp).expect("test value");
    }
    let trusted = TrustedLog::new(&vkey, &[wkey], Quorum::ONE).expect("test value");
    (proof, trusted)
}

fn node_records() -> Vec<Vec<u8>> {
    vec![
        release([1; 48], [0x11; 32]),
        release(MEASUREMENT, [0x11; 32]),
        release([2; 48], [0x11; 32]),
    ]
}

#[test]
fn a_logged_measurement_is_accepted_without_an_allow_list() {
    let (proof, trusted) = logged(&node_records(), 1, true);
    let mut bundle = emulated_bundle(emulated_report(|_| {}));
    bundle.log_proof = Some(proof);
    let verifier = emulated_verifier_with(Policy::default(), NOW).with_log(trusted);
    let verified = verifier.verify(&bundle, b"").expect("accepted");
    let cp = verified.logged.expect("the checkpoint it was found under");
    assert_eq!((cp.size, cp.witnesses.len()), (3, 1));
    let step = verified
        .checks
        .iter()
        .find(|c| c.step == Step::Measurement)
        .expect("test value");
    assert!(step.result.as_ref().is_ok_and(|m| m.contains("in the log")));
}

#[test]
fn each_gap_between_the_log_and_the_report_is_refused_by_name() {
    let refusal = |records: &[Vec<u8>], index: u64, cosign: bool, attach: bool| {
        let (proof, trusted) = logged(records, index, cosign);
        let mut bundle = emulated_bundle(emulated_report(|_| {}));
        bundle.log_proof = attach.then_some(proof);
        let verifier = emulated_verifier_with(Policy::default(), NOW).with_log(trusted);
        let inspection = verifier.inspect(&bundle, b"");
        // The earlier steps all passed: the refusal is the measurement step's.
        assert_eq!(
            inspection.first_error(),
            inspection.error_at(Step::Measurement)
        );
        inspection.first_error().cloned().expect("refused")
    };
    assert_eq!(
        refusal(&node_records(), 1, true, false),
        VerifyError::LogProofMissing
    );
    assert!(matches!(
        refusal(&node_records(), 0, true, true),
        VerifyError::NotInLog { .. }
    ));
    let other_manifest = vec![release(MEASUREMENT, [0x99; 32])];
    assert!(matches!(
        refusal(&other_manifest, 0, true, true),
        VerifyError::ManifestNotInLog { .. }
    ));
    assert_eq!(
        refusal(&node_records(), 1, false, true),
        VerifyError::Log(cloister_transparency::VerifyError::Witnesses { have: 0, need: 1 })
    );
    // A proof whose path was cut short.
    let (mut proof, trusted) = logged(&node_records(), 1, true);
    proof.inclusion_proof.pop();
    let mut bundle = emulated_bundle(emulated_report(|_| {}));
    bundle.log_proof = Some(proof);
    let verifier = emulated_verifier_with(Policy::default(), NOW).with_log(trusted);
    assert_eq!(
        verifier.verify(&bundle, b""),
        Err(VerifyError::Log(
            cloister_transparency::VerifyError::Inclusion
        ))
    );
}

#[test]
fn without_a_log_the_allow_list_decides() {
    let bundle = emulated_bundle(emulated_report(|_| {}));
    let verified = emulated_verifier().verify(&bundle, b"").expect("accepted");
    assert_eq!(verified.logged, None);
    assert!(matches!(
        emulated_verifier_with(Policy::default(), NOW).verify(&bundle, b""),
        Err(VerifyError::MeasurementNotAllowed { .. })
    ));
}

/// The release's recorded TCB floor binds every device that trusts the log, whatever floor its
/// own policy has: the emulated chip reports SNP SPL 23 (`EmulatedTcb::default`), the release
/// demands 24 for the `Emulated` product, and the refusal names the component.
#[test]
fn the_logged_releases_tcb_floor_raises_the_devices() {
    let floored = |snp: u8| {
        let mut r = ReleaseRecord::from_bytes(&release(MEASUREMENT, [0x11; 32])).expect("record");
        let mut floors = std::collections::BTreeMap::new();
        floors.insert(
            "Emulated".to_owned(),
            cloister_transparency::RecordTcb {
                snp,
                ..Default::default()
            },
        );
        r.snp_min_tcb = Some(floors);
        r.to_bytes().expect("record")
    };
    for (snp, refused) in [(24u8, true), (23, false)] {
        let records = vec![release([1; 48], [0x11; 32]), floored(snp)];
        let (proof, trusted) = logged(&records, 1, true);
        let mut bundle = emulated_bundle(emulated_report(|_| {}));
        bundle.log_proof = Some(proof);
        let verifier = emulated_verifier_with(Policy::default(), NOW).with_log(trusted);
        let result = verifier.verify(&bundle, b"");
        if refused {
            assert!(
                matches!(
                    result,
                    Err(VerifyError::TcbTooLow {
                        component: "snp",
                        found: 23,
                        min: 24
                    })
                ),
                "{result:?}"
            );
        } else {
            assert!(result.is_ok(), "{result:?}");
        }
    }
}
