//! `cargo xtask model [NAME…] [--json]`: fetch, assemble and check the pinned model weights.

use std::process::ExitCode;

use anyhow::{Result, bail};
use cloister_guest_image::model::{self, MODELS};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Models to fetch (default: all pinned ones).
    names: Vec<String>,
    /// End with one JSON object.
    #[arg(long)]
    json: bool,
}

pub fn run(args: &Args) -> Result<ExitCode> {
    let cache = cloister_guest_image::cache_root();
    let chosen: Vec<_> = if args.names.is_empty() {
        MODELS.to_vec()
    } else {
        args.names
            .iter()
            .map(|n| match model::by_name(n) {
                Some(m) => Ok(m),
                None => {
                    let known: Vec<_> = MODELS.iter().map(|m| m.name).collect();
                    bail!("unknown model {n:?} (pinned: {})", known.join(", "))
                }
            })
            .collect::<Result<_>>()?
    };
    let mut obj = serde_json::Map::new();
    for m in chosen {
        let dir = model::ensure(&cache, &m)?;
        for f in m.files {
            println!(
                "{:<40} {}  {}",
                m.name,
                f.sha256,
                dir.join(f.name).display()
            );
        }
        obj.insert(m.name.into(), dir.display().to_string().into());
    }
    if args.json {
        println!("{}", serde_json::Value::Object(obj));
    }
    Ok(ExitCode::SUCCESS)
}
