//! `cargo xtask test`: the README's test command. The set-up step first (everything the full
//! tier needs), then every test, quick and full, with `cargo nextest`.
//!
//! The tiers: a test that needs QEMU, Redis, fetched artifacts (firmware, kernel, models,
//! sev-snp-measure) or root is `#[ignore = "full tier: …"]`, so plain `cargo test` runs the
//! quick tier on any laptop and lists what it left; this command runs the ignored ones too
//! (`--run-ignored all`). A full-tier test whose dependency is missing fails and names
//! `cargo xtask setup`; none skips.

use std::process::{Command, ExitCode};

use anyhow::{Context, Result};
use cloister_xtask::setup::{self, Plan};
use cloister_xtask::stage::{Clock, human, quiet};
use cloister_xtask::web;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The quick tier only, without the set-up step (what plain `cargo test` runs).
    #[arg(long)]
    quick: bool,
    /// Arguments passed on to `cargo nextest run` (after `--`), e.g. `-E 'test(boot)'`.
    #[arg(last = true)]
    nextest: Vec<String>,
}

pub fn run(args: &Args) -> Result<ExitCode> {
    let clock = Clock::new();
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned()));
    cmd.args(["nextest", "run", "--workspace", "--locked"]);
    if quiet() {
        cmd.arg("--cargo-quiet");
    }
    if args.quick {
        clock.line("test: the quick tier (no set-up; the full tier's tests are left out)");
    } else {
        let ready = setup::run(&Plan::for_tests(), &clock)?;
        if let Some(fw) = ready.firmware {
            // The TDX calculator's real-firmware test reads the IntelTdx image from here.
            cmd.env("CLOISTER_INTELTDX_FW", fw.inteltdx);
        }
        // The browser test serves the page built here.
        let page = web::build(&web::default_out(), &clock)?;
        cmd.env("CLOISTER_WEB_DIR", page.dir);
        cmd.args(["--run-ignored", "all"]);
        clock.line("test: both tiers (cargo nextest run --workspace --locked --run-ignored all)");
    }
    cmd.args(&args.nextest);
    let status = cmd.status().context("running cargo nextest")?;
    clock.line(&format!(
        "test: {} after {}",
        if status.success() { "passed" } else { "FAILED" },
        human(clock.elapsed())
    ));
    Ok(if status.success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
