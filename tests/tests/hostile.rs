//! A hostile operator, on loopback (issue 24): the real gateway, issuer, relay and runtimes,
//! the operator changing one behaviour at a time, and the `cloister` CLI as the device. Each
//! attack must end in the device's named refusal before anything is sent, and the operator's
//! logs must show that nothing was: no token issued, no request forwarded, none opened.

use std::path::Path;
use std::process::Output;

use cloister_tests::stack::{NodeSpec, Stack};

const ECHO: &str = "cloister.attest=emulated";

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn echo(mut cmd: std::process::Command, file: &Path) -> Output {
    cmd.args(["echo", "--file"]).arg(file);
    cmd.output().expect("run cloister")
}

fn spec(id: &str, logged: bool) -> NodeSpec<'_> {
    NodeSpec {
        id,
        cmdline: ECHO,
        models: None,
        logged,
    }
}

/// Requests the runtimes opened, tokens the issuer issued, requests the gateway forwarded.
fn traffic(stack: &Stack) -> (usize, usize, usize) {
    let opened = stack.nodes.iter().map(|n| n.answered("ohttp", 200)).sum();
    let forwarded = stack.gateway.logs().matches("forward").count();
    (opened, issued(stack), forwarded)
}

/// Tokens the issuer issued, from its request log.
fn issued(stack: &Stack) -> usize {
    stack
        .issuer
        .logs()
        .matches("route=\"token-request\"")
        .count()
}

/// The stderr of a run that must have failed.
fn refused(out: &Output) -> String {
    assert!(!out.status.success(), "succeeded: {}", text(&out.stdout));
    text(&out.stderr)
}

/// The gateway restarted listing `nodes` (`(id, index of the stack's node)`).
fn relist(stack: &mut Stack, nodes: &[(&str, usize)]) {
    let addresses: Vec<(String, String)> = nodes
        .iter()
        .map(|(id, i)| ((*id).to_owned(), stack.nodes[*i].url.clone()))
        .collect();
    stack.gateway_setup.nodes = addresses;
    stack.restart_gateway();
}

/// Attack 5, steering: a gateway lists one node twice, one machine only, or hides the node it
/// wants among nodes that do not verify. Nodes run on distinct emulated chips (machines 0, 1,
/// 2); the device's policy is its default (two machines) unless the test says otherwise.
#[test]
fn a_directory_that_steers_the_device_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut stack = Stack::start(
        dir.path(),
        &[spec("a", true), spec("b", true), spec("unlogged", false)],
        &[],
        20,
    );
    let file = dir.path().join("hello.txt");
    std::fs::write(&file, "hello").expect("file");

    // A mixed directory: two verified nodes and one the device cannot verify.
    let out = echo(stack.device_defaults(), &file);
    let err = refused(&out);
    assert!(
        err.contains("mixes 2 verified nodes") && err.contains("unlogged"),
        "{err}"
    );
    assert_eq!(traffic(&stack), (0, 0, 0), "sent despite the refusal");

    // One node listed twice under two ids (the same attested key), even under a policy of one
    // machine.
    relist(&mut stack, &[("a", 0), ("b", 1), ("a-again", 0)]);
    let out = echo(stack.device(), &file);
    let err = refused(&out);
    assert!(
        err.contains("a and a-again are one node") || err.contains("listed twice"),
        "{err}"
    );
    assert_eq!(traffic(&stack), (0, 0, 0));

    // One machine only: refused under the default policy.
    relist(&mut stack, &[("a", 0)]);
    let out = echo(stack.device_defaults(), &file);
    let err = refused(&out);
    assert!(
        err.contains("1 distinct machine(s)") && err.contains("at least 2"),
        "{err}"
    );
    assert_eq!(traffic(&stack), (0, 0, 0));

    // The same directory, one machine asked for by name: answered (the refusals above were
    // the policy's, not a broken stack).
    let out = echo(stack.device(), &file);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "hello");
    // And the operator's logs show that one (the counts above could have seen it).
    assert_eq!(traffic(&stack), (1, 1, 1));

    // Two machines pass the default, and `nodes` names each node's machine.
    relist(&mut stack, &[("a", 0), ("b", 1)]);
    let out = echo(stack.device_defaults(), &file);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let mut nodes = stack.device_defaults();
    nodes.args(["nodes", "--json"]);
    let out = nodes.output().expect("run cloister");
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let machines: std::collections::BTreeSet<&str> = listed
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|n| n["machine"].as_str())
        .collect();
    assert_eq!(machines.len(), 2, "{listed}");
    assert!(machines.iter().all(|m| m.starts_with("snp-chip:")));
}

/// The inner routes the gateway logged after byte `from` of its log, in order.
fn routes_since(stack: &Stack, from: usize) -> Vec<String> {
    let logs = stack.gateway.logs();
    logs.get(from..)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split("route=").nth(1))
        .filter_map(|r| r.split_whitespace().next())
        .map(|r| r.trim_matches('"').to_owned())
        .collect()
}

/// Attack 6, tagging a returning device by the tree size it saw: a device that saw the log at
/// one size and a device that never saw it send the gateway the same requests, and both move
/// to the newest checkpoint (the older one checked against the newest tree's tiles).
#[test]
fn a_returning_device_asks_the_gateway_what_a_new_one_asks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut stack = Stack::start(dir.path(), &[spec("a", true)], &[], 20);
    let file = dir.path().join("hello.txt");
    std::fs::write(&file, "hello").expect("file");
    let returning = dir.path().join("returning-state");
    let with_state = |stack: &Stack, state: &Path| {
        let mut c = stack.device_at(state);
        c.args(["--min-machines", "1"]);
        c
    };
    // The returning device sees the log at size 1.
    let out = echo(with_state(&stack, &returning), &file);
    assert!(out.status.success(), "{}", text(&out.stderr));

    // The operator publishes again (the log grows to 2) and attaches the new proof.
    let (proof, _) = cloister_guest_image::release::witnessed_release(
        &dir.path().join("log"),
        &cloister_tests::stack::dev_release(&cloister_tests::stack::LOGGED_MANIFEST),
    )
    .expect("second release");
    std::fs::write(&stack.gateway_setup.log_proof, proof.to_json()).expect("proof");
    stack.restart_gateway();

    let mut seen = Vec::new();
    for state in [returning.clone(), dir.path().join("new-state")] {
        let from = stack.gateway.logs().len();
        let out = echo(with_state(&stack, &state), &file);
        assert!(out.status.success(), "{}", text(&out.stderr));
        seen.push(routes_since(&stack, from));
        let recorded = std::fs::read_dir(&state).expect("state").count();
        assert!(recorded > 0, "the device recorded the checkpoint it saw");
    }
    assert_eq!(seen[0], seen[1], "the gateway can tell the devices apart");
    assert!(seen[0].iter().any(|r| r == "log-tile"), "{:?}", seen[0]);
    assert!(!seen[0].iter().any(|r| r.contains("consistency")));
}

/// Attack 1, issuer keys that link requests to accounts: an issuer that serves this account a
/// key the log does not hold, and one that logs a key per account. The device refuses both
/// before it sends the issuer a blinded request, and the gateway forwards nothing.
#[test]
fn an_issuer_key_for_one_account_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut stack = Stack::start(dir.path(), &[spec("a", true)], &[], 20);
    let file = dir.path().join("hello.txt");
    std::fs::write(&file, "hello").expect("file");
    // Honest first: the logged key works.
    let out = echo(stack.device(), &file);
    assert!(out.status.success(), "{}", text(&out.stderr));

    // The issuer restarted with a key of its own making, not in the log.
    stack.issuer.kill();
    let fresh = dir.path().join("unlogged-issuer.pem");
    let made = std::process::Command::new(cloister_tests::stack::bin("cloister-issuer"))
        .arg("init")
        .arg("--key")
        .arg(&fresh)
        .output()
        .expect("issuer init");
    assert!(made.status.success());
    let mut serve = std::process::Command::new(cloister_tests::stack::bin("cloister-issuer"));
    serve
        .arg("serve")
        .arg("--key")
        .arg(&fresh)
        .arg("--db")
        .arg(dir.path().join("issuer.redb"))
        .args(["--listen", "127.0.0.1:0"]);
    stack.issuer = cloister_tests::stack::Service::spawn(serve, dir.path().join("issuer-2.log"));
    let out = echo(stack.device(), &file);
    let err = refused(&out);
    assert!(
        err.contains("not one of its current keys in the transparency log"),
        "{err}"
    );
    assert_eq!(
        issued(&stack),
        0,
        "a blinded request reached the hostile issuer"
    );

    // The issuer logs a key per account: three open at once.
    let log_dir = dir.path().join("log");
    let accounts: Vec<Vec<u8>> = ["account-7", "account-8"]
        .iter()
        .map(|a| {
            let mut r = cloister_tests::stack::issuer_key_record(&format!("{a}-key"));
            r.token_key = r.token_key.replace('-', "_");
            r.to_bytes().expect("record")
        })
        .collect();
    let witnessed =
        cloister_guest_image::release::witnessed_append(&log_dir, &accounts).expect("published");
    let proof = witnessed.proof(2).expect("the release's proof");
    std::fs::write(&stack.gateway_setup.log_proof, proof.to_json()).expect("proof");
    stack.restart_gateway();
    let out = echo(stack.device(), &file);
    let err = refused(&out);
    assert!(err.contains("3 keys open at once"), "{err}");
    assert!(
        !stack.gateway.logs().contains("forward"),
        "{}",
        stack.gateway.logs()
    );
}

/// Attack 4, a substituted gateway key: the relay's path (here the gateway itself, restarted
/// with a key of its own making) serves a key configuration the log does not hold. The device
/// fetches only public, self-verifying data under it, then refuses before a token is issued or
/// anything is forwarded.
#[test]
fn a_gateway_key_not_in_the_log_gets_no_token_and_no_request() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut stack = Stack::start(dir.path(), &[spec("a", true)], &[], 20);
    let file = dir.path().join("hello.txt");
    std::fs::write(&file, "hello").expect("file");
    let out = echo(stack.device(), &file);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let before = issued(&stack);
    assert_eq!(before, 1);

    // Another secret, another key: not logged.
    std::fs::write(dir.path().join("gateway-seed"), hex::encode([0x66u8; 32])).expect("seed");
    stack.restart_gateway();
    let out = echo(stack.device(), &file);
    let err = refused(&out);
    assert!(
        err.contains("gateway's key configuration is not one of its current keys"),
        "{err}"
    );
    assert_eq!(
        issued(&stack),
        before,
        "a token was issued for a substituted key"
    );
    assert!(!stack.gateway.logs().contains("forward"));
}

/// Attack 3, issuance time: with tokens filled ahead (at a time of the device's choosing), a
/// request spends a stored token and the issuer sees nothing at the time of the redemption;
/// the store on disk is sealed, and gone with its key.
#[test]
fn a_request_spends_a_token_fetched_ahead_and_the_issuer_sees_nothing_then() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stack = Stack::start(dir.path(), &[spec("a", true)], &[], 20);
    let file = dir.path().join("hello.txt");
    std::fs::write(&file, "hello").expect("file");
    let key = dir.path().join("runtime/cloister/token-store.key");
    let device = |args: &[&str]| {
        let mut c = stack.device();
        c.arg("--token-key-file").arg(&key).args(args);
        c.output().expect("run cloister")
    };

    let out = device(&["tokens", "fill", "--count", "3"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(issued(&stack), 3);
    assert_eq!(text(&device(&["tokens", "count"]).stdout).trim(), "3");

    let out = device(&["echo", "--file", file.to_str().expect("utf-8")]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "hello");
    assert_eq!(issued(&stack), 3, "an issuance right before the redemption");
    assert_eq!(text(&device(&["tokens", "count"]).stdout).trim(), "2");

    let sealed = std::fs::read(stack.state.join("tokens.sealed")).expect("sealed store");
    assert!(!sealed.windows(12).any(|w| w == b"PrivateToken"));
    // The key gone (a reboot clears the runtime directory): the tokens are dropped unread.
    std::fs::remove_file(&key).expect("rm key");
    assert_eq!(text(&device(&["tokens", "count"]).stdout).trim(), "0");
}

/// Attack 4, the path to the issuer and the relay: both serve HTTPS themselves, the device
/// trusts only the pinned root, and a recorder on the issuer's path (the network) sees no
/// bearer token; a server whose certificate does not chain to the pinned root is refused by
/// name before anything is sent.
#[test]
fn the_bearer_token_travels_under_tls_and_an_unknown_certificate_is_refused() {
    use cloister_tests::stack::{Service, bin};
    let dir = tempfile::tempdir().expect("tempdir");
    let mut stack = Stack::start(dir.path(), &[spec("a", true)], &[], 20);
    let pki = cloister_tests::tls::test_pki(dir.path());
    // The issuer again, on the same key and accounts, now over TLS; and a relay over TLS.
    stack.issuer.kill();
    let mut issuer = std::process::Command::new(bin("cloister-issuer"));
    issuer
        .arg("serve")
        .arg("--key")
        .arg(dir.path().join("issuer.pem"))
        .arg("--db")
        .arg(dir.path().join("issuer.redb"))
        .args(["--listen", "127.0.0.1:0", "--tls-cert"])
        .arg(&pki.cert)
        .arg("--tls-key")
        .arg(&pki.key);
    let issuer = Service::spawn(issuer, dir.path().join("issuer-tls.log"));
    assert!(issuer.url.starts_with("https://"), "{}", issuer.url);
    let mut relay = std::process::Command::new(bin("cloister-relay"));
    relay
        .args(["--listen", "127.0.0.1:0", "--gateway"])
        .arg(format!("{}/gateway", stack.gateway.url))
        .arg("--tls-cert")
        .arg(&pki.cert)
        .arg("--tls-key")
        .arg(&pki.key);
    let relay = Service::spawn(relay, dir.path().join("relay-tls.log"));
    assert!(relay.url.starts_with("https://"), "{}", relay.url);
    let (recorded_at, seen) = cloister_tests::tls::recorder(issuer.authority());
    let file = dir.path().join("hello.txt");
    std::fs::write(&file, "hello").expect("file");

    let run = |root: &Path| {
        let mut c = stack.device_via(
            &dir.path().join("tls-state"),
            &relay.url,
            &format!("https://{recorded_at}"),
        );
        c.args(["--min-machines", "1"]).arg("--tls-root").arg(root);
        echo(c, &file)
    };
    let out = run(&pki.ca);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "hello");
    let sent = seen.lock().expect("lock").clone();
    let bearer = std::fs::read_to_string(&stack.account).expect("account token");
    assert!(sent.len() > 100, "the recorder saw the exchange");
    assert_eq!(sent[0], 0x16, "a TLS handshake record first");
    assert!(
        !sent
            .windows(bearer.trim().len())
            .any(|w| w == bearer.trim().as_bytes()),
        "the bearer token crossed the network in clear"
    );

    // Another root: refused by name, nothing sent.
    let other_dir = dir.path().join("other");
    std::fs::create_dir_all(&other_dir).expect("dir");
    let other = cloister_tests::tls::test_pki(&other_dir);
    let out = run(&other.ca);
    let err = refused(&out);
    assert!(err.contains("TLS with 127.0.0.1"), "{err}");
}
