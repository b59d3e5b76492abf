//! The log and a witness as the binaries run them, on loopback: records appended over HTTP
//! (concurrently, batched), the checkpoint cosigned through C2SP tlog-witness, and a device's
//! check of a bundle fetched from the server.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use cloister_transparency::{LogProof, Quorum, SeenCheckpoint, TrustedLog, VerifyError};
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::TokioIo;

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn run(bin: &str, args: &[&str]) -> String {
    let out = Command::new(bin)
        .args(args)
        .output()
        .expect("the binary runs");
    assert!(
        out.status.success(),
        "{bin} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

/// One HTTP/1.1 request; returns the status and body.
async fn http(
    port: u16,
    method: &str,
    path: &str,
    auth: Option<&str>,
    body: Vec<u8>,
) -> (u16, Vec<u8>) {
    for _ in 0..100 {
        if let Ok(stream) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
            let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .expect("handshake");
            tokio::spawn(conn);
            let mut req = hyper::Request::builder()
                .method(method)
                .uri(path)
                .header("host", "localhost");
            if let Some(a) = auth {
                req = req.header("authorization", format!("Bearer {a}"));
            }
            let res = send
                .send_request(req.body(Full::new(Bytes::from(body))).expect("request"))
                .await
                .expect("response");
            let status = res.status().as_u16();
            let body = res
                .into_body()
                .collect()
                .await
                .expect("body")
                .to_bytes()
                .to_vec();
            return (status, body);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("nothing listens on {port}");
}

fn record(n: u64) -> Vec<u8> {
    let h = hex::encode([n as u8; 32]);
    format!(
        r#"{{"schema":"cloister-release/v1","measurements":[{{"platform":"sev-snp","vcpus":1,"vcpu_type":"EPYC-v4","digest":"{}"}}],"manifest_sha256":"{h}","kernel_sha256":"{h}","initramfs_sha256":"{h}","firmware_sha256":"{h}","cmdline":"c","weights_disk_sha256":null,"source_revision":"r{n}","source_date_epoch":{n}}}"#,
        hex::encode([n as u8; 48])
    )
    .into_bytes()
}

fn with_cosignature(checkpoint: &[u8], line: &[u8]) -> Vec<u8> {
    let mut note = checkpoint.to_vec();
    note.extend_from_slice(line);
    note
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_served_log_and_witness_give_a_device_what_it_checks() {
    let dir = tempfile::tempdir().expect("test value");
    let d = |p: &str| dir.path().join(p).display().to_string();
    let log_bin = env!("CARGO_BIN_EXE_cloister-log");
    let witness_bin = env!("CARGO_BIN_EXE_cloister-witness");
    let log_key = run(
        log_bin,
        &[
            "--log",
            &d("log"),
            "--key",
            &d("log.key"),
            "init",
            "log.example/releases",
        ],
    );
    let log_key = log_key.trim().to_owned();
    let witness_key = run(
        witness_bin,
        &["--key", &d("w.key"), "init", "witness.example"],
    );
    std::fs::write(dir.path().join("api"), "operator-key-0123456789\n").expect("test value");
    let (lp, wp) = (free_port(), free_port());
    let spawn = |bin: &str, args: Vec<String>| {
        Kill(
            Command::new(bin)
                .args(args)
                .stderr(Stdio::null())
                .spawn()
                .expect("spawns"),
        )
    };
    let _log = spawn(
        log_bin,
        vec![
            "--log".into(),
            d("log"),
            "--key".into(),
            d("log.key"),
            "serve".into(),
            "--listen".into(),
            format!("127.0.0.1:{lp}"),
            "--api-key-file".into(),
            d("api"),
        ],
    );
    let _w = spawn(
        witness_bin,
        vec![
            "--key".into(),
            d("w.key"),
            "serve".into(),
            "--log-key".into(),
            log_key.clone(),
            "--state".into(),
            d("w.state"),
            "--listen".into(),
            format!("127.0.0.1:{wp}"),
        ],
    );

    // Appends: refused without the key; twelve at once from concurrent clients.
    let (s, _) = http(lp, "POST", "/add", Some("wrong"), record(0)).await;
    assert_eq!(s, 401);
    let (s, _) = http(
        lp,
        "POST",
        "/add",
        Some("operator-key-0123456789"),
        b"{".to_vec(),
    )
    .await;
    assert_eq!(s, 400);
    let adds: Vec<_> = (0..12u64)
        .map(|n| {
            tokio::spawn(http(
                lp,
                "POST",
                "/add",
                Some("operator-key-0123456789"),
                record(n),
            ))
        })
        .collect();
    let mut indexes = Vec::new();
    for a in adds {
        let (s, body) = a.await.expect("test value");
        assert_eq!(s, 200, "{}", String::from_utf8_lossy(&body));
        let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
        indexes.push(v["indexes"][0].as_u64().expect("an index"));
    }
    indexes.sort();
    assert_eq!(
        indexes,
        (0..12).collect::<Vec<_>>(),
        "none lost, none twice"
    );

    // The witness cosigns the first checkpoint (old 0), then refuses a wrong old size.
    let (_, cp) = http(lp, "GET", "/checkpoint", None, vec![]).await;
    let mut req = b"old 0\n\n".to_vec();
    req.extend_from_slice(&cp);
    let (s, line) = http(wp, "POST", "/add-checkpoint", None, req.clone()).await;
    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&line));
    let (s, size) = http(wp, "POST", "/add-checkpoint", None, req).await;
    assert_eq!((s, size), (409, b"12\n".to_vec()));
    let trusted = TrustedLog::new(&log_key, &[witness_key.trim().to_owned()], Quorum::ONE)
        .expect("test value");
    let first = trusted
        .verify_checkpoint(&with_cosignature(&cp, &line))
        .expect("cosigned");
    assert_eq!(first.size, 12);

    // More records; the witness needs the consistency proof from 12.
    let (s, _) = http(
        lp,
        "POST",
        "/add",
        Some("operator-key-0123456789"),
        format!(
            "[{},{}]",
            String::from_utf8_lossy(&record(12)),
            String::from_utf8_lossy(&record(13))
        )
        .into_bytes(),
    )
    .await;
    assert_eq!(s, 200);
    let (_, cp2) = http(lp, "GET", "/checkpoint", None, vec![]).await;
    let (s, proof) = http(lp, "GET", "/consistency/12/14", None, vec![]).await;
    assert_eq!(s, 200);
    let mut req = b"old 12\n".to_vec();
    req.extend_from_slice(&proof);
    req.extend_from_slice(b"\n");
    req.extend_from_slice(&cp2);
    let (s, line2) = http(wp, "POST", "/add-checkpoint", None, req).await;
    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&line2));

    // A device: the bundle for entry 13 under the cosigned checkpoint, and consistency.
    let (s, body) = http(lp, "GET", "/bundle/13", None, vec![]).await;
    assert_eq!(s, 200);
    let mut bundle = LogProof::from_json(&body).expect("a log proof");
    assert_eq!(
        trusted.verify_proof(&bundle).map(|_| ()),
        Err(VerifyError::Witnesses { have: 0, need: 1 })
    );
    bundle.checkpoint = String::from_utf8(with_cosignature(&cp2, &line2)).expect("test value");
    let (rec, second) = trusted.verify_proof(&bundle).expect("the bundle verifies");
    assert_eq!(rec.source_revision, "r13");
    let mut seen = SeenCheckpoint {
        size: first.size,
        root: first.root,
    };
    let proof: Vec<tlog_tiles::Hash> = String::from_utf8(proof)
        .expect("test value")
        .lines()
        .map(|l| {
            use base64::Engine;
            let raw = base64::engine::general_purpose::STANDARD
                .decode(l)
                .expect("base64");
            tlog_tiles::Hash(raw.try_into().expect("32 bytes"))
        })
        .collect();
    seen.advance(&second, &proof).expect("consistent");
    assert_eq!(seen.size, 14);

    // Static files: a tile path only; nothing else of the directory.
    let (s, tile) = http(lp, "GET", "/tile/entries/000.p/14", None, vec![]).await;
    assert_eq!(s, 200);
    assert_eq!(
        cloister_transparency::storage::read_bundle(&tile)
            .expect("a bundle")
            .len(),
        14
    );
    for path in [
        "/tile/../hashes",
        "/tile/0/000.p/0",
        "/hashes",
        "/tile/entries/x",
    ] {
        let (s, _) = http(lp, "GET", path, None, vec![]).await;
        assert_eq!(s, 404, "{path}");
    }
    // The server is still up after those.
    let (s, _) = http(lp, "GET", "/healthz", None, vec![]).await;
    assert_eq!(s, 200);
}
