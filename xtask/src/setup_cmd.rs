//! `cargo xtask setup [--for run|test|checks|all] [--model NAME] [--rebuild-firmware]`.

use std::process::ExitCode;

use anyhow::Result;
use cloister_xtask::setup::{self, Plan, Purpose};
use cloister_xtask::stage::Clock;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Which commands to prepare for (`all`: the run, the full test tier and CI's checks).
    #[arg(long = "for", value_enum, default_value = "all")]
    purpose: Purpose,
    /// Also fetch this pinned model (for `cargo xtask run --model NAME`).
    #[arg(long)]
    model: Option<String>,
    /// Build the firmware from Debian's edk2 source even when it is cached, and compare it with
    /// the pinned sha256 (CI does, to prove the pins).
    #[arg(long)]
    rebuild_firmware: bool,
}

pub fn run(args: &Args) -> Result<ExitCode> {
    let mut plan = Plan::for_purpose(args.purpose);
    if let Some(m) = &args.model {
        plan = plan.with(Plan::for_run(m)?);
    }
    if args.rebuild_firmware {
        plan = plan.rebuilding_firmware();
    }
    setup::run(&plan, &Clock::new())?;
    Ok(ExitCode::SUCCESS)
}
