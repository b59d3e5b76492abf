//! `cargo xtask web [--out DIR]`: the set-up step's part for the browser verifier, then the page.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use cloister_xtask::setup::{self, Plan};
use cloister_xtask::stage::Clock;
use cloister_xtask::web;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Where to write the page (default: target/cloister-web).
    #[arg(long)]
    out: Option<PathBuf>,
}

pub fn run(args: &Args) -> Result<ExitCode> {
    let clock = Clock::new();
    setup::run(&Plan::for_web(), &clock)?;
    let out = args.out.clone().unwrap_or_else(web::default_out);
    let built = web::build(&out, &clock)?;
    println!("{}", built.dir.display());
    Ok(ExitCode::SUCCESS)
}
