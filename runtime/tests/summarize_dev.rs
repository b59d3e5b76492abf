//! The runtime binary in development mode with the summariser: `cloister-runtime --models`
//! loads the smallest pinned language model and the embedder, and a client that verified the
//! evidence gets a real summary of a real chat through inner OHTTP — and named 4xx errors for
//! bad requests. Full tier: the weights must be in the cache (`cargo xtask setup` fetches them).
mod common;

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use cloister_guest_image::model::{MINILM_L6_V2, SMOLLM2_135M, require};
use common::{attested_key, call, sp};

const JSON: &str = "application/json";

struct Runtime {
    child: Child,
    _dir: tempfile::TempDir,
    socket: std::path::PathBuf,
}

impl Drop for Runtime {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the binary and waits for its READY line.
fn start(models: &Path, model: &str) -> Runtime {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("runtime.sock");
    let mut child = Command::new(env!("CARGO_BIN_EXE_cloister-runtime"))
        .arg("--unix")
        .arg(&socket)
        .arg("--emulated-sp")
        .arg(&sp().socket)
        .arg("--cmdline")
        .arg(format!("cloister.attest=emulated cloister.model={model}"))
        .arg("--models")
        .arg(models)
        .env("CANDLE_BARRIER_POOL_SPIN_LIMIT", "0")
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn cloister-runtime");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("ready line");
    assert!(
        line.starts_with("READY "),
        "runtime did not start: {line:?}"
    );
    Runtime {
        child,
        _dir: dir,
        socket,
    }
}

fn models() -> std::path::PathBuf {
    let cache = cloister_guest_image::cache_root();
    require(&cache, &SMOLLM2_135M).expect("SmolLM2 weights");
    require(&cache, &MINILM_L6_V2).expect("MiniLM weights");
    cache.join("models")
}

const CHAT: &str = r#"{"messages": [
  {"from": "Maya", "at": "2026-03-02T18:01", "text": "Can we move the team dinner to Friday? Thursday I have the dentist."},
  {"from": "Jonas", "at": "2026-03-02T18:03", "text": "Friday works. Same place, the Lebanese restaurant on Elm Street?"},
  {"from": "Maya", "at": "2026-03-02T18:04", "text": "Yes. I'll book a table for six at 7.30pm."},
  {"from": "Aiko", "at": "2026-03-02T18:10", "text": "Who is bringing the card for Pedro's farewell?"},
  {"from": "Jonas", "at": "2026-03-02T18:12", "text": "I'll buy the card and get everyone to sign it on Wednesday."}
], "max_words": 40}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "full tier: model weights (cargo xtask test)"]
async fn the_runtime_binary_summarises_a_real_chat_through_ohttp() {
    let rt = start(&models(), SMOLLM2_135M.name);
    let key = attested_key(&rt.socket).await;

    let (status, inner) = call(&rt.socket, &key, "/v1/summarize", JSON, CHAT.as_bytes()).await;
    assert_eq!(status, 200);
    let (inner_status, body) = inner.expect("inner response");
    assert_eq!(inner_status, 200, "{}", String::from_utf8_lossy(&body));
    let answer: serde_json::Value = serde_json::from_slice(&body).expect("json answer");
    assert_eq!(answer["model"], SMOLLM2_135M.name);
    assert_eq!(answer["truncated"], false);
    assert_eq!(answer["messages_used"], 5);
    assert!(
        answer["summary"]
            .as_str()
            .is_some_and(|s| !s.trim().is_empty()),
        "{answer}"
    );
    assert!(
        answer["tokens_in"].as_u64().is_some_and(|n| n > 100),
        "{answer}"
    );
    assert!(
        answer["tokens_out"].as_u64().is_some_and(|n| n > 0),
        "{answer}"
    );

    // The same chat again: the same summary (greedy decoding).
    let (_, again) = call(&rt.socket, &key, "/v1/summarize", JSON, CHAT.as_bytes()).await;
    let again: serde_json::Value =
        serde_json::from_slice(&again.expect("inner").1).expect("json answer");
    assert_eq!(again["summary"], answer["summary"]);

    // Help me write.
    let draft = br#"{"text": "cant make it tmrw, sorry. can we do monday", "tone": "formal"}"#;
    let (_, inner) = call(&rt.socket, &key, "/v1/rewrite", JSON, draft).await;
    let (s, body) = inner.expect("inner");
    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&body));
    let rewritten: serde_json::Value = serde_json::from_slice(&body).expect("json");
    assert!(rewritten["text"].as_str().is_some_and(|t| !t.is_empty()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "full tier: model weights (cargo xtask test)"]
async fn bad_requests_get_named_client_errors_inside_the_encryption() {
    // The extractive summariser alone: quick to load, same request handling.
    let rt = start(&models(), MINILM_L6_V2.name);
    let key = attested_key(&rt.socket).await;
    let long_text = format!(
        r#"{{"messages":[{{"from":"a","at":"b","text":"{}"}}]}}"#,
        "x".repeat(5000)
    );
    let cases: &[(&str, &str, &[u8], u16)] = &[
        ("/v1/summarize", JSON, b"{\"messages\": [", 400),
        (
            "/v1/summarize",
            JSON,
            br#"{"messages": [], "max_words": 50}"#,
            422,
        ),
        (
            "/v1/summarize",
            JSON,
            br#"{"messages": [{"from":"a","at":"b","text":"hi"}], "max_words": 1}"#,
            422,
        ),
        ("/v1/summarize", JSON, br#"{"msgs": []}"#, 400),
        ("/v1/summarize", JSON, long_text.as_bytes(), 413),
        ("/v1/summarize", "text/plain", CHAT.as_bytes(), 415),
        (
            "/v1/rewrite",
            JSON,
            br#"{"text": "hello", "tone": "pirate"}"#,
            400,
        ),
        // No language model in this configuration: rewriting is not offered.
        (
            "/v1/rewrite",
            JSON,
            br#"{"text": "hello", "tone": "formal"}"#,
            501,
        ),
    ];
    for (path, ct, body, want) in cases {
        let (status, inner) = call(&rt.socket, &key, path, ct, body).await;
        assert_eq!(status, 200, "outer status for {path} {ct}");
        let (got, problem) = inner.expect("inner response");
        assert_eq!(
            got,
            *want,
            "{path} {ct}: {}",
            String::from_utf8_lossy(&problem)
        );
    }
    // And the extractive summary itself.
    let (_, inner) = call(&rt.socket, &key, "/v1/summarize", JSON, CHAT.as_bytes()).await;
    let (s, body) = inner.expect("inner");
    assert_eq!(s, 200);
    let answer: serde_json::Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(
        (answer["model"].as_str(), answer["stop"].as_str()),
        (Some(MINILM_L6_V2.name), Some("extractive"))
    );
}

#[test]
fn an_unknown_or_absent_model_stops_the_runtime_with_its_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (model, expect) in [
        ("gpt-5", "not a known model"),
        (SMOLLM2_135M.name, "is not in this image"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_cloister-runtime"))
            .arg("--unix")
            .arg(dir.path().join("rt.sock"))
            .arg("--emulated-sp")
            .arg(dir.path().join("sp.sock"))
            .arg("--cmdline")
            .arg(format!("cloister.attest=emulated cloister.model={model}"))
            .arg("--models")
            .arg(dir.path())
            .output()
            .expect("run");
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(expect) && err.contains(model), "{err}");
    }
}
