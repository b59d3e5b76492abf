//! `cargo xtask peer sev-snp-measure|llama-cpp-python`: install a pinned reference tool, print
//! its path.

use std::process::ExitCode;

use anyhow::{Result, bail};
use cloister_guest_image::peers;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Which peer (`sev-snp-measure`, `llama-cpp-python`).
    name: String,
}

pub fn run(args: &Args) -> Result<ExitCode> {
    match args.name.as_str() {
        "sev-snp-measure" => {
            let bin = peers::ensure_sev_snp_measure(&cloister_guest_image::cache_root())?;
            println!("{}", bin.display());
            Ok(ExitCode::SUCCESS)
        }
        "llama-cpp-python" => {
            let python = peers::ensure_llama_cpp_python(&cloister_guest_image::cache_root())?;
            println!("{}", python.display());
            Ok(ExitCode::SUCCESS)
        }
        other => bail!("unknown peer {other:?} (known: sev-snp-measure, llama-cpp-python)"),
    }
}
