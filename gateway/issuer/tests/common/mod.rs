//! Shared by the issuer's tests: a token request with a bearer token, and a real PostgreSQL.

#![allow(dead_code)]

use bytes::Bytes;

/// `POST /token-request` to the issuer at `addr` with `bearer`; the status and body.
pub async fn post(
    addr: &str,
    bearer: Option<&str>,
    ct: &'static str,
    body: Vec<u8>,
) -> (u16, Bytes) {
    // exchange_tcp sends no Authorization: speak HTTP/1.1 with hyper directly for the bearer.
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut send, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .expect("handshake");
    tokio::spawn(conn);
    let mut req = hyper::Request::builder()
        .method("POST")
        .uri("/token-request")
        .header("host", addr)
        .header("content-type", ct);
    if let Some(b) = bearer {
        req = req.header("authorization", format!("Bearer {b}"));
    }
    let res = send
        .send_request(
            req.body(http_body_util::Full::new(Bytes::from(body)))
                .expect("request"),
        )
        .await
        .expect("response");
    let status = res.status().as_u16();
    use http_body_util::BodyExt as _;
    (
        status,
        res.into_body().collect().await.expect("body").to_bytes(),
    )
}

/// A real PostgreSQL server on 127.0.0.1 (trust authentication, no fsync), stopped on drop.
/// As root, it runs as the `postgres` user the Debian package makes (PostgreSQL refuses root).
pub struct Postgres {
    child: std::process::Child,
    /// `postgres://cloister@127.0.0.1:PORT/postgres?sslmode=disable`.
    pub url: String,
}

fn bin_dir() -> std::path::PathBuf {
    let mut dirs: Vec<std::path::PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is not installed: run `cargo xtask setup`")
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|d| d.join("postgres").exists())
        .collect();
    dirs.sort();
    dirs.pop()
        .expect("no PostgreSQL server binaries: run `cargo xtask setup`")
}

fn as_postgres(program: &std::path::Path, root: bool) -> std::process::Command {
    if root {
        let mut c = std::process::Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        std::process::Command::new(program)
    }
}

impl Postgres {
    /// Makes a cluster in `dir/pg` and serves it on a free port.
    pub fn start(dir: &std::path::Path) -> Postgres {
        use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
        let root = std::fs::metadata("/proc/self")
            .map(|m| m.uid())
            .unwrap_or(1)
            == 0;
        let data = dir.join("pg");
        std::fs::create_dir_all(&data).expect("data dir");
        if root {
            // The postgres user must reach and own its directory.
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
            let ok = std::process::Command::new("chown")
                .args(["postgres:postgres"])
                .arg(&data)
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "chown of the data directory");
        }
        let bin = bin_dir();
        let out = as_postgres(&bin.join("initdb"), root)
            .args([
                "-U",
                "cloister",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
                "-D",
            ])
            .arg(&data)
            .output()
            .expect("initdb");
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
        let child = as_postgres(&bin.join("postgres"), root)
            .arg("-D")
            .arg(&data)
            .args(["-h", "127.0.0.1", "-p", &port.to_string()])
            .args(["-c", "unix_socket_directories=", "-c", "fsync=off"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("postgres");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "postgres did not start"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        Postgres {
            child,
            url: format!("postgres://cloister@127.0.0.1:{port}/postgres?sslmode=disable"),
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // SIGKILL of runuser would leave the server: ask the server itself to stop.
        let _ = std::process::Command::new("pkill")
            .args(["-INT", "-P", &self.child.id().to_string()])
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
