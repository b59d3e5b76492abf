//! The `cloister` binary's own edges, without any server: bad input is a named error before
//! anything is sent, an unreachable relay is a connect error, the emulated anchor is announced.
//! (The whole way in, with servers, is `tests/tests/loopback.rs`; this test also makes Cargo
//! build the binary that test drives.)

use std::process::Command;

fn cloister() -> Command {
    Command::new(env!("CARGO_BIN_EXE_cloister"))
}

/// A loopback port nothing listens on.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

#[test]
fn an_unreachable_relay_is_a_connect_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = cloister()
        .arg("--relay")
        .arg(format!("http://127.0.0.1:{}", closed_port()))
        .arg("--state")
        .arg(dir.path())
        .args(["--deadline", "10", "nodes"])
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("error:"), "{err}");
    assert!(err.to_lowercase().contains("connect"), "{err}");
}

#[test]
fn a_malformed_chat_is_refused_by_line_before_anything_is_sent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let chat = dir.path().join("chat.json");
    std::fs::write(&chat, "{\"messages\": [").expect("write");
    let ark = dir.path().join("ark.der");
    std::fs::write(&ark, b"not a certificate").expect("write");
    let out = cloister()
        .arg("--relay")
        .arg(format!("http://127.0.0.1:{}", closed_port()))
        .arg("--state")
        .arg(dir.path())
        .args(["summarize", "--file"])
        .arg(&chat)
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 1"), "names where: {err}");
    assert!(
        !err.to_lowercase().contains("connect"),
        "nothing was sent: {err}"
    );

    // An emulated root that is no certificate: refused, and the warning is still printed first.
    let out = cloister()
        .arg("--relay")
        .arg(format!("http://127.0.0.1:{}", closed_port()))
        .arg("--insecure-emulated")
        .arg(&ark)
        .arg("nodes")
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("WARNING"), "{err}");
}

#[test]
fn a_trusted_log_without_a_witness_is_refused_unless_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = dir.path().join("log.pub");
    std::fs::write(&key, "log.test+01234567+AQID\n").expect("write");
    let run = |extra: &[&str]| {
        let out = cloister()
            .arg("--relay")
            .arg(format!("http://127.0.0.1:{}", closed_port()))
            .arg("--state")
            .arg(dir.path())
            .arg("--log-key")
            .arg(&key)
            .args(extra)
            .args(["--deadline", "10", "nodes"])
            .output()
            .expect("run");
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    // No witness, nothing named: refused before anything is sent.
    let err = run(&[]);
    assert!(err.contains("--insecure-no-witness"), "{err}");
    assert!(!err.to_lowercase().contains("connect"), "{err}");
    // Named: announced, and the run goes on (to the closed relay).
    let err = run(&["--insecure-no-witness"]);
    assert!(err.contains("INSECURE"), "{err}");
    assert!(!err.contains("needs its witnesses"), "{err}");
}
