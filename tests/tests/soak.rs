//! Load that stops by itself, on the whole way in (loopback: relay → gateway → a
//! development-mode runtime with SmolLM2 and MiniLM):
//!
//! * **soak** — for `CLOISTER_SOAK_SECS` seconds (60 by default; CI runs that, the long run
//!   1800) a steady mix: an echo every 200 ms and a summary every 15 s, each with its own body.
//!   The resident memory of every server is sampled every 2 s. Every request must come back
//!   once, with its own answer; after the first quarter of the run (allocators and caches warm)
//!   no process may grow by more than [`GROWTH_BOUND_MIB`] MiB.
//! * **overload** — ten times what the node takes at once: the gateway (`--max-in-flight`) and
//!   the runtime (`cloister.max_concurrent`) refuse the excess with 503 `overloaded` at once,
//!   nothing else fails, memory stays within the same bound, and the next requests succeed.
//!
//! Figures (the RSS curve per process, shed counts) are printed; the test asserts correctness
//! and bounds, never a speed.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cloister_client::{Client, ClientError};
use cloister_guest_image::model::{MINILM_L6_V2, SMOLLM2_135M, require};
use cloister_tests::stack::{NodeSpec, Stack, rss_kib};

/// Largest growth of any process's RSS after warm-up, in MiB.
const GROWTH_BOUND_MIB: u64 = 48;
const CHAT: &[u8] = br#"{"messages":[
 {"from":"Maya","at":"2026-03-01T10:02","text":"Can we move the team dinner to Friday?"},
 {"from":"Jonas","at":"2026-03-01T10:04","text":"Friday works. Same place on Elm Street?"},
 {"from":"Maya","at":"2026-03-01T10:05","text":"Yes, I'll book a table for six at 7.30pm."}],
 "max_words":30}"#;

fn models() -> std::path::PathBuf {
    let cache = cloister_guest_image::cache_root();
    require(&cache, &SMOLLM2_135M).expect("SmolLM2 weights (cargo xtask model ...)");
    require(&cache, &MINILM_L6_V2).expect("MiniLM weights");
    cache.join("models")
}

async fn start(
    cmdline: String,
    gateway_args: &'static [&'static str],
) -> (tempfile::TempDir, Stack) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().to_owned();
    let stack = tokio::task::spawn_blocking(move || {
        let models = models();
        let spec = NodeSpec {
            id: "node-a",
            cmdline: &cmdline,
            models: Some(&models),
            logged: true,
        };
        Stack::start_with(&path, &[spec], &[], 1_000_000, gateway_args)
    })
    .await
    .expect("stack");
    (dir, stack)
}

/// RSS samples: per process, `(seconds since start, KiB)`.
type Samples = BTreeMap<String, Vec<(f64, u64)>>;

fn sample(stack: &Stack, started: Instant, into: &mut Samples) {
    let t = started.elapsed().as_secs_f64();
    for (name, pid) in stack.processes() {
        if let Some(kib) = rss_kib(pid) {
            into.entry(name).or_default().push((t, kib));
        }
    }
}

/// Prints each process's curve (start, after warm-up, peak after warm-up, end) and returns the
/// largest growth after warm-up, in MiB.
fn report(samples: &Samples, warm_after: f64) -> u64 {
    let mib = |k: u64| k / 1024;
    let mut worst = 0;
    for (name, points) in samples {
        let Some(&(_, first)) = points.first() else {
            continue;
        };
        let after: Vec<u64> = points
            .iter()
            .filter(|(t, _)| *t >= warm_after)
            .map(|(_, k)| *k)
            .collect();
        let (Some(&warm), Some(&end)) = (after.first(), after.last()) else {
            continue;
        };
        let peak = after.iter().copied().max().unwrap_or(warm);
        let growth = mib(peak.saturating_sub(warm));
        worst = worst.max(growth);
        eprintln!(
            "  {name:<10} RSS MiB: start {}, warm {}, peak {}, end {} ({} samples; growth after warm-up {growth})",
            mib(first),
            mib(warm),
            mib(peak),
            mib(end),
            points.len()
        );
    }
    worst
}

fn summary_of(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let s = v.get("summary")?.as_str()?.trim().to_owned();
    (!s.is_empty()).then_some(s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_mixed_requests_hold_memory_and_lose_nothing() {
    let secs: u64 = std::env::var("CLOISTER_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let (_dir, stack) = start(
        format!(
            "cloister.attest=emulated cloister.model={}",
            SMOLLM2_135M.name
        ),
        &[],
    )
    .await;
    let client = Arc::new(stack.client().with_token_batch(16));
    // Warm-up: the model is loaded and every path taken once before the clock starts.
    let r = client
        .send("/v1/summarize", "application/json", CHAT)
        .await
        .expect("first summary");
    assert_eq!(r.status, 200);

    let started = Instant::now();
    let run = Duration::from_secs(secs);
    let mut samples = Samples::new();
    let mut echo_tick = tokio::time::interval(Duration::from_millis(200));
    let mut summary_tick = tokio::time::interval(Duration::from_secs(15));
    let mut sample_tick = tokio::time::interval(Duration::from_secs(2));
    let mut tasks = Vec::new();
    let mut n = 0usize;
    while started.elapsed() < run {
        tokio::select! {
            _ = echo_tick.tick() => {
                let client = client.clone();
                let body = format!("soak-echo-{n:06}");
                n += 1;
                tasks.push(tokio::spawn(async move {
                    let r = client.send("/v1/echo", "application/octet-stream", body.as_bytes()).await;
                    (body, r)
                }));
            }
            _ = summary_tick.tick() => {
                let client = client.clone();
                let body = format!("soak-summary-{n:06}");
                n += 1;
                tasks.push(tokio::spawn(async move {
                    let r = client.send("/v1/summarize", "application/json", CHAT).await;
                    (body, r)
                }));
            }
            _ = sample_tick.tick() => sample(&stack, started, &mut samples),
        }
    }
    let mut answered = BTreeSet::new();
    let (mut echoes, mut summaries) = (0, 0);
    for t in tasks {
        let (body, r) = t.await.expect("task");
        let r = r.unwrap_or_else(|e| panic!("{body} failed: {e}"));
        assert_eq!(r.status, 200, "{body}");
        if body.starts_with("soak-echo") {
            assert_eq!(
                r.body.expose(),
                body.as_bytes(),
                "{body} got another's answer"
            );
            echoes += 1;
        } else {
            assert!(summary_of(r.body.expose()).is_some(), "{body}: no summary");
            summaries += 1;
        }
        assert!(answered.insert(body.clone()), "{body} answered twice");
    }
    sample(&stack, started, &mut samples);
    assert_eq!(answered.len(), n, "none lost");
    eprintln!(
        "soak: {secs} s, {echoes} echoes and {summaries} summaries, every one answered once with its own answer"
    );
    let worst = report(&samples, secs as f64 / 4.0);
    assert!(
        worst <= GROWTH_BOUND_MIB,
        "a process grew by {worst} MiB after warm-up (bound {GROWTH_BOUND_MIB})"
    );
}

/// What a wave of requests met.
#[derive(Debug, Default)]
struct Wave {
    answered: usize,
    /// 503 `overloaded` from the gateway, outside the layer (passed back by the relay).
    shed_by_gateway: usize,
    /// 503 `overloaded` from the runtime, inside the layer.
    shed_by_node: usize,
}

async fn wave(client: &Arc<Client>, count: usize, path: &'static str, body: &'static [u8]) -> Wave {
    let tasks: Vec<_> = (0..count)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.send(path, "application/json", body).await })
        })
        .collect();
    let mut w = Wave::default();
    for t in tasks {
        match t.await.expect("task") {
            Ok(r) if r.status == 200 => w.answered += 1,
            Ok(r) => panic!("{path}: answered {} instead of 200 or 503", r.status),
            Err(ClientError::Relay { status: 503, kind })
                if kind.as_deref() == Some("overloaded") =>
            {
                w.shed_by_gateway += 1
            }
            Err(ClientError::Gateway {
                status: 503, kind, ..
            }) if kind == "overloaded" => w.shed_by_node += 1,
            Err(e) => panic!("{path}: failed other than by shedding: {e}"),
        }
    }
    eprintln!("overload: {count} concurrent {path}: {w:?}");
    w
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_times_capacity_is_shed_with_503_and_service_recovers() {
    let (_dir, stack) = start(
        format!(
            "cloister.attest=emulated cloister.model={} cloister.max_concurrent=1",
            SMOLLM2_135M.name
        ),
        &["--max-in-flight", "4"],
    )
    .await;
    let client = Arc::new(stack.client().with_token_batch(64));
    let r = client
        .send("/v1/summarize", "application/json", CHAT)
        .await
        .expect("warm-up summary");
    assert_eq!(r.status, 200);
    let started = Instant::now();
    let mut samples = Samples::new();
    sample(&stack, started, &mut samples);

    // The runtime takes one summary at a time: ten at once.
    let w = wave(&client, 10, "/v1/summarize", CHAT).await;
    assert!(w.answered >= 1, "{w:?}");
    assert!(w.shed_by_node >= 1, "the runtime shed nothing: {w:?}");
    sample(&stack, started, &mut samples);

    // The gateway takes four exchanges at once: forty echoes at once.
    let w = wave(&client, 40, "/v1/echo", b"{}").await;
    assert!(w.answered >= 1, "{w:?}");
    assert!(w.shed_by_gateway >= 1, "the gateway shed nothing: {w:?}");
    sample(&stack, started, &mut samples);

    // Load gone: everything is served again.
    let r = client
        .send("/v1/summarize", "application/json", CHAT)
        .await
        .expect("a summary after the overload");
    assert!(summary_of(r.body.expose()).is_some());
    for i in 0..5 {
        let body = format!("after-{i}");
        let r = client
            .send("/v1/echo", "application/octet-stream", body.as_bytes())
            .await
            .expect("an echo after the overload");
        assert_eq!(r.body.expose(), body.as_bytes());
    }
    sample(&stack, started, &mut samples);
    let worst = report(&samples, 0.0);
    assert!(
        worst <= GROWTH_BOUND_MIB,
        "a process grew by {worst} MiB under overload (bound {GROWTH_BOUND_MIB})"
    );
}
