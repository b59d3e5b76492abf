//! The soak through a confidential-VM guest under QEMU (TCG): relay → gateway →
//! vhost-device-vsock → the guest's runtime, the way `cargo xtask run` reaches it (issuer,
//! gateway and relay in this process on loopback; the device trusting the log and its witness).
//!
//! For `CLOISTER_SOAK_SECS` seconds (60 by default, as CI runs it; the long run is 1800) an
//! echo every second and a summary every 90 s (the image's extractive summariser: all-MiniLM
//! under TCG takes tens of seconds per summary), each echo with its own body. Every request must
//! come back once with its own answer. Memory is sampled every 5 s from outside — QEMU,
//! vhost-device-vsock and this process (gateway, relay, issuer and device) — and from inside: the
//! runtime prints its own resident set and the guest's memory in use on the console every 30 s.
//! After the first quarter of the run no series may grow by more than [`GROWTH_BOUND_MIB`] MiB.

use std::sync::Arc;
use std::time::Duration;

use cloister_guest_image::image::WeightsPlacement;
use cloister_guest_image::launch::RunningGuest;
use cloister_guest_image::model::MINILM_L6_V2;
use cloister_protocol::console::MemoryReading;
use cloister_tests::soak::{CHAT, Mix, Samples, drive, duration_from_env, summary_of};
use cloister_tests::stack::rss_kib;
use cloister_tests::{boot_with_way_in, emulated_model_image};

/// Largest growth of any series after warm-up, in MiB.
const GROWTH_BOUND_MIB: u64 = 48;
/// The gateway's and the device's deadline: a summary under TCG, with room.
const DEADLINE: Duration = Duration::from_secs(600);

/// Adds the outside processes' RSS and any guest reading printed since the last call.
fn sample(guest: &RunningGuest, seen: &mut usize, t: f64, into: &mut Samples) {
    for (name, pid) in [
        ("qemu", guest.vm_pid()),
        ("vhost-vsock", guest.vhost_pid()),
        ("way-in+device", std::process::id()),
    ] {
        if let Some(kib) = rss_kib(pid) {
            into.push(name, t, kib);
        }
    }
    let readings: Vec<MemoryReading> = guest
        .console()
        .iter()
        .filter_map(|l| MemoryReading::from_line(l))
        .collect();
    for r in readings.iter().skip(*seen) {
        into.push("guest-runtime", t, r.rss_kib);
        into.push("guest-used", t, r.used_kib());
    }
    *seen = readings.len();
}

#[test]
#[ignore = "full tier: QEMU, vhost-device-vsock, firmware, kernel, model weights (cargo xtask test)"]
fn soak_through_a_guest_holds_memory_and_loses_nothing() {
    let run = duration_from_env(60);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let image = emulated_model_image(dir.path(), MINILM_L6_V2.name, WeightsPlacement::Disk);
    // One token per request, with room: an echo a second, a summary every 90 s, the warm-up.
    let tokens = u32::try_from(run.as_secs() * 2 + 64).expect("a sane run length");
    let (guest, way_in) = boot_with_way_in(&rt, &image, dir.path(), DEADLINE, tokens);
    let client = Arc::clone(&way_in.client);

    // Warm-up: the embedder's first pass and every path taken once before the clock starts.
    let r = rt
        .block_on(client.send("/v1/summarize", "application/json", CHAT))
        .expect("first summary");
    assert!(summary_of(r.body.expose()).is_some(), "no summary");

    let mix = Mix {
        echo_every: Duration::from_secs(1),
        summary_every: Duration::from_secs(90),
        sample_every: Duration::from_secs(5),
    };
    let mut samples = Samples::default();
    let mut seen = 0;
    let tally = rt.block_on(drive(client, run, mix, |t| {
        sample(&guest, &mut seen, t, &mut samples)
    }));
    eprintln!(
        "soak through the guest: {} s, {} echoes and {} summaries, every one answered once with its own answer",
        run.as_secs(),
        tally.echoes,
        tally.summaries
    );
    let (worst, growth) = samples.report(run.as_secs_f64() / 4.0);
    assert!(
        samples.0.contains_key("guest-runtime"),
        "the guest printed no memory reading"
    );
    assert!(
        growth <= GROWTH_BOUND_MIB,
        "{worst} grew by {growth} MiB after warm-up (bound {GROWTH_BOUND_MIB})"
    );
    drop(way_in);
    drop(guest);
}
