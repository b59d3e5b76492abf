//! `cargo xtask fuzz [--seconds N] [--dev] [TARGET…]`: builds the libFuzzer targets in `fuzz/` and runs
//! each for N seconds, then prints executions, coverage and corpus per target.
//!
//! The build is `cargo fuzz build -s none -a` on the machine's stable toolchain: coverage
//! instrumentation and libFuzzer, debug assertions on (so arithmetic overflow is a crash), no
//! sanitizer (AddressSanitizer needs nightly; the crates fuzzed forbid `unsafe`). Each target
//! seeds its own corpus (`fuzz/corpus/<target>`) from the real vectors it verifies against
//! (`CLOISTER_FUZZ_SEEDS`, see `fuzz/src/lib.rs`), and each run's log is kept in
//! `fuzz/logs/<target>.log`. A crash fails the command and names its reproducer in
//! `fuzz/artifacts/<target>/` (rerun with `cargo fuzz run -s none -a TARGET FILE`).

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

use anyhow::{Context as _, Result, bail};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Seconds each target runs.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Build the targets and list them, run nothing.
    #[arg(long)]
    build_only: bool,
    /// Build without optimisation: quicker to build, slower to run. For keeping the targets
    /// building and their seeds clean (CI), not for finding bugs.
    #[arg(long)]
    dev: bool,
    /// Targets to run (all when none is named).
    targets: Vec<String>,
}

/// The flags every `cargo fuzz` call shares, so that `run` reuses `build`'s output.
fn flags(dev: bool) -> Vec<&'static str> {
    let mut f = vec!["--sanitizer=none", "--debug-assertions"];
    if dev {
        f.push("--dev");
    }
    f
}

/// One target's run, as libFuzzer reported it.
#[derive(Debug, Default, PartialEq, Eq)]
struct Stats {
    executions: Option<u64>,
    coverage: Option<u64>,
    corpus: Option<u64>,
    peak_rss_mb: Option<u64>,
    artifact: Option<String>,
}

pub fn run(args: &Args) -> Result<ExitCode> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("xtask lives in the workspace")?
        .to_path_buf();
    cloister_xtask::setup::run(
        &cloister_xtask::setup::Plan::for_fuzz(),
        &cloister_xtask::stage::Clock::new(),
    )?;
    let all = list(&root)?;
    let targets = if args.targets.is_empty() {
        all.clone()
    } else {
        for t in &args.targets {
            if !all.contains(t) {
                bail!("no fuzz target {t:?}; the targets are: {}", all.join(", "));
            }
        }
        args.targets.clone()
    };
    let started = Instant::now();
    let status = Command::new("cargo")
        .args(["fuzz", "build"])
        .args(flags(args.dev))
        .current_dir(&root)
        .status()
        .context("cargo fuzz build")?;
    if !status.success() {
        bail!("cargo fuzz build failed ({status})");
    }
    eprintln!(
        "built {} fuzz targets ({}) in {:.0} s",
        all.len(),
        if args.dev { "unoptimised" } else { "optimised" },
        started.elapsed().as_secs_f64()
    );
    if args.build_only {
        println!("{}", all.join("\n"));
        return Ok(ExitCode::SUCCESS);
    }
    let mut failed = Vec::new();
    let mut rows = Vec::new();
    for t in &targets {
        let (stats, ok) = run_one(&root, t, args.seconds, args.dev)?;
        if !ok {
            failed.push(t.clone());
        }
        rows.push((t.clone(), stats, ok));
    }
    print_table(&rows, args.seconds);
    if !failed.is_empty() {
        bail!("fuzz targets failed: {}", failed.join(", "));
    }
    Ok(ExitCode::SUCCESS)
}

fn list(root: &Path) -> Result<Vec<String>> {
    let out = Command::new("cargo")
        .args(["fuzz", "list"])
        .current_dir(root)
        .output()
        .context("cargo fuzz list")?;
    if !out.status.success() {
        bail!(
            "cargo fuzz list failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect())
}

fn run_one(root: &Path, target: &str, seconds: u64, dev: bool) -> Result<(Stats, bool)> {
    let corpus = root.join("fuzz/corpus").join(target);
    let logs = root.join("fuzz/logs");
    std::fs::create_dir_all(&corpus).with_context(|| format!("{}", corpus.display()))?;
    std::fs::create_dir_all(&logs).with_context(|| format!("{}", logs.display()))?;
    let log_path: PathBuf = logs.join(format!("{target}.log"));
    let log = std::fs::File::create(&log_path)
        .with_context(|| format!("cannot write {}", log_path.display()))?;
    eprintln!(
        "fuzzing {target} for {seconds} s (log: {})",
        log_path.display()
    );
    let status = Command::new("cargo")
        .args(["fuzz", "run"])
        .args(flags(dev))
        .arg(target)
        .arg(&corpus)
        .arg("--")
        .arg(format!("-max_total_time={seconds}"))
        .args(["-print_final_stats=1", "-rss_limit_mb=4096", "-timeout=60"])
        .env("CLOISTER_FUZZ_SEEDS", &corpus)
        .current_dir(root)
        .stdout(Stdio::null())
        .stderr(log)
        .status()
        .with_context(|| format!("cargo fuzz run {target}"))?;
    let text = std::fs::read_to_string(&log_path).unwrap_or_default();
    let stats = parse_stats(&text);
    if !status.success() {
        let tail: Vec<&str> = text.lines().rev().take(40).collect();
        eprintln!("--- {target} failed ({status}); the end of its log:");
        for line in tail.iter().rev() {
            eprintln!("{line}");
        }
    }
    Ok((stats, status.success()))
}

/// Reads libFuzzer's final statistics and its last status line from a log.
fn parse_stats(log: &str) -> Stats {
    let mut s = Stats::default();
    let field = |line: &str, name: &str| -> Option<u64> {
        let rest = line.split(name).nth(1)?;
        rest.split_whitespace().next()?.parse().ok()
    };
    for line in log.lines() {
        if let Some(v) = line.strip_prefix("stat::number_of_executed_units:") {
            s.executions = v.trim().parse().ok();
        } else if let Some(v) = line.strip_prefix("stat::peak_rss_mb:") {
            s.peak_rss_mb = v.trim().parse().ok();
        } else if line.starts_with('#') && line.contains(" cov: ") {
            s.coverage = field(line, " cov: ").or(s.coverage);
            // `corp: 19/320b`: inputs / bytes.
            s.corpus = line
                .split(" corp: ")
                .nth(1)
                .and_then(|c| c.split('/').next()?.parse().ok())
                .or(s.corpus);
        }
        if let Some(i) = line.find("Test unit written to ") {
            s.artifact = Some(line[i + "Test unit written to ".len()..].trim().to_owned());
        }
    }
    s
}

fn print_table(rows: &[(String, Stats, bool)], seconds: u64) {
    let show = |v: Option<u64>| v.map_or_else(|| "-".to_owned(), |v| v.to_string());
    println!(
        "{:<20} {:>12} {:>10} {:>7} {:>7} {:>8}  result",
        "target", "executions", "exec/s", "cov", "corpus", "rss MB"
    );
    for (t, s, ok) in rows {
        let rate = s.executions.map(|e| e / seconds.max(1));
        let result = match (ok, &s.artifact) {
            (true, _) => "ok".to_owned(),
            (false, Some(a)) => format!("CRASH {a}"),
            (false, None) => "FAILED".to_owned(),
        };
        println!(
            "{:<20} {:>12} {:>10} {:>7} {:>7} {:>8}  {result}",
            t,
            show(s.executions),
            show(rate),
            show(s.coverage),
            show(s.corpus),
            show(s.peak_rss_mb),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_libfuzzers_statistics() {
        let log = "INFO: Seed: 1\n\
            #2\tINITED cov: 10 ft: 11 corp: 1/1b exec/s: 0 rss: 30Mb\n\
            #4096\tpulse  cov: 88 ft: 120 corp: 17/300b lim: 40 exec/s: 2048 rss: 41Mb\n\
            #93912\tDONE   cov: 91 ft: 130 corp: 19/320b lim: 400 exec/s: 6260 rss: 44Mb\n\
            stat::number_of_executed_units: 93912\n\
            stat::average_exec_per_sec:     6260\n\
            stat::peak_rss_mb:              44\n";
        assert_eq!(
            parse_stats(log),
            Stats {
                executions: Some(93912),
                coverage: Some(91),
                corpus: Some(19),
                peak_rss_mb: Some(44),
                artifact: None,
            }
        );
        let crash = "==1== ERROR: libFuzzer: deadly signal\n\
            artifact_prefix='fuzz/artifacts/t/'; Test unit written to fuzz/artifacts/t/crash-ab12\n";
        assert_eq!(
            parse_stats(crash).artifact.as_deref(),
            Some("fuzz/artifacts/t/crash-ab12")
        );
    }
}
