//! Debian packages: found with `dpkg-query`, installed in one `apt-get install` when missing
//! (after `apt-get update` when the index does not know them yet).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use cloister_guest_image::run::{Progress, on_path, run_logged};

use super::Report;
use super::error::{SetupError, last_lines};

/// A Debian package and what proves it works once installed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Package {
    /// The package name.
    pub name: &'static str,
    /// A command on PATH (`nasm`) or an absolute file (`/usr/include/uuid/uuid.h`) it brings.
    pub gives: &'static str,
    /// What needs it, for the report.
    pub for_what: &'static str,
}

impl Package {
    fn present(&self) -> bool {
        if self.gives.starts_with('/') {
            Path::new(self.gives).exists()
        } else {
            on_path(self.gives)
        }
    }
}

/// Whether this process runs as root (effective uid 0, from `/proc/self/status`).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|ids| ids.split_whitespace().nth(1).map(|e| e == "0"))
            .unwrap_or(false)
    })
}

/// Installed version of each of `names` that dpkg lists as installed.
fn installed(names: &[&str]) -> Result<BTreeMap<String, String>, SetupError> {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f=${Package}\t${db:Status-Status}\t${Version}\n"])
        .args(names)
        .output()
        .map_err(|source| SetupError::Spawn {
            command: "dpkg-query".into(),
            source,
        })?;
    // dpkg-query exits 1 when a name is unknown to it; the known ones are still printed.
    Ok(parse_dpkg_query(&String::from_utf8_lossy(&out.stdout)))
}

fn parse_dpkg_query(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split('\t');
            let (name, status, version) = (f.next()?, f.next()?, f.next()?);
            // `name:arch` for multi-arch packages.
            let name = name.split(':').next().unwrap_or(name);
            (status == "installed").then(|| (name.to_owned(), version.to_owned()))
        })
        .collect()
}

/// The candidate version apt would install for each of `names` (absent: apt knows none).
fn candidates(names: &[&str]) -> Result<BTreeMap<String, String>, SetupError> {
    let out = Command::new("apt-cache")
        .arg("policy")
        .args(names)
        .output()
        .map_err(|source| SetupError::Spawn {
            command: "apt-cache policy".into(),
            source,
        })?;
    Ok(parse_policy(&String::from_utf8_lossy(&out.stdout)))
}

fn parse_policy(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        if !line.starts_with(' ') && line.ends_with(':') {
            current = Some(line.trim_end_matches(':').to_owned());
        } else if let (Some(name), Some(c)) = (&current, line.trim().strip_prefix("Candidate:")) {
            let c = c.trim();
            if c != "(none)" {
                out.insert(name.clone(), c.to_owned());
            }
        }
    }
    out
}

/// Finds every package of `packages`, installing the missing ones.
pub fn ensure(packages: &[Package], report: &Report) -> Result<(), SetupError> {
    let mut names: Vec<&str> = packages.iter().map(|p| p.name).collect();
    names.sort_unstable();
    names.dedup();
    let have = installed(&names)?;
    let missing: Vec<&str> = names
        .iter()
        .copied()
        .filter(|n| !have.contains_key(*n))
        .collect();
    for p in packages.iter().filter(|p| have.contains_key(p.name)) {
        report.found(p.name, &have[p.name], p.for_what);
    }
    if missing.is_empty() {
        return check_gives(packages);
    }
    if !is_root() {
        return Err(SetupError::NotRoot {
            packages: missing.join(" "),
        });
    }
    let known = candidates(&missing)?;
    if missing.iter().any(|n| !known.contains_key(*n)) {
        report.note("refreshing Debian's package index (apt-get update)");
        let out = Command::new("apt-get")
            .args(["update", "-q"])
            .output()
            .map_err(|source| SetupError::Spawn {
                command: "apt-get update".into(),
                source,
            })?;
        if !out.status.success() {
            let mut all = out.stdout;
            all.extend_from_slice(&out.stderr);
            return Err(SetupError::IndexUpdate {
                detail: last_lines(&all, 2),
            });
        }
        let known = candidates(&missing)?;
        if let Some(unknown) = missing.iter().find(|n| !known.contains_key(**n)) {
            return Err(SetupError::UnknownPackage {
                package: (*unknown).to_owned(),
            });
        }
    }
    let command = format!(
        "apt-get install -y --no-install-recommends {}",
        missing.join(" ")
    );
    report.note(&format!("installing {} (Debian)", missing.join(" ")));
    let logs = report.log_dir()?;
    let log = logs.join("apt-get-install.log");
    let mut cmd = Command::new("apt-get");
    cmd.args(["install", "-y", "-q", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive");
    let progress = Progress::new("apt-get install");
    run_logged(cmd, &log, &progress).map_err(|e| SetupError::AptInstall {
        command: command.clone(),
        detail: format!("{e}"),
    })?;
    progress.finish("installed");
    let now = installed(&missing)?;
    for p in packages.iter().filter(|p| missing.contains(&p.name)) {
        match now.get(p.name) {
            Some(v) => report.installed(p.name, v, p.for_what),
            None => {
                return Err(SetupError::AptInstall {
                    command,
                    detail: format!("{} is still not installed (see {})", p.name, log.display()),
                });
            }
        }
    }
    check_gives(packages)
}

fn check_gives(packages: &[Package]) -> Result<(), SetupError> {
    match packages.iter().find(|p| !p.present()) {
        Some(p) => Err(SetupError::ToolStillMissing {
            package: p.name.to_owned(),
            tool: p.gives.to_owned(),
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dpkg_query_lists_only_installed_packages_and_drops_the_architecture() {
        let text = "nasm\tinstalled\t2.16.01-1\nquilt\tnot-installed\t\n\
                    uuid-dev:amd64\tinstalled\t2.38.1-5+deb12u3\nredis-server\tconfig-files\t5:7\n";
        let got = parse_dpkg_query(text);
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(got["nasm"], "2.16.01-1");
        assert_eq!(got["uuid-dev"], "2.38.1-5+deb12u3");
    }

    #[test]
    fn apt_cache_policy_gives_candidates_and_none_for_an_empty_index() {
        let text = "qemu-system-x86:\n  Installed: (none)\n  Candidate: 1:7.2+dfsg-7+deb12u18+b2\n  \
                    Version table:\n     1:7.2+dfsg-7+deb12u18+b2 500\nnasm:\n  Installed: (none)\n  \
                    Candidate: (none)\n  Version table:\n";
        let got = parse_policy(text);
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got["qemu-system-x86"], "1:7.2+dfsg-7+deb12u18+b2");
    }

    #[test]
    fn a_package_is_present_by_its_command_or_its_file() {
        let file = Package {
            name: "x",
            gives: "/",
            for_what: "t",
        };
        assert!(file.present());
        let tool = Package {
            name: "x",
            gives: "no-such-tool-cloister-4f2a",
            for_what: "t",
        };
        assert!(!tool.present());
    }
}
