//! `cargo xtask bench fleet`: requests a second and latency percentiles of the whole way in
//! across network namespaces, for one gateway and for two behind the relay, with 2, 4 and 8
//! nodes (two hosts of one guest, then two guests a host), all measured in one run on this
//! machine. Each request is what a device
//! does: the `cloister` CLI fetching the outer key, a directory, verifying every node in it,
//! fetching a token and sending an echo — so on one machine the devices' own verification
//! shares the CPU with the servers, and the figures are for the stack as a whole.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use cloister_tests::fleet::Fleet;

/// Devices sending at once.
const DEVICES: usize = 4;
/// Measured time per configuration.
const WINDOW: Duration = Duration::from_secs(15);

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn run(dir: &Path, gateways: usize, nodes: usize) -> (f64, Duration, Duration, usize) {
    // Two hosts at least (devices want two machines), two guests each beyond that.
    let (hosts, guests) = if nodes <= 2 { (2, 1) } else { (nodes / 2, 2) };
    let fleet = Arc::new(Fleet::start_with(dir, hosts, guests, gateways, 1_000_000));
    let mut want: Vec<String> = (1..=hosts)
        .flat_map(|h| (0..guests).map(move |g| format!("h{h}-{g}")))
        .collect();
    want.sort();
    let probe = dir.join("probe");
    let started = Instant::now();
    while fleet.listed(&probe).ok().as_deref() != Some(want.as_slice()) {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "fleet not ready"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let file = dir.join("echo.txt");
    std::fs::write(&file, "x".repeat(256)).expect("file");
    let threads: Vec<_> = (0..DEVICES)
        .map(|i| {
            let (fleet, stop, file) = (Arc::clone(&fleet), Arc::clone(&stop), file.clone());
            let state = dir.join(format!("device-{i}"));
            std::thread::spawn(move || {
                let (mut lat, mut failed) = (Vec::new(), 0usize);
                while !stop.load(Ordering::SeqCst) {
                    let t = Instant::now();
                    let mut c = fleet.device(&state);
                    c.args(["echo", "--file"]).arg(&file);
                    match c.output() {
                        Ok(o) if o.status.success() => lat.push(t.elapsed()),
                        _ => failed += 1,
                    }
                }
                (lat, failed)
            })
        })
        .collect();
    std::thread::sleep(WINDOW);
    stop.store(true, Ordering::SeqCst);
    let mut all = Vec::new();
    let mut failed = 0;
    for t in threads {
        let (lat, f) = t.join().expect("device");
        all.extend(lat);
        failed += f;
    }
    all.sort();
    let rps = all.len() as f64 / WINDOW.as_secs_f64();
    (rps, percentile(&all, 0.50), percentile(&all, 0.99), failed)
}

fn main() {
    println!(
        "fleet: {DEVICES} devices (the cloister CLI, a full session per request), {WINDOW:?} each"
    );
    println!("| gateways | nodes | requests/s | p50 ms | p99 ms | failed |");
    println!("|---|---|---|---|---|---|");
    let mut one = std::collections::BTreeMap::new();
    for gateways in [1, 2] {
        for nodes in [2, 4, 8] {
            let dir = tempfile::tempdir().expect("tempdir");
            let (rps, p50, p99, failed) = run(dir.path(), gateways, nodes);
            println!(
                "| {gateways} | {nodes} | {rps:.1} | {} | {} | {failed} |",
                p50.as_millis(),
                p99.as_millis()
            );
            if gateways == 1 {
                one.insert(nodes, rps);
            } else if let Some(base) = one.get(&nodes) {
                println!(
                    "|   | ratio two/one gateways at {nodes} nodes: {:.2}x | | | | |",
                    rps / base
                );
            }
        }
    }
}
