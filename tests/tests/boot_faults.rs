//! Faults under QEMU (TCG), the guest reached as a device reaches it: relay → gateway →
//! vhost-device-vsock → the guest's vsock port (issuer, gateway and relay in-process, the
//! device trusting the log and its witness).
//!
//! * **vhost-device-vsock killed**: the next request is refused by the gateway as 502
//!   `node-unreachable` (and its token refunded), and the way in keeps answering.
//! * **the guest frozen mid-request, then killed** (QEMU stopped with SIGSTOP while the request
//!   is in flight, then SIGKILL): the request ends as a named gateway error — `node-failed` or
//!   `node-timeout` — within the device's deadline, and the next one is refused by name too.

use std::process::Command;
use std::time::{Duration, Instant};

use cloister_client::ClientError;
use cloister_guest_image::launch::RunningGuest;
use cloister_guest_image::way_in::WayIn;
use cloister_tests::{boot_with_way_in, emulated_image};

const NODE_DEADLINE: Duration = Duration::from_secs(20);

fn signal(pid: u32, sig: &str) {
    let status = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill -{sig} {pid}");
}

/// A booted guest with its release logged, and the way in to it.
fn start(rt: &tokio::runtime::Runtime, dir: &std::path::Path) -> (RunningGuest, WayIn) {
    boot_with_way_in(rt, &emulated_image(dir), dir, NODE_DEADLINE, 10)
}

fn gateway_kind(e: &ClientError) -> Option<(u16, &str)> {
    match e {
        ClientError::Gateway { status, kind, .. } => Some((*status, kind.as_str())),
        _ => None,
    }
}

#[test]
#[ignore = "full tier: QEMU, vhost-device-vsock, firmware, kernel, model weights (cargo xtask test)"]
fn a_dead_vsock_bridge_or_a_guest_killed_mid_request_is_a_named_error_and_the_way_in_stays_up() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");

    // vhost-device-vsock killed under a running guest.
    let dir = tempfile::tempdir().expect("tempdir");
    let (guest, way_in) = start(&rt, dir.path());
    let r = rt
        .block_on(way_in.client.send("/v1/echo", "text/plain", b"before"))
        .expect("an echo through the way in");
    assert_eq!(r.body.expose(), b"before");
    signal(guest.vhost_pid(), "KILL");
    let e = rt
        .block_on(way_in.client.send("/v1/echo", "text/plain", b"after"))
        .expect_err("no bridge to the guest");
    assert_eq!(gateway_kind(&e), Some((502, "node-unreachable")), "{e}");
    let reports = rt
        .block_on(way_in.client.nodes())
        .expect("the gateway and relay still answer");
    assert_eq!(reports.len(), 1);
    drop(way_in);
    drop(guest);

    // The guest frozen with a request in flight, then killed.
    let dir = tempfile::tempdir().expect("tempdir");
    let (guest, way_in) = start(&rt, dir.path());
    let vm = guest.vm_pid();
    signal(vm, "STOP");
    let started = Instant::now();
    let (result, ()) = rt.block_on(async {
        tokio::join!(
            way_in.client.send("/v1/echo", "text/plain", b"in flight"),
            async {
                tokio::time::sleep(Duration::from_secs(2)).await;
                signal(vm, "KILL");
            }
        )
    });
    let e = result.expect_err("the guest died with the request");
    let took = started.elapsed();
    assert!(
        matches!(
            gateway_kind(&e),
            Some((502, "node-failed" | "node-unreachable")) | Some((504, "node-timeout"))
        ),
        "{e}"
    );
    assert!(took < NODE_DEADLINE + Duration::from_secs(30), "{took:?}");
    let e = rt
        .block_on(way_in.client.send("/v1/echo", "text/plain", b"next"))
        .expect_err("the guest is gone");
    assert!(
        matches!(
            gateway_kind(&e),
            Some((502, _)) | Some((504, "node-timeout"))
        ),
        "{e}"
    );
    eprintln!(
        "guest killed mid-request: {e} ({:.1} s)",
        took.as_secs_f64()
    );
    drop(way_in);
    drop(guest);
}
