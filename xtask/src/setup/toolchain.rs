//! The Rust side: rustup targets and components, and cargo-installed tools pinned by version.

use std::process::Command;

use cloister_guest_image::run::{Progress, on_path, run_logged};

use super::Report;
use super::error::{SetupError, last_lines};

/// A rustup target or component.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rustup {
    /// `rustup target add NAME`.
    Target(&'static str, &'static str),
    /// `rustup component add NAME`.
    Component(&'static str, &'static str),
}

impl Rustup {
    fn kind(self) -> &'static str {
        match self {
            Rustup::Target(..) => "target",
            Rustup::Component(..) => "component",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Rustup::Target(n, _) | Rustup::Component(n, _) => n,
        }
    }

    fn for_what(self) -> &'static str {
        match self {
            Rustup::Target(_, w) | Rustup::Component(_, w) => w,
        }
    }
}

/// A tool installed with `cargo install NAME --version =VERSION --locked`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CargoTool {
    /// The crate.
    pub krate: &'static str,
    /// The pinned version installed when it is absent.
    pub version: &'static str,
    /// How to ask an installed one for its version (`vhost-device-vsock --version`).
    pub probe: &'static [&'static str],
    /// What needs it.
    pub for_what: &'static str,
    /// Whether the crate's own lockfile is used; `Unlocked` names why it cannot be.
    pub lock: Lock,
    /// Whether another installed version is replaced (a generator whose output must match a
    /// crate's version) or accepted (a runner).
    pub exact: bool,
}

/// How a tool's dependencies are resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lock {
    /// `--locked`: the crate's published lockfile.
    Locked,
    /// The newest compatible dependencies, for this reason (the pinned version stays exact).
    Unlocked(&'static str),
}

impl CargoTool {
    /// The command that installs the pinned version.
    pub fn install_command(&self) -> String {
        let locked = match self.lock {
            Lock::Locked => " --locked",
            Lock::Unlocked(_) => "",
        };
        format!(
            "cargo install {} --version ={}{locked}",
            self.krate, self.version
        )
    }

    /// The installed tool's first version line, if it answers.
    fn installed_version(&self) -> Option<String> {
        let (program, args) = self.probe.split_first()?;
        let out = Command::new(program).args(args).output().ok()?;
        if !out.status.success() {
            return None;
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let first = text.lines().next()?.trim();
        Some(version_word(first).to_owned())
    }
}

/// `0.9.143` from `cargo-nextest 0.9.143 (60fa45f63 2026-08-04)`; the whole line otherwise.
fn version_word(line: &str) -> &str {
    line.split_whitespace()
        .nth(1)
        .filter(|v| v.starts_with(|c: char| c.is_ascii_digit()))
        .unwrap_or(line)
}

fn rustup_list(what: &str) -> Result<Vec<String>, SetupError> {
    if !on_path("rustup") {
        return Err(SetupError::NoRustup {
            what: format!("listing installed {what}s"),
            args: format!("{what} list --installed"),
        });
    }
    let out = Command::new("rustup")
        .args([what, "list", "--installed"])
        .output()
        .map_err(|source| SetupError::Spawn {
            command: format!("rustup {what} list --installed"),
            source,
        })?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim().to_owned())
        .collect())
}

/// Finds every target and component, adding the missing ones.
pub fn ensure_rustup(items: &[Rustup], report: &Report) -> Result<(), SetupError> {
    if items.is_empty() {
        return Ok(());
    }
    let targets = rustup_list("target")?;
    let components = rustup_list("component")?;
    for item in items {
        let have = match item {
            Rustup::Target(n, _) => targets.iter().any(|t| t == n),
            // Components are listed as `clippy-x86_64-unknown-linux-gnu`.
            Rustup::Component(n, _) => components
                .iter()
                .any(|c| c == n || c.strip_prefix(n).is_some_and(|r| r.starts_with('-'))),
        };
        if have {
            report.found(
                item.name(),
                &format!("rustup {}", item.kind()),
                item.for_what(),
            );
            continue;
        }
        let command = format!("rustup {} add {}", item.kind(), item.name());
        report.note(&format!("adding {} ({command})", item.name()));
        let out = Command::new("rustup")
            .args([item.kind(), "add", item.name()])
            .output()
            .map_err(|source| SetupError::Spawn {
                command: command.clone(),
                source,
            })?;
        if !out.status.success() {
            return Err(SetupError::Toolchain {
                command,
                detail: last_lines(&out.stderr, 2),
            });
        }
        report.installed(
            item.name(),
            &format!("rustup {}", item.kind()),
            item.for_what(),
        );
    }
    Ok(())
}

/// Finds every tool, installing the pinned version of the missing ones.
pub fn ensure_cargo_tools(tools: &[CargoTool], report: &Report) -> Result<(), SetupError> {
    for tool in tools {
        match tool.installed_version() {
            Some(v) if !tool.exact || v == tool.version => {
                report.found(tool.krate, &v, tool.for_what);
                continue;
            }
            Some(v) => report.note(&format!(
                "{} {v} is installed; {} needs exactly {}",
                tool.krate, tool.for_what, tool.version
            )),
            None => {}
        }
        let command = tool.install_command();
        report.note(&format!("installing {} ({command})", tool.krate));
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let mut cmd = Command::new(cargo);
        cmd.args(["install", tool.krate, "--version"])
            .arg(format!("={}", tool.version));
        if tool.lock == Lock::Locked {
            cmd.arg("--locked");
        }
        // A tool's own build must not inherit this workspace's target directory.
        cmd.env_remove("CARGO_TARGET_DIR");
        let log = report
            .log_dir()?
            .join(format!("cargo-install-{}.log", tool.krate));
        let progress = Progress::new(&format!("cargo install {}", tool.krate));
        run_logged(cmd, &log, &progress).map_err(|e| SetupError::Toolchain {
            command: command.clone(),
            detail: format!("{e}"),
        })?;
        progress.finish("installed");
        match tool.installed_version() {
            Some(v) => report.installed(tool.krate, &v, tool.for_what),
            None => {
                return Err(SetupError::Toolchain {
                    command,
                    detail: format!(
                        "installed, but `{}` does not answer: is cargo's bin directory \
                         (CARGO_HOME/bin, ~/.cargo/bin) on PATH?",
                        tool.probe.join(" ")
                    ),
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pinned_tool_installs_its_exact_version_from_the_lockfile() {
        let t = CargoTool {
            krate: "vhost-device-vsock",
            version: "0.3.0",
            probe: &["vhost-device-vsock", "--version"],
            for_what: "t",
            lock: Lock::Locked,
            exact: false,
        };
        assert_eq!(
            t.install_command(),
            "cargo install vhost-device-vsock --version =0.3.0 --locked"
        );
        let unlocked = CargoTool {
            lock: Lock::Unlocked("why"),
            ..t
        };
        assert_eq!(
            unlocked.install_command(),
            "cargo install vhost-device-vsock --version =0.3.0"
        );
    }

    #[test]
    fn the_version_is_the_word_after_the_name() {
        assert_eq!(
            version_word("cargo-nextest 0.9.143 (60fa45f63 2026-08-04)"),
            "0.9.143"
        );
        assert_eq!(version_word("vhost-device-vsock 0.3.0"), "0.3.0");
        assert_eq!(version_word("something else"), "something else");
    }

    #[test]
    fn a_tool_that_is_not_there_has_no_version() {
        let t = CargoTool {
            krate: "x",
            version: "1.0.0",
            probe: &["no-such-tool-cloister-4f2a", "--version"],
            for_what: "t",
            lock: Lock::Locked,
            exact: true,
        };
        assert_eq!(t.installed_version(), None);
    }
}
