//! The whole way in on loopback, without QEMU: development-mode runtimes (emulated attestation)
//! behind `cloister-gateway`, `cloister-relay` in front of it, `cloister-issuer` for tokens, a
//! witnessed transparency log, and the `cloister` CLI as the device. The answers come back and
//! are right; the operator's logs and stores hold nothing that names the device or its request;
//! a node that does not verify gets nothing; a node that dies mid-request is a named error.

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use cloister_guest_image::model::{MINILM_L6_V2, SMOLLM2_135M, require};
use cloister_tests::stack::{LOGGED_MANIFEST, NodeSpec, Stack};
use cloister_tests::{core_dumps_off, files_containing, marker, stand_in};

const ECHO: &str = "cloister.attest=emulated";

fn models() -> std::path::PathBuf {
    let cache = cloister_guest_image::cache_root();
    require(&cache, &SMOLLM2_135M).expect("SmolLM2 weights (run `cargo xtask setup`)");
    require(&cache, &MINILM_L6_V2).expect("MiniLM weights");
    cache.join("models")
}

fn run(mut cmd: std::process::Command, stdin: Option<&Path>) -> Output {
    if let Some(f) = stdin {
        cmd.stdin(std::fs::File::open(f).expect("stdin file"));
    }
    cmd.output().expect("run cloister")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

const CHAT: &str = "\
Maya: Can we move the team dinner to Friday? Thursday I have the dentist.
Jonas: Friday works. Same place, the Lebanese restaurant on Elm Street?
Maya: Yes. I'll book a table for six at 7.30pm.
Aiko: Who is bringing the card for Pedro's farewell?
Jonas: I'll buy the card and get everyone to sign it on Wednesday.
";

/// Starts two logged nodes running `cmdline` (with `models` when given) behind the whole way in,
/// and checks that the device lists and verifies both through the relay.
fn two_verified_nodes(dir: &Path, cmdline: &str, models: Option<&Path>) -> Stack {
    let spec = |id| NodeSpec {
        id,
        cmdline,
        models,
        logged: true,
    };
    let stack = Stack::start(dir, &[spec("node-a"), spec("node-b")], &[], 100);
    let out = run(
        {
            let mut c = stack.device();
            c.args(["nodes", "--json"]);
            c
        },
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("WARNING"),
        "the emulated anchor is announced on every run"
    );
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let listed = listed.as_array().cloned().unwrap_or_default();
    assert_eq!(listed.len(), 2, "{listed:?}");
    for n in &listed {
        assert_eq!(n["passed"], true, "{n}");
        assert_eq!(
            n["measurement"],
            hex::encode(cloister_tests::stack::MEASUREMENT)
        );
    }
    let seen = std::fs::read_to_string(stack.state.join("seen-checkpoints.json"))
        .expect("the seen checkpoint is kept");
    // The log holds the issuer's key, the gateway's and the release.
    assert!(
        seen.contains("\"size\":3") || seen.contains("\"size\": 3"),
        "{seen}"
    );
    stack
}

/// Echoes a secret marker 20 times: it comes back intact, and the choice reaches both nodes
/// (each is missed with probability 2^-20). Returns the marker and its input file.
fn echo_a_marker_twenty_times(stack: &Stack, dir: &Path) -> (String, std::path::PathBuf) {
    let secret = marker();
    let file = dir.join("marker.txt");
    std::fs::write(&file, &secret).expect("marker");
    for _ in 0..20 {
        let mut c = stack.device();
        c.args(["echo", "--file"]).arg(&file);
        let out = run(c, None);
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert_eq!(text(&out.stdout).trim_end(), secret);
        assert!(!text(&out.stderr).contains(&secret), "the CLI's stderr");
    }
    for n in &stack.nodes {
        assert!(
            n.answered("ohttp", 200) >= 1,
            "every node got requests: {}",
            n.logs()
        );
    }
    (secret, file)
}

/// Non-targetability: the operator's logs and stores hold no content (`secrets`), no token and
/// no address; exactly `spends` tokens were redeemed and none of their nonces is in the
/// issuer's records; no file a process wrote holds the marker (only its own `input`) or the
/// account token; no process that held them can dump core.
fn the_operator_keeps_nothing(
    mut stack: Stack,
    dir: &Path,
    secrets: &[&str],
    input: &Path,
    spends: usize,
) {
    let account = std::fs::read_to_string(&stack.account).expect("account");
    let logs = stack.all_logs();
    for secret in secrets {
        assert!(!logs.contains(secret), "the request's content is in a log");
    }
    assert!(
        !logs.contains(account.trim()),
        "the account token is in a log"
    );
    for svc in [&stack.gateway, &stack.relay, &stack.issuer] {
        assert!(
            !svc.logs().contains("127.0.0.1"),
            "an address is in a log: {}",
            svc.logs()
        );
    }
    for (name, pid) in stack.processes() {
        assert!(core_dumps_off(pid), "{name} can write a core dump");
    }
    stack.gateway.kill();
    stack.issuer.kill();
    let spent = dir.join("spent.redb");
    let nonces = cloister_gateway::spent::redb_nonces(&spent).expect("spent store");
    assert_eq!(nonces.len(), spends, "one token spent per request");
    let issuer_db = std::fs::read(dir.join("issuer.redb")).expect("issuer db");
    let gateway_db = std::fs::read(&spent).expect("spent db");
    for n in &nonces {
        assert!(
            !issuer_db.windows(32).any(|w| w == n),
            "a redeemed nonce is in the issuer's records"
        );
    }
    let marker = secrets[0];
    assert_eq!(
        files_containing(dir, marker.as_bytes()),
        [input.to_owned()],
        "the marker reached a file"
    );
    assert_eq!(
        files_containing(dir, account.trim().as_bytes()),
        std::slice::from_ref(&stack.account),
        "the account token reached a file"
    );
    for db in [&issuer_db, &gateway_db] {
        for secret in secrets {
            assert!(!db.windows(secret.len()).any(|w| w == secret.as_bytes()));
        }
        assert!(!db.windows(9).any(|w| w == b"127.0.0.1"));
        assert!(!db.windows(64).any(|w| w == account.trim().as_bytes()));
    }
}

#[test]
fn echoes_come_back_through_relay_gateway_and_a_verified_node_and_the_operator_keeps_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stack = two_verified_nodes(dir.path(), ECHO, None);
    let (secret, file) = echo_a_marker_twenty_times(&stack, dir.path());
    the_operator_keeps_nothing(stack, dir.path(), &[&secret], &file, 20);
}

#[test]
#[ignore = "full tier: model weights (cargo xtask test)"]
fn summaries_and_rewrites_come_back_through_relay_gateway_and_a_verified_node() {
    let dir = tempfile::tempdir().expect("tempdir");
    let models = models();
    let cmdline = format!("{ECHO} cloister.model={}", SMOLLM2_135M.name);
    let stack = two_verified_nodes(dir.path(), &cmdline, Some(&models));

    // A real summary of a real chat (text format, from a file).
    let chat = dir.path().join("chat.txt");
    std::fs::write(&chat, CHAT).expect("chat");
    let mut c = stack.device();
    c.args(["summarize", "--json", "--file"]).arg(&chat);
    let out = run(c, None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json answer");
    assert_eq!(answer["model"], SMOLLM2_135M.name, "{answer}");
    assert_eq!(answer["messages_used"], 5, "{answer}");
    assert!(
        answer["summary"]
            .as_str()
            .is_some_and(|s| !s.trim().is_empty())
    );

    // Help me write, from stdin.
    let draft = dir.path().join("draft.txt");
    std::fs::write(&draft, "cant make it tmrw, sorry. can we do monday").expect("draft");
    let mut c = stack.device();
    c.args(["rewrite", "--tone", "formal"]);
    let out = run(c, Some(&draft));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!text(&out.stdout).trim().is_empty());

    let (secret, file) = echo_a_marker_twenty_times(&stack, dir.path());
    the_operator_keeps_nothing(
        stack,
        dir.path(),
        &[&secret, "Lebanese restaurant on Elm Street", "tmrw, sorry"],
        &file,
        22,
    );
}

#[test]
fn no_request_reaches_a_node_that_is_not_logged_or_whose_evidence_is_stale() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stack = Stack::start(
        dir.path(),
        &[NodeSpec {
            id: "unlogged",
            cmdline: ECHO,
            models: None,
            logged: false,
        }],
        &[],
        10,
    );
    let file = dir.path().join("hello.txt");
    std::fs::write(&file, "hello").expect("file");
    let mut c = stack.device();
    c.args(["echo", "--file"]).arg(&file);
    let out = run(c, None);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    eprintln!("unlogged refusal: {err}");
    assert!(err.contains("unlogged"), "names the node: {err}");
    assert!(
        err.to_lowercase().contains("log"),
        "names the log check: {err}"
    );
    assert!(
        !stack.gateway.logs().contains("forward"),
        "the gateway forwarded something: {}",
        stack.gateway.logs()
    );
    assert!(
        !stack.nodes[0].logs().contains("ohttp"),
        "the node got a request"
    );

    // A node whose evidence expired an hour ago, its release logged: refused on expiry.
    let dir2 = tempfile::tempdir().expect("tempdir");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let _guard = rt.enter();
    let signer = cloister_insecure_emulated_sp::EmulatedSnpSigner::from_seed(&[5u8; 32])
        .expect("the stack's processor");
    let stale = stand_in::stale_node(dir2.path(), &signer, LOGGED_MANIFEST);
    let address = format!("unix:{}", stale.socket.display());
    let stack = Stack::start(dir2.path(), &[], &[("stale", address)], 10);
    let mut c = stack.device();
    c.args(["echo", "--file"]).arg(&file);
    let out = run(c, None);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    eprintln!("stale refusal: {err}");
    assert!(err.contains("stale"), "names the node: {err}");
    assert!(
        err.to_lowercase().contains("expir"),
        "names the expiry: {err}"
    );
    assert_eq!(stale.hits.load(std::sync::atomic::Ordering::SeqCst), 0);
}

#[test]
fn a_node_killed_mid_request_is_a_named_error_within_the_deadline() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut stack = Stack::start(
        dir.path(),
        &[NodeSpec {
            id: "doomed",
            cmdline: ECHO,
            models: None,
            logged: true,
        }],
        &[],
        10,
    );
    // Frozen, the node's socket still accepts (the kernel queues the connection), so the
    // gateway's request is in flight when the node is killed.
    let pid = stack.nodes[0].pid().to_string();
    let stopped = std::process::Command::new("kill")
        .args(["-STOP", &pid])
        .status()
        .expect("kill -STOP");
    assert!(stopped.success());
    let file = dir.path().join("hello.txt");
    std::fs::write(&file, "hello").expect("file");
    let mut c = stack.device();
    c.args(["echo", "--file"]).arg(&file);
    let started = Instant::now();
    let child = c
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("cloister");
    std::thread::sleep(Duration::from_secs(2));
    stack.nodes[0].kill();
    let out = child.wait_with_output().expect("cloister exits");
    let elapsed = started.elapsed();
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("node-failed") || err.contains("node-unreachable"),
        "a named error: {err}"
    );
    eprintln!("killed node: {err} after {elapsed:?}");
    assert!(elapsed < Duration::from_secs(60), "took {elapsed:?}");
    // The gateway is not wedged: it still answers the directory.
    let mut c = stack.device();
    c.arg("nodes");
    let out = run(c, None);
    assert!(text(&out.stdout).contains("doomed") || text(&out.stderr).contains("doomed"));
}
