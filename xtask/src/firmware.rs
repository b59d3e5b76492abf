//! `cargo xtask firmware [--rebuild] [--print-path] [--json]`

use std::process::ExitCode;

use anyhow::Result;
use cloister_guest_image::firmware::{self, Platform};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Build even when the cache holds the pinned firmware (CI does, to prove the pins).
    #[arg(long)]
    rebuild: bool,
    /// Print each image's path, one per line as `amdsev PATH` and `inteltdx PATH`.
    #[arg(long)]
    print_path: bool,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

pub fn run(args: &Args) -> Result<ExitCode> {
    let cache = cloister_guest_image::cache_root();
    if args.rebuild || firmware::cached(&cache).is_none() {
        let plan = cloister_xtask::setup::Plan::for_firmware();
        cloister_xtask::setup::run(&plan, &cloister_xtask::stage::Clock::new())?;
    }
    let built = firmware::ensure(&cache, args.rebuild)?;
    if args.json {
        let mut obj = serde_json::Map::new();
        obj.insert("edk2_version".into(), firmware::EDK2.version.into());
        for p in Platform::ALL {
            obj.insert(
                p.name().into(),
                serde_json::json!({
                    "path": built.path(p).display().to_string(),
                    "sha256": p.pinned_sha256(),
                }),
            );
        }
        println!("{}", serde_json::Value::Object(obj));
    } else if args.print_path {
        for p in Platform::ALL {
            println!("{} {}", p.name(), built.path(p).display());
        }
    } else {
        for p in Platform::ALL {
            println!(
                "{:<9} {}  {}",
                p.name(),
                p.pinned_sha256(),
                built.path(p).display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
