use super::*;

fn snp_bundle() -> EvidenceBundle {
    EvidenceBundle {
        platform: Platform::SevSnp,
        evidence: vec![7u8; 1184],
        endorsements: Endorsements::Snp(SnpCertificates {
            vcek: vec![1, 2, 3],
            ask: Some(vec![4, 5]),
            ark: None,
            crl: None,
        }),
        key_config: vec![9u8; 41],
        expires_at: 1_800_000_000,
        image_manifest_digest: [0xab; 32],
        log_proof: Some(LogProof {
            entry: b"{\"release\":1}".to_vec(),
            leaf_index: 41,
            inclusion_proof: vec![[1u8; 32], [2u8; 32]],
            checkpoint: "example.org/log\n42\nAAAA\n\n— sig\n".to_owned(),
        }),
    }
}

fn tdx_bundle() -> EvidenceBundle {
    EvidenceBundle {
        platform: Platform::Tdx,
        evidence: vec![4u8; 5000],
        endorsements: Endorsements::Tdx {
            collateral: b"{}".to_vec(),
        },
        key_config: vec![1u8; 41],
        expires_at: 5,
        image_manifest_digest: [0; 32],
        log_proof: None,
    }
}

fn json(b: &EvidenceBundle) -> serde_json::Value {
    serde_json::from_slice(&b.to_json()).expect("own encoding is JSON")
}

fn decode(v: &serde_json::Value) -> Result<EvidenceBundle, BundleError> {
    EvidenceBundle::from_json(&serde_json::to_vec(v).expect("serialises"))
}

#[test]
fn round_trips_every_platform() {
    for b in [snp_bundle(), tdx_bundle()] {
        assert_eq!(EvidenceBundle::from_json(&b.to_json()), Ok(b));
    }
    let mut emu = snp_bundle();
    emu.platform = Platform::EmulatedSevSnp;
    assert_eq!(EvidenceBundle::from_json(&emu.to_json()), Ok(emu));
}

#[test]
fn wire_form_uses_base64_and_hex() {
    let v = json(&snp_bundle());
    assert_eq!(v["version"], 1);
    assert_eq!(v["platform"], "sev-snp");
    assert_eq!(v["certificates"]["vcek"], "AQID");
    assert_eq!(v["image_manifest_digest"], "ab".repeat(32));
    assert!(v.get("collateral").is_none());
}

#[test]
fn refuses_unknown_version() {
    let mut v = json(&snp_bundle());
    v["version"] = 2.into();
    v["a_field_from_the_future"] = true.into();
    assert_eq!(
        decode(&v),
        Err(BundleError::UnsupportedVersion {
            found: 2,
            supported: 1
        })
    );
}

#[test]
fn refuses_unknown_platform() {
    let mut v = json(&snp_bundle());
    v["platform"] = "sev-snp-but-trust-me".into();
    assert!(matches!(
        decode(&v),
        Err(BundleError::UnknownPlatform { found }) if found == "sev-snp-but-trust-me"
    ));
}

#[test]
fn refuses_unknown_fields() {
    let mut v = json(&snp_bundle());
    v["debug"] = true.into();
    assert!(matches!(decode(&v), Err(BundleError::Json(_))));
}

#[test]
fn refuses_malformed_base64() {
    for (path, bad) in [
        ("evidence", "not base64!"),
        ("key_config", "AQI"),
        ("certificates.vcek", "A=QID"),
    ] {
        let mut v = json(&snp_bundle());
        match path.split_once('.') {
            Some((a, b)) => v[a][b] = bad.into(),
            None => v[path] = bad.into(),
        }
        assert_eq!(
            decode(&v),
            Err(BundleError::Base64 { field: path }),
            "{path}"
        );
    }
}

#[test]
fn refuses_oversize_fields() {
    let mut v = json(&snp_bundle());
    v["evidence"] = wire::enc(&vec![0u8; MAX_EVIDENCE_LEN + 1]).into();
    assert!(matches!(
        decode(&v),
        Err(BundleError::FieldTooLarge {
            field: "evidence",
            ..
        })
    ));

    let mut v = json(&snp_bundle());
    v["key_config"] = wire::enc(&vec![0u8; MAX_KEY_CONFIG_LEN + 1]).into();
    assert!(matches!(
        decode(&v),
        Err(BundleError::FieldTooLarge { field: "key_config", found, max })
            if found == MAX_KEY_CONFIG_LEN + 1 && max == MAX_KEY_CONFIG_LEN
    ));

    let mut v = json(&snp_bundle());
    v["log_proof"]["inclusion_proof"] = vec![wire::enc(&[0u8; 32]); 64].into();
    assert!(matches!(
        decode(&v),
        Err(BundleError::TooManyItems {
            field: "log_proof.inclusion_proof",
            found: 64,
            max: 63
        })
    ));

    let mut v = json(&snp_bundle());
    v["log_proof"]["inclusion_proof"] = vec![wire::enc(&[0u8; 31])].into();
    assert!(matches!(
        decode(&v),
        Err(BundleError::WrongLength {
            field: "log_proof.inclusion_proof",
            found: 31,
            expected: 32
        })
    ));

    let huge = vec![b' '; MAX_BUNDLE_LEN + 1];
    assert!(matches!(
        EvidenceBundle::from_json(&huge),
        Err(BundleError::TooLarge { .. })
    ));
}

#[test]
fn refuses_bad_digest() {
    let mut v = json(&snp_bundle());
    v["image_manifest_digest"] = "AB".repeat(32).into();
    assert_eq!(
        decode(&v),
        Err(BundleError::Hex {
            field: "image_manifest_digest"
        })
    );
    v["image_manifest_digest"] = "ab".into();
    assert!(matches!(decode(&v), Err(BundleError::WrongLength { .. })));
}

#[test]
fn endorsements_must_match_the_platform() {
    let mut v = json(&snp_bundle());
    v["collateral"] = "e30=".into();
    assert_eq!(
        decode(&v),
        Err(BundleError::UnexpectedField {
            field: "collateral",
            platform: Platform::SevSnp
        })
    );
    let mut v = json(&snp_bundle());
    v.as_object_mut().expect("object").remove("certificates");
    assert_eq!(
        decode(&v),
        Err(BundleError::MissingField {
            field: "certificates",
            platform: Platform::SevSnp
        })
    );
    let mut v = json(&tdx_bundle());
    v["certificates"] = serde_json::json!({"vcek": "AQID"});
    assert_eq!(
        decode(&v),
        Err(BundleError::UnexpectedField {
            field: "certificates",
            platform: Platform::Tdx
        })
    );
    let mut v = json(&tdx_bundle());
    v.as_object_mut().expect("object").remove("collateral");
    assert_eq!(
        decode(&v),
        Err(BundleError::MissingField {
            field: "collateral",
            platform: Platform::Tdx
        })
    );
}

#[test]
fn garbage_is_an_error_not_a_panic() {
    for input in [
        &b""[..],
        b"null",
        b"[]",
        b"{\"version\":-1}",
        b"{\"version\":1}",
        &[0xff; 9],
    ] {
        assert!(EvidenceBundle::from_json(input).is_err());
    }
}

#[test]
fn a_log_proof_round_trips_alone_and_keeps_its_limits() {
    let proof = snp_bundle().log_proof.expect("the test bundle has one");
    let json = proof.to_json();
    assert_eq!(LogProof::from_json(&json).expect("round trip"), proof);
    let mut v: serde_json::Value = serde_json::from_slice(&json).expect("json");
    v["inclusion_proof"] = vec![wire::enc(&[0u8; 32]); 64].into();
    assert!(matches!(
        LogProof::from_json(v.to_string().as_bytes()),
        Err(BundleError::TooManyItems { .. })
    ));
    assert!(LogProof::from_json(b"{\"entry\":\"\"}").is_err());
}
