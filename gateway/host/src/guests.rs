//! The host's guests, each supervised: started, watched, and started again when it dies (after
//! a back-off that grows while it keeps dying), its endpoint published to the forwarder only
//! between its ready line and its exit.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use cloister_gateway::nodes::NodeAddress;
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::sync::watch;

/// The first back-off after a guest dies; it doubles while the guest keeps dying young.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// The longest back-off.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A guest that ran this long before dying starts again after the first back-off.
const HEALTHY_RUN: Duration = Duration::from_secs(60);

/// How one guest is launched.
#[derive(Debug, Clone)]
pub enum GuestSpec {
    /// A development-mode runtime as a process (`cloister-runtime --unix SOCKET …`): emulated
    /// attestation, no memory encryption.
    InsecureDevelopment {
        /// The runtime binary.
        runtime: PathBuf,
        /// Its arguments besides `--unix` (the emulated processor's socket, the manifest digest,
        /// the command line, the models).
        args: Vec<String>,
        /// The Unix socket it serves on.
        socket: PathBuf,
        /// Where its stderr goes (its request log).
        log: PathBuf,
        /// How long it may take to print its ready line.
        ready_timeout: Duration,
    },
}

/// Why a start failed (the supervisor logs it and tries again).
#[derive(Debug, thiserror::Error)]
pub enum GuestError {
    /// The process could not be spawned.
    #[error("spawning {what}: {source}")]
    Spawn {
        /// What.
        what: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// It exited or stayed silent before its ready line.
    #[error("no ready line within {0:?}")]
    NotReady(Duration),
}

/// A guest that is up.
struct Running {
    child: tokio::process::Child,
    endpoint: NodeAddress,
}

impl GuestSpec {
    async fn start(&self) -> Result<Running, GuestError> {
        match self {
            GuestSpec::InsecureDevelopment {
                runtime,
                args,
                socket,
                log,
                ready_timeout,
            } => {
                let _ = std::fs::remove_file(socket);
                let err = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(log)
                    .map_err(|source| GuestError::Spawn {
                        what: log.display().to_string(),
                        source,
                    })?;
                let mut child = tokio::process::Command::new(runtime)
                    .arg("--unix")
                    .arg(socket)
                    .args(args)
                    .stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(err)
                    .kill_on_drop(true)
                    .spawn()
                    .map_err(|source| GuestError::Spawn {
                        what: runtime.display().to_string(),
                        source,
                    })?;
                let stdout = child
                    .stdout
                    .take()
                    .ok_or(GuestError::NotReady(*ready_timeout))?;
                let mut lines = BufReader::new(stdout).lines();
                let ready = tokio::time::timeout(*ready_timeout, async {
                    while let Ok(Some(line)) = lines.next_line().await {
                        if line.starts_with("READY ") {
                            return true;
                        }
                    }
                    false
                })
                .await;
                if ready != Ok(true) {
                    let _ = child.kill().await;
                    return Err(GuestError::NotReady(*ready_timeout));
                }
                // Keep reading its stdout so that it never blocks on a full pipe.
                tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
                Ok(Running {
                    child,
                    endpoint: NodeAddress::Unix(socket.clone()),
                })
            }
        }
    }
}

/// Runs `spec` until `stop` turns true, publishing its endpoint on `endpoint` while it is up.
/// Each start and death is logged with `name`.
pub async fn supervise(
    name: String,
    spec: GuestSpec,
    endpoint: watch::Sender<Option<NodeAddress>>,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = FIRST_BACKOFF;
    loop {
        if *stop.borrow() {
            return;
        }
        let started = Instant::now();
        let starting = tokio::select! {
            r = spec.start() => r,
            _ = stop.wait_for(|s| *s) => return,
        };
        match starting {
            Ok(mut running) => {
                tracing::info!(guest = %name, ms = started.elapsed().as_millis() as u64, "guest ready");
                endpoint.send_replace(Some(running.endpoint.clone()));
                let exited = tokio::select! {
                    status = running.child.wait() => Some(status),
                    _ = stop.wait_for(|s| *s) => None,
                };
                endpoint.send_replace(None);
                match exited {
                    None => {
                        let _ = running.child.kill().await;
                        return;
                    }
                    Some(status) => {
                        let status = status
                            .map(|s| s.to_string())
                            .unwrap_or_else(|e| e.to_string());
                        tracing::warn!(guest = %name, %status, "guest exited; starting it again");
                    }
                }
            }
            Err(why) => tracing::warn!(guest = %name, %why, "guest did not start"),
        }
        if started.elapsed() >= HEALTHY_RUN {
            backoff = FIRST_BACKOFF;
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in "runtime" (a shell script) that prints its ready line and exits after a
    /// moment: the supervisor publishes its endpoint, withdraws it at the exit, and starts it
    /// again.
    #[tokio::test]
    async fn a_dying_guest_is_withdrawn_and_started_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        let script = dir.path().join("rt.sh");
        let count = dir.path().join("starts");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\necho x >> {}\necho \"READY $2\"\nsleep 0.3\nexit 3\n",
                count.display()
            ),
        )
        .expect("script");
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .expect("chmod");
        let spec = GuestSpec::InsecureDevelopment {
            runtime: script,
            args: Vec::new(),
            socket: dir.path().join("g.sock"),
            log: dir.path().join("g.log"),
            ready_timeout: Duration::from_secs(5),
        };
        let (tx, mut rx) = watch::channel(None);
        let (stop_tx, stop) = watch::channel(false);
        let task = tokio::spawn(supervise("g0".into(), spec, tx, stop));
        rx.wait_for(|e| e.is_some()).await.expect("up");
        rx.wait_for(|e| e.is_none())
            .await
            .expect("withdrawn at exit");
        rx.wait_for(|e| e.is_some()).await.expect("up again");
        stop_tx.send_replace(true);
        task.await.expect("supervisor ends");
        assert!(rx.borrow().is_none());
        let starts = std::fs::read_to_string(&count)
            .expect("count")
            .lines()
            .count();
        assert!(starts >= 2, "{starts}");
    }
}
