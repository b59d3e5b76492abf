//! Installs what a launch needs when it is missing: QEMU and the weights disk's builders
//! (Debian packages) and vhost-device-vsock (crates.io), printing what it does.

use std::process::Command;

use anyhow::{Context, Result, bail};

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(tool).is_file()))
}

/// The Debian packages a launch needs, by a command each one brings.
const DEBIAN_TOOLS: [(&str, &str); 3] = [
    ("qemu-system-x86_64", "qemu-system-x86"),
    ("mkfs.erofs", "erofs-utils"),
    ("veritysetup", "cryptsetup-bin"),
];

/// QEMU, mkfs.erofs, veritysetup and vhost-device-vsock, installed if absent.
pub fn ensure_launch_tools() -> Result<()> {
    let missing: Vec<&str> = DEBIAN_TOOLS
        .iter()
        .filter(|(tool, _)| !on_path(tool))
        .map(|(_, package)| *package)
        .collect();
    if !missing.is_empty() {
        let list = missing.join(" ");
        eprintln!("[setup] installing {list} (Debian)");
        let update = Command::new("apt-get").args(["update", "-qq"]).status();
        let status = Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .context("running apt-get")?;
        if update.is_err() || !status.success() {
            bail!("could not install {list}: run `apt-get install {list}` as root");
        }
    }
    if !on_path("vhost-device-vsock") {
        eprintln!(
            "[setup] installing vhost-device-vsock (cargo install --locked, about 2 minutes)"
        );
        let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned()))
            .args(["install", "vhost-device-vsock", "--locked"])
            .status()
            .context("running cargo install")?;
        if !status.success() {
            bail!("`cargo install vhost-device-vsock --locked` failed");
        }
    }
    Ok(())
}
