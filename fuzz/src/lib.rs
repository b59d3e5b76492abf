//! What the fuzz targets share: the real vectors they check against, one small async runtime,
//! and seed writing.
//!
//! Seeds come from the same fixtures the targets verify against, so they always agree: when
//! `CLOISTER_FUZZ_SEEDS` names a directory (as `cargo xtask fuzz` sets it to the target's corpus),
//! a target's `init` writes its seeds there before libFuzzer reads the corpus.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::sync::OnceLock;

/// 2026-01-01T00:00:00Z: inside the Milan VCEK's validity.
pub const SNP_NOW: u64 = 1_767_225_600;
/// 2025-07-01T00:00:00Z: inside the sample TDX collateral's window.
pub const TDX_NOW: u64 = 1_751_328_000;

/// A file of `measurement/testdata/` (the real vectors).
pub fn testdata(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/../measurement/testdata/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("test vector {path}: {e}"))
}

/// The Milan SNP report (`snp_milan_report.hex`), raw.
pub fn milan_report() -> Vec<u8> {
    let text = String::from_utf8(testdata("snp_milan_report.hex")).expect("hex text");
    hex::decode(text.trim()).expect("hex")
}

/// The ASK and ARK of the Milan chain, DER, from the PEM file (ASK first).
pub fn milan_ask_ark() -> (Vec<u8>, Vec<u8>) {
    let text = String::from_utf8(testdata("snp_milan_ask_ark.pem")).expect("pem text");
    let ders: Vec<Vec<u8>> = text
        .split_inclusive("-----END CERTIFICATE-----")
        .filter(|b| b.contains("BEGIN"))
        .map(|b| pem_rfc7468::decode_vec(b.trim().as_bytes()).expect("pem").1)
        .collect();
    (ders[0].clone(), ders[1].clone())
}

/// Runs `f` to completion on one shared current-thread runtime (timers enabled).
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    })
    .block_on(f)
}

/// A seed: its name and bytes.
pub type Seed = (&'static str, Vec<u8>);

/// Writes `seeds` into `$CLOISTER_FUZZ_SEEDS` when it is set (see the crate documentation).
pub fn write_seeds(seeds: impl FnOnce() -> Vec<Seed>) {
    let Some(dir) = std::env::var_os("CLOISTER_FUZZ_SEEDS").map(PathBuf::from) else {
        return;
    };
    std::fs::create_dir_all(&dir).expect("seed directory");
    for (name, bytes) in seeds() {
        std::fs::write(dir.join(format!("seed-{name}")), bytes).expect("seed written");
    }
}

/// `tag` followed by `body`: the input of a target with several modes.
pub fn tagged(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(body.len() + 1);
    v.push(tag);
    v.extend_from_slice(body);
    v
}

/// A Binary HTTP request (known-length), as a client writes one.
pub fn bhttp_request(
    method: &str,
    authority: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Vec<u8> {
    let mut m = bhttp::Message::request(
        method.as_bytes().to_vec(),
        b"https".to_vec(),
        authority.as_bytes().to_vec(),
        path.as_bytes().to_vec(),
    );
    for (name, value) in headers {
        m.put_header(*name, *value);
    }
    m.write_content(body);
    let mut out = Vec::new();
    m.write_bhttp(bhttp::Mode::KnownLength, &mut out)
        .expect("encodes");
    out
}

/// What a device puts inside the outer layer to reach a node: a token and the inner request.
pub fn forward_request() -> Vec<u8> {
    bhttp_request(
        "POST",
        "cloister-gateway",
        &cloister_protocol::access::node_ohttp_path(
            &cloister_protocol::access::NodeId::new("node-1").expect("a node id"),
        ),
        &[
            ("authorization", "PrivateToken token=AAIA"),
            ("content-type", cloister_protocol::access::OHTTP_REQ_MEDIA),
        ],
        b"inner",
    )
}

/// A Binary HTTP response (known-length), as a gateway or guest writes one.
pub fn bhttp_response(status: u16, content_type: &str, body: &[u8]) -> Vec<u8> {
    let mut m = bhttp::Message::response(bhttp::StatusCode::try_from(status).expect("status"));
    m.put_header("content-type", content_type);
    m.write_content(body);
    let mut out = Vec::new();
    m.write_bhttp(bhttp::Mode::KnownLength, &mut out)
        .expect("encodes");
    out
}

/// The real vectors as evidence bundles: the Milan SNP report with its VCEK (ASK and ARK
/// pinned), and the TDX sample quote with its collateral.
pub fn real_bundles() -> Vec<cloister_protocol::EvidenceBundle> {
    use cloister_protocol::{Endorsements, EvidenceBundle, Platform, SnpCertificates};
    let (ask, ark) = milan_ask_ark();
    vec![
        EvidenceBundle {
            platform: Platform::SevSnp,
            evidence: milan_report(),
            endorsements: Endorsements::Snp(SnpCertificates {
                vcek: testdata("snp_milan_vcek.der"),
                ask: Some(ask),
                ark: Some(ark),
                crl: None,
            }),
            key_config: b"\x01\x00\x20example-ohttp-key-config-bytes".to_vec(),
            expires_at: SNP_NOW + 3600,
            image_manifest_digest: [0x22; 32],
            log_proof: None,
        },
        EvidenceBundle {
            platform: Platform::Tdx,
            evidence: testdata("tdx_quote.bin"),
            endorsements: Endorsements::Tdx {
                collateral: testdata("tdx_quote_collateral.json"),
            },
            key_config: b"\x01\x00\x20example-ohttp-key-config-bytes".to_vec(),
            expires_at: TDX_NOW + 3600,
            image_manifest_digest: [0x33; 32],
            log_proof: Some(cloister_protocol::LogProof {
                entry: b"release".to_vec(),
                leaf_index: 0,
                inclusion_proof: vec![[7; 32]],
                checkpoint: "example.org/log\n1\nAAAA\n\n- example.org/log AAAA\n".to_owned(),
            }),
        },
    ]
}

/// A canonical release record (`cloister-release/v1`) whose digests are all byte `n`.
pub fn release_record(n: u8) -> Vec<u8> {
    let h = hex::encode([n; 32]);
    format!(
        r#"{{"schema":"cloister-release/v1","measurements":[{{"platform":"sev-snp","vcpus":1,"vcpu_type":"EPYC-v4","digest":"{}"}}],"manifest_sha256":"{h}","kernel_sha256":"{h}","initramfs_sha256":"{h}","firmware_sha256":"{h}","cmdline":"c","weights_disk_sha256":null,"source_revision":"r{n}","source_date_epoch":{n}}}"#,
        hex::encode([n; 48])
    )
    .into_bytes()
}
