//! The soak's driver, shared by the loopback soak (`tests/tests/soak.rs`) and the soak through
//! a QEMU guest (`tests/tests/boot_soak.rs`): a steady mix of echoes and summaries for a fixed
//! time, each answer checked against its own request, and memory curves sampled on the side.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cloister_client::{Client, ClientError, InnerResponse};

/// The chat every summary of the soak sends.
pub const CHAT: &[u8] = br#"{"messages":[
 {"from":"Maya","at":"2026-03-01T10:02","text":"Can we move the team dinner to Friday?"},
 {"from":"Jonas","at":"2026-03-01T10:04","text":"Friday works. Same place on Elm Street?"},
 {"from":"Maya","at":"2026-03-01T10:05","text":"Yes, I'll book a table for six at 7.30pm."}],
 "max_words":30}"#;

/// The run's length: `CLOISTER_SOAK_SECS`, else `default` seconds.
pub fn duration_from_env(default: u64) -> Duration {
    Duration::from_secs(
        std::env::var("CLOISTER_SOAK_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(default),
    )
}

/// The request mix.
#[derive(Debug, Clone, Copy)]
pub struct Mix {
    /// An echo (its own numbered body) this often.
    pub echo_every: Duration,
    /// A summary of [`CHAT`] this often.
    pub summary_every: Duration,
    /// Memory sampled this often.
    pub sample_every: Duration,
}

/// Memory curves: per series, `(seconds since the start, KiB)`.
#[derive(Debug, Default)]
pub struct Samples(pub BTreeMap<String, Vec<(f64, u64)>>);

impl Samples {
    /// Adds one point to `series`.
    pub fn push(&mut self, series: &str, t: f64, kib: u64) {
        self.0.entry(series.to_owned()).or_default().push((t, kib));
    }

    /// Prints each curve (start, first point after `warm_after` seconds, peak after it, end) and
    /// returns the series that grew most after warm-up, with its growth in MiB.
    pub fn report(&self, warm_after: f64) -> (String, u64) {
        let mib = |k: u64| k / 1024;
        let mut worst = (String::new(), 0);
        for (name, points) in &self.0 {
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
            if growth >= worst.1 {
                worst = (name.clone(), growth);
            }
            eprintln!(
                "  {name:<14} MiB: start {}, warm {}, peak {}, end {} ({} samples; growth after warm-up {growth})",
                mib(first),
                mib(warm),
                mib(peak),
                mib(end),
                points.len()
            );
            eprintln!("  {:<14} curve (s: MiB): {}", "", curve(points, 16));
        }
        worst
    }
}

/// At most `n` points of `points`, evenly spaced, as `t:MiB` pairs.
fn curve(points: &[(f64, u64)], n: usize) -> String {
    let step = points.len().div_ceil(n.max(1)).max(1);
    let mut picked: Vec<&(f64, u64)> = points.iter().step_by(step).collect();
    if let Some(last) = points.last()
        && picked.last() != Some(&last)
    {
        picked.push(last);
    }
    picked
        .iter()
        .map(|(t, k)| format!("{t:.0}:{}", k / 1024))
        .collect::<Vec<_>>()
        .join(" ")
}

/// What a soak sent, every request answered once with its own answer.
#[derive(Debug)]
pub struct Tally {
    /// Echoes answered.
    pub echoes: usize,
    /// Summaries answered.
    pub summaries: usize,
}

/// The summary in a `/v1/summarize` answer, if it has a non-empty one.
pub fn summary_of(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let s = v.get("summary")?.as_str()?.trim().to_owned();
    (!s.is_empty()).then_some(s)
}

/// Checks one finished request: answered 200, with its own answer, once.
fn check(
    done: Result<(String, Result<InnerResponse, ClientError>), tokio::task::JoinError>,
    at: f64,
    answered: &mut BTreeSet<String>,
    tally: &mut Tally,
) {
    let (body, r) = done.expect("task");
    let r = r.unwrap_or_else(|e| panic!("{body} failed ({at:.0} s into the run): {e}"));
    assert_eq!(r.status, 200, "{body}");
    if body.starts_with("soak-echo") {
        assert_eq!(
            r.body.expose(),
            body.as_bytes(),
            "{body} got another's answer"
        );
        tally.echoes += 1;
    } else {
        assert!(summary_of(r.body.expose()).is_some(), "{body}: no summary");
        tally.summaries += 1;
    }
    assert!(answered.insert(body.clone()), "{body} answered twice");
}

/// Sends `mix` through `client` for `run`, calling `sample(seconds since start)` at its
/// interval, then waits for every answer. Each answer is checked as it arrives (so the driver
/// holds only the requests in flight, and its own memory stays flat). Panics (this is a test
/// driver) on any request that fails, is answered with another's body, or is answered twice.
pub async fn drive(
    client: Arc<Client>,
    run: Duration,
    mix: Mix,
    mut sample: impl FnMut(f64),
) -> Tally {
    let started = Instant::now();
    let at = || started.elapsed().as_secs_f64();
    let mut echo_tick = tokio::time::interval(mix.echo_every);
    let mut summary_tick = tokio::time::interval(mix.summary_every);
    let mut sample_tick = tokio::time::interval(mix.sample_every);
    let mut in_flight = tokio::task::JoinSet::new();
    let mut answered = BTreeSet::new();
    let mut tally = Tally {
        echoes: 0,
        summaries: 0,
    };
    let mut n = 0usize;
    while started.elapsed() < run {
        tokio::select! {
            _ = echo_tick.tick() => {
                let client = client.clone();
                let body = format!("soak-echo-{n:06}");
                n += 1;
                in_flight.spawn(async move {
                    let r = client.send("/v1/echo", "application/octet-stream", body.as_bytes()).await;
                    (body, r)
                });
            }
            _ = summary_tick.tick() => {
                let client = client.clone();
                let body = format!("soak-summary-{n:06}");
                n += 1;
                in_flight.spawn(async move {
                    let r = client.send("/v1/summarize", "application/json", CHAT).await;
                    (body, r)
                });
            }
            Some(done) = in_flight.join_next() => check(done, at(), &mut answered, &mut tally),
            _ = sample_tick.tick() => sample(at()),
        }
    }
    while let Some(done) = in_flight.join_next().await {
        check(done, at(), &mut answered, &mut tally);
    }
    sample(at());
    assert_eq!(answered.len(), n, "none lost");
    tally
}
