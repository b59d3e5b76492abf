//! The served log and witness against the C2SP specifications, request by request on the
//! wire: every `add-checkpoint` status tlog-witness defines (in its order: origin and
//! signature before sizes), the 409 body, `GET /consistency/0/N`, and the caching and
//! compression tlog-tiles asks of tiles, entry bundles and the checkpoint.

use std::io::Read as _;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::TokioIo;
use signed_note::{Note, StandardSigner};
use tlog_tiles::{Checkpoint, Hash};

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

/// What came back: status, headers, body.
struct Answer {
    status: u16,
    headers: hyper::HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

async fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Answer {
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
            for (k, v) in headers {
                req = req.header(*k, *v);
            }
            let res = send
                .send_request(
                    req.body(Full::new(Bytes::copy_from_slice(body)))
                        .expect("request"),
                )
                .await
                .expect("response");
            let status = res.status().as_u16();
            let headers = res.headers().clone();
            let body = res.into_body().collect().await.expect("body").to_bytes();
            return Answer {
                status,
                headers,
                body: body.to_vec(),
            };
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("nothing listens on {port}");
}

fn record(n: u64) -> String {
    let h = hex::encode([n as u8; 32]);
    format!(
        r#"{{"schema":"cloister-release/v1","measurements":[{{"platform":"sev-snp","vcpus":1,"vcpu_type":"EPYC-v4","digest":"{}"}}],"manifest_sha256":"{h}","kernel_sha256":"{h}","initramfs_sha256":"{h}","firmware_sha256":"{h}","cmdline":"c","weights_disk_sha256":null,"source_revision":"r{n}","source_date_epoch":{n}}}"#,
        hex::encode([n as u8; 48])
    )
}

/// A checkpoint note for `origin`, `size`, `root`, signed with `skey`.
fn signed_checkpoint(skey: &str, origin: &str, size: u64, root: Hash) -> Vec<u8> {
    let cp = Checkpoint::new(origin, size, root, "").expect("checkpoint");
    let mut note = Note::new(&cp.to_bytes(), &[]).expect("note");
    let signer = StandardSigner::new(skey).expect("signer");
    note.add_sigs(&[&signer]).expect("signed");
    note.to_bytes()
}

/// A tlog-witness `add-checkpoint` body: `old N`, proof lines, an empty line, the checkpoint.
fn add_checkpoint(old: &str, proof: &[&str], checkpoint: &[u8]) -> Vec<u8> {
    let mut b = format!("old {old}\n").into_bytes();
    for p in proof {
        b.extend_from_slice(p.as_bytes());
        b.push(b'\n');
    }
    b.push(b'\n');
    b.extend_from_slice(checkpoint);
    b
}

struct Servers {
    _dir: tempfile::TempDir,
    _log: Kill,
    _witness: Kill,
    log: u16,
    witness: u16,
    skey: String,
}

const ORIGIN: &str = "log.example/releases";
const API_KEY: &str = "operator-key-0123456789";

async fn servers() -> Servers {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = |p: &str| dir.path().join(p).display().to_string();
    let log_bin = env!("CARGO_BIN_EXE_cloister-log");
    let witness_bin = env!("CARGO_BIN_EXE_cloister-witness");
    let log_key = run(
        log_bin,
        &["--log", &d("log"), "--key", &d("log.key"), "init", ORIGIN],
    );
    run(
        witness_bin,
        &["--key", &d("w.key"), "init", "witness.example"],
    );
    std::fs::write(dir.path().join("api"), format!("{API_KEY}\n")).expect("api key");
    let (log, witness) = (free_port(), free_port());
    let spawn = |bin: &str, args: Vec<String>| {
        Kill(
            Command::new(bin)
                .args(args)
                .stderr(Stdio::null())
                .spawn()
                .expect("spawns"),
        )
    };
    let log_child = spawn(
        log_bin,
        [
            "--log",
            &d("log"),
            "--key",
            &d("log.key"),
            "serve",
            "--listen",
            &format!("127.0.0.1:{log}"),
            "--api-key-file",
            &d("api"),
        ]
        .map(str::to_owned)
        .to_vec(),
    );
    let witness_child = spawn(
        witness_bin,
        [
            "--key",
            &d("w.key"),
            "serve",
            "--log-key",
            log_key.trim(),
            "--state",
            &d("w.state"),
            "--listen",
            &format!("127.0.0.1:{witness}"),
        ]
        .map(str::to_owned)
        .to_vec(),
    );
    let skey = std::fs::read_to_string(dir.path().join("log.key")).expect("log key");
    Servers {
        _dir: dir,
        _log: log_child,
        _witness: witness_child,
        log,
        witness,
        skey: skey.trim().to_owned(),
    }
}

async fn append(s: &Servers, from: u64, to: u64) -> Vec<u8> {
    let records: Vec<String> = (from..to).map(record).collect();
    let body = format!("[{}]", records.join(","));
    let auth = format!("Bearer {API_KEY}");
    let a = http(
        s.log,
        "POST",
        "/add",
        &[("authorization", &auth)],
        body.as_bytes(),
    )
    .await;
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    http(s.log, "GET", "/checkpoint", &[], b"").await.body
}

fn root_of(checkpoint: &[u8]) -> (u64, Hash) {
    let note = Note::from_bytes(checkpoint).expect("note");
    let cp = Checkpoint::from_bytes(note.text()).expect("checkpoint");
    (cp.size(), *cp.hash())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_witness_answers_every_tlog_witness_status_in_the_specified_order() {
    let s = servers().await;
    let post = |body: Vec<u8>| {
        let port = s.witness;
        async move { http(port, "POST", "/add-checkpoint", &[], &body).await }
    };
    let cp8 = append(&s, 0, 8).await;
    let (size8, root8) = root_of(&cp8);
    assert_eq!(size8, 8);

    // 404: a checkpoint of another origin (properly signed by that log).
    let (other_skey, _) = signed_note::generate_key(&mut rand_core::OsRng, "other.example/log");
    let foreign = signed_checkpoint(&other_skey, "other.example/log", 8, root8);
    assert_eq!(post(add_checkpoint("0", &[], &foreign)).await.status, 404);
    // 403: this origin, but no signature by the log's key.
    let (impostor, _) = signed_note::generate_key(&mut rand_core::OsRng, ORIGIN);
    let forged = signed_checkpoint(&impostor, ORIGIN, 8, root8);
    assert_eq!(post(add_checkpoint("0", &[], &forged)).await.status, 403);
    // Signature before sizes: a forged checkpoint with a wrong old size is 403, not 409 —
    // nobody learns the witness's state without a checkpoint the log signed.
    assert_eq!(post(add_checkpoint("5", &[], &forged)).await.status, 403);
    // 400: malformed, and an old size above the checkpoint's.
    assert_eq!(post(b"old 0\n".to_vec()).await.status, 400, "no empty line");
    assert_eq!(
        post(add_checkpoint("00", &[], &cp8)).await.status,
        400,
        "leading zero"
    );
    assert_eq!(
        post(add_checkpoint("9", &[], &cp8)).await.status,
        400,
        "old > size"
    );
    let junk = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
    let too_long = vec![junk; 64];
    assert_eq!(
        post(add_checkpoint("0", &too_long, &cp8)).await.status,
        400,
        "more than 63 proof lines"
    );
    // 422: old size 0 with a non-empty proof does not verify.
    assert_eq!(post(add_checkpoint("0", &[junk], &cp8)).await.status, 422);
    // 200: the first checkpoint, from 0.
    let ok = post(add_checkpoint("0", &[], &cp8)).await;
    assert_eq!(ok.status, 200, "{}", String::from_utf8_lossy(&ok.body));
    assert!(ok.body.starts_with("— witness.example ".as_bytes()));
    assert!(ok.body.ends_with(b"\n"));
    // 409: a stale old size; the body names the size cosigned, as text/x.tlog.size.
    let stale = post(add_checkpoint("0", &[], &cp8)).await;
    assert_eq!(stale.status, 409);
    assert_eq!(stale.header("content-type"), Some("text/x.tlog.size"));
    assert_eq!(stale.body, b"8\n");
    // 409: the same size with another root (a split view), signed by the log itself.
    let split = signed_checkpoint(&s.skey, ORIGIN, 8, Hash([7; 32]));
    let r = post(add_checkpoint("8", &[], &split)).await;
    assert_eq!((r.status, r.body.as_slice()), (409, &b"8\n"[..]));
    // 200: the same checkpoint again (old = size, same root) is cosigned again.
    assert_eq!(post(add_checkpoint("8", &[], &cp8)).await.status, 200);
    // 422: the tree grows, but the proof does not join it to the one cosigned.
    let cp12 = append(&s, 8, 12).await;
    let proof = http(s.log, "GET", "/consistency/8/12", &[], b"").await;
    assert_eq!(proof.status, 200);
    let lines: Vec<String> = String::from_utf8(proof.body)
        .expect("text")
        .lines()
        .map(str::to_owned)
        .collect();
    assert!(!lines.is_empty());
    let mut wrong = lines.clone();
    wrong[0] = junk.to_owned();
    let wrong: Vec<&str> = wrong.iter().map(String::as_str).collect();
    assert_eq!(post(add_checkpoint("8", &wrong, &cp12)).await.status, 422);
    // 200 with the right proof; and the state moved to 12.
    let right: Vec<&str> = lines.iter().map(String::as_str).collect();
    assert_eq!(post(add_checkpoint("8", &right, &cp12)).await.status, 200);
    assert_eq!(post(add_checkpoint("8", &right, &cp12)).await.body, b"12\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consistency_from_the_empty_tree_and_the_caching_tlog_tiles_asks_for() {
    let s = servers().await;
    let cp = append(&s, 0, 300).await;
    assert_eq!(root_of(&cp).0, 300);
    // The empty tree and a tree with itself: empty proofs, never a 500.
    for path in [
        "/consistency/0/300",
        "/consistency/300/300",
        "/consistency/0/0",
    ] {
        let a = http(s.log, "GET", path, &[], b"").await;
        assert_eq!((a.status, a.body.len()), (200, 0), "{path}");
    }
    for path in ["/consistency/9/5", "/consistency/5/301", "/consistency/x/5"] {
        let a = http(s.log, "GET", path, &[], b"").await;
        assert!((400..500).contains(&a.status), "{path}: {}", a.status);
    }
    // The checkpoint is mutable: cached a few seconds at most.
    let c = http(s.log, "GET", "/checkpoint", &[], b"").await;
    assert_eq!(c.header("cache-control"), Some("public, max-age=5"));
    assert_eq!(c.header("content-type"), Some("text/plain; charset=utf-8"));
    // Tiles and bundles, full and partial, are immutable.
    for path in [
        "/tile/0/000",
        "/tile/0/001.p/44",
        "/tile/1/000.p/1",
        "/tile/entries/000",
    ] {
        let t = http(s.log, "GET", path, &[], b"").await;
        assert_eq!(t.status, 200, "{path}");
        assert_eq!(
            t.header("cache-control"),
            Some("public, max-age=31536000, immutable"),
            "{path}"
        );
        assert_eq!(t.header("content-type"), Some("application/octet-stream"));
    }
    // An entry bundle is gzip-compressed for a client that accepts gzip, and the same bytes.
    let plain = http(s.log, "GET", "/tile/entries/001.p/44", &[], b"").await;
    assert_eq!(plain.header("content-encoding"), None);
    let zipped = http(
        s.log,
        "GET",
        "/tile/entries/001.p/44",
        &[("accept-encoding", "gzip, identity")],
        b"",
    )
    .await;
    assert_eq!(zipped.header("content-encoding"), Some("gzip"));
    assert_eq!(zipped.header("vary"), Some("accept-encoding"));
    assert!(zipped.body.len() < plain.body.len());
    let mut unzipped = Vec::new();
    flate2::read::GzDecoder::new(zipped.body.as_slice())
        .read_to_end(&mut unzipped)
        .expect("gzip");
    assert_eq!(unzipped, plain.body);
    // Refused gzip (q=0) and hash tiles: as they are.
    let refused = http(
        s.log,
        "GET",
        "/tile/entries/001.p/44",
        &[("accept-encoding", "gzip;q=0, identity")],
        b"",
    )
    .await;
    assert_eq!(refused.header("content-encoding"), None);
    let tile = http(
        s.log,
        "GET",
        "/tile/0/000",
        &[("accept-encoding", "gzip")],
        b"",
    )
    .await;
    assert_eq!(tile.header("content-encoding"), None);
}
