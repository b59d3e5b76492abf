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

use std::sync::Arc;
use std::time::{Duration, Instant};

use cloister_client::{Client, ClientError};
use cloister_guest_image::model::{MINILM_L6_V2, SMOLLM2_135M, require};
use cloister_tests::soak::{CHAT, Mix, Samples, drive, duration_from_env, summary_of};
use cloister_tests::stack::{NodeSpec, Stack, rss_kib};

/// Largest growth of any process's RSS after warm-up, in MiB.
const GROWTH_BOUND_MIB: u64 = 48;

fn models() -> std::path::PathBuf {
    let cache = cloister_guest_image::cache_root();
    require(&cache, &SMOLLM2_135M).expect("SmolLM2 weights (run `cargo xtask setup`)");
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

fn sample(stack: &Stack, t: f64, into: &mut Samples) {
    for (name, pid) in stack.processes() {
        if let Some(kib) = rss_kib(pid) {
            into.push(&name, t, kib);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "full tier: model weights (cargo xtask test)"]
async fn soak_mixed_requests_hold_memory_and_lose_nothing() {
    let run = duration_from_env(60);
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

    let mix = Mix {
        echo_every: Duration::from_millis(200),
        summary_every: Duration::from_secs(15),
        sample_every: Duration::from_secs(2),
    };
    let mut samples = Samples::default();
    let tally = drive(client, run, mix, |t| sample(&stack, t, &mut samples)).await;
    eprintln!(
        "soak: {} s, {} echoes and {} summaries, every one answered once with its own answer",
        run.as_secs(),
        tally.echoes,
        tally.summaries
    );
    let (worst, growth) = samples.report(run.as_secs_f64() / 4.0);
    assert!(
        growth <= GROWTH_BOUND_MIB,
        "{worst} grew by {growth} MiB after warm-up (bound {GROWTH_BOUND_MIB})"
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
#[ignore = "full tier: model weights (cargo xtask test)"]
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
    let mut samples = Samples::default();
    let at = || started.elapsed().as_secs_f64();
    sample(&stack, at(), &mut samples);

    // The runtime takes one summary at a time: ten at once.
    let w = wave(&client, 10, "/v1/summarize", CHAT).await;
    assert!(w.answered >= 1, "{w:?}");
    assert!(w.shed_by_node >= 1, "the runtime shed nothing: {w:?}");
    sample(&stack, at(), &mut samples);

    // The gateway takes four exchanges at once: forty echoes at once.
    let w = wave(&client, 40, "/v1/echo", b"{}").await;
    assert!(w.answered >= 1, "{w:?}");
    assert!(w.shed_by_gateway >= 1, "the gateway shed nothing: {w:?}");
    sample(&stack, at(), &mut samples);

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
    sample(&stack, at(), &mut samples);
    let (worst, growth) = samples.report(0.0);
    assert!(
        growth <= GROWTH_BOUND_MIB,
        "{worst} grew by {growth} MiB under overload (bound {GROWTH_BOUND_MIB})"
    );
}
