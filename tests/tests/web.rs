//! The browser verifier in a real browser: the page `cargo xtask web` builds, served over
//! loopback HTTP, opened by headless Chromium with the evidence named in its address. What the
//! page draws must be what the device core reports natively for the same inputs, step by step:
//! AMD's real Milan report passes every step but the binding, an emulated bundle passes only
//! under the insecure anchor chosen by name, and a tampered report shows its exact refusal.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use cloister_device_core::report::{self, AnchorChoice, Report, ReportInput, Status};
use cloister_device_core::testkit::{self, milan};

const BROWSER: &str = "chromium-headless-shell";

/// One step as the page drew it.
#[derive(Debug, PartialEq, Eq)]
struct Drawn {
    step: String,
    status: String,
    refusal: String,
    detail: String,
}

/// The page, built by `cargo xtask test` (or `cargo xtask web`), with the fixtures beside it.
fn site() -> (tempfile::TempDir, BTreeMap<String, Vec<u8>>) {
    let built = std::env::var_os("CLOISTER_WEB_DIR")
        .map(PathBuf::from)
        .expect(
            "CLOISTER_WEB_DIR is not set: run the full tier with `cargo xtask test`, or build the \
         page with `cargo xtask web` and set CLOISTER_WEB_DIR=target/cloister-web",
        );
    let dir = tempfile::tempdir().expect("temp dir");
    let mut files = BTreeMap::new();
    collect(&built, &built, &mut files);
    (dir, files)
}

fn collect(root: &Path, dir: &Path, files: &mut BTreeMap<String, Vec<u8>>) {
    for entry in std::fs::read_dir(dir).expect("the built page") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            collect(root, &path, files);
        } else {
            let name = path.strip_prefix(root).expect("under root");
            let bytes = std::fs::read(&path).expect("read");
            files.insert(format!("/{}", name.display()), bytes);
        }
    }
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next() {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript",
        Some("css") => "text/css",
        Some("wasm") => "application/wasm",
        Some("json") => "application/json",
        _ => "application/octet-stream",
    }
}

/// Serves `files` on loopback; returns the base address.
fn serve(rt: &tokio::runtime::Runtime, files: BTreeMap<String, Vec<u8>>) -> String {
    let files = std::sync::Arc::new(files);
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    rt.spawn(cloister_http::serve(
        listener,
        move |req: hyper::Request<hyper::body::Incoming>| {
            let files = std::sync::Arc::clone(&files);
            async move {
                let path = req.uri().path().to_owned();
                match files.get(&path) {
                    Some(b) => {
                        cloister_http::reply(200, content_type(&path), Bytes::from(b.clone()))
                    }
                    None => cloister_http::reply(404, "text/plain", "not found"),
                }
            }
        },
        cloister_http::Options::default(),
        std::future::pending(),
        Duration::from_secs(1),
    ));
    format!("http://{addr}")
}

/// Opens `url` in headless Chromium and returns the DOM once the page has settled.
fn dom(url: &str, profile: &Path) -> String {
    let out = Command::new(BROWSER)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--virtual-time-budget=60000",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(url)
        .output()
        .unwrap_or_else(|e| panic!("{BROWSER} does not start ({e}): run `cargo xtask setup`"));
    assert!(
        out.status.success(),
        "{BROWSER} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 DOM")
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&nbsp;", "\u{a0}")
        .replace("&amp;", "&")
}

fn attribute(tag: &str, name: &str) -> String {
    let key = format!("{name}=\"");
    tag.split_once(&key)
        .and_then(|(_, rest)| rest.split_once('"'))
        .map(|(v, _)| unescape(v))
        .unwrap_or_default()
}

/// The steps the page drew, and the verdict's `data-accepted`.
fn drawn(dom: &str) -> (Vec<Drawn>, String, String) {
    let state = dom
        .split_once("id=\"result\"")
        .map(|(_, rest)| attribute(rest.split('>').next().unwrap_or(""), "data-state"))
        .unwrap_or_default();
    let verdict = dom
        .split_once("<p id=\"verdict\"")
        .map(|(_, rest)| rest.split('>').next().unwrap_or("").to_owned())
        .map(|tag| attribute(&tag, "data-accepted"))
        .unwrap_or_default();
    let mut steps = Vec::new();
    for item in dom.split("<li ").skip(1) {
        let (tag, body) = item.split_once('>').expect("a tag");
        let detail = body
            .split_once("class=\"detail\">")
            .and_then(|(_, rest)| rest.split_once("</span>"))
            .map(|(d, _)| unescape(d))
            .unwrap_or_default();
        steps.push(Drawn {
            step: attribute(tag, "data-step"),
            status: attribute(tag, "data-status"),
            refusal: attribute(tag, "data-refusal"),
            detail,
        });
    }
    (steps, verdict, state)
}

fn status_name(s: Status) -> &'static str {
    match s {
        Status::Ok => "ok",
        Status::Failed => "failed",
        Status::Skipped => "skipped",
    }
}

/// The page's drawing equals the native report, line for line.
fn assert_same(page: &[Drawn], native: &Report) {
    let want: Vec<Drawn> = native
        .checks
        .iter()
        .map(|c| Drawn {
            step: c.step.to_owned(),
            status: status_name(c.status).to_owned(),
            refusal: c.refusal.clone(),
            detail: c.detail.clone(),
        })
        .collect();
    assert_eq!(page, want.as_slice());
}

#[test]
#[ignore = "full tier: the built page and headless Chromium (cargo xtask test)"]
fn the_page_draws_what_the_device_core_reports_in_a_real_browser() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let (profile, mut files) = site();

    // AMD's real Milan report.
    let milan_bundle = milan::bundle().to_json();
    let milan_refs = milan::reference_values();
    let mut tampered = milan::bundle();
    tampered.evidence[0x90] ^= 1; // one bit of the measurement
    let tampered = tampered.to_json();
    // An emulated node's bundle and its processor's ARK.
    let emulated = testkit::bundle(b"key-config", testkit::MEASUREMENT, true).to_json();
    let emulated_refs = format!(
        r#"{{"snp_measurements": ["{}"]}}"#,
        hex::encode(testkit::MEASUREMENT)
    )
    .into_bytes();
    let ark = testkit::signer().ark_der().to_vec();
    let now = testkit::now();
    for (name, bytes) in [
        ("milan.json", &milan_bundle),
        ("milan-refs.json", &milan_refs),
        ("tampered.json", &tampered),
        ("emulated.json", &emulated),
        ("emulated-refs.json", &emulated_refs),
        ("ark.der", &ark),
    ] {
        files.insert(format!("/fixtures/{name}"), bytes.clone());
    }
    let base = serve(&rt, files);
    let native = |bundle: &[u8], refs: &[u8], anchor: AnchorChoice, at: u64| {
        report::inspect(&ReportInput {
            bundle,
            reference_values: refs,
            anchor,
            nonce: b"",
            at,
            log: None,
            log_proof: None,
        })
        .expect("inspects")
    };
    let page = |query: &str| {
        let url = format!("{base}/index.html?{query}");
        drawn(&dom(&url, profile.path()))
    };
    let fx = |name: &str| format!("{base}/fixtures/{name}");

    // Milan: every step but the TCB floor (old firmware) and the binding passes.
    let (steps, accepted, state) = page(&format!(
        "bundle={}&reference={}&at={}",
        fx("milan.json"),
        fx("milan-refs.json"),
        milan::AT
    ));
    assert_eq!(state, "done", "the page did not finish: {steps:?}");
    assert_eq!(accepted, "false");
    let want = native(
        &milan_bundle,
        &milan_refs,
        AnchorChoice::Hardware,
        milan::AT,
    );
    assert_same(&steps, &want);
    for s in &steps {
        let expected = if s.step == "binding" || s.step == "policy" {
            "failed"
        } else {
            "ok"
        };
        assert_eq!(s.status, expected, "{s:?}");
    }
    assert_eq!(steps[4].refusal, "TcbTooLow");
    assert_eq!(steps[5].refusal, "ReportDataMismatch");

    // Tampered: refused at the signature, with the verifier's own words.
    let (steps, accepted, _) = page(&format!(
        "bundle={}&reference={}&at={}",
        fx("tampered.json"),
        fx("milan-refs.json"),
        milan::AT
    ));
    assert_eq!(accepted, "false");
    assert_same(
        &steps,
        &native(&tampered, &milan_refs, AnchorChoice::Hardware, milan::AT),
    );
    assert_eq!(
        (steps[3].step.as_str(), steps[3].status.as_str()),
        ("signature", "failed")
    );
    assert_eq!(steps[3].refusal, "ReportSignature");

    // Emulated, hardware anchor (the default): refused at the platform.
    let (steps, accepted, _) = page(&format!(
        "bundle={}&reference={}&at={now}",
        fx("emulated.json"),
        fx("emulated-refs.json")
    ));
    assert_eq!(accepted, "false");
    assert_eq!(steps[1].refusal, "PlatformNotTrusted");
    assert_same(
        &steps,
        &native(&emulated, &emulated_refs, AnchorChoice::Hardware, now),
    );

    // Emulated, the insecure anchor named with its ARK: accepted, and the page says INSECURE.
    let url = format!(
        "{base}/index.html?bundle={}&reference={}&at={now}&anchor=insecure-emulated&ark={}",
        fx("emulated.json"),
        fx("emulated-refs.json"),
        fx("ark.der")
    );
    let document = dom(&url, profile.path());
    let (steps, accepted, _) = drawn(&document);
    assert_eq!(accepted, "true", "{steps:?}");
    assert!(steps.iter().all(|s| s.status == "ok"), "{steps:?}");
    let root = testkit::emulated_root().fingerprint();
    assert!(
        document.contains(&format!("INSECURE emulated anchor (ARK sha256 {root})")),
        "the page must say the anchor is insecure"
    );

    // The insecure anchor without its ARK: nothing is inspected, and the page says why.
    let (steps, accepted, state) = page(&format!(
        "bundle={}&reference={}&at={now}&anchor=insecure-emulated",
        fx("emulated.json"),
        fx("emulated-refs.json")
    ));
    assert_eq!((state.as_str(), accepted.as_str()), ("error", "false"));
    assert!(steps.is_empty());
}
