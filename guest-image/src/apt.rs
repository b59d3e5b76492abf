//! A private apt context: Debian sources derived from the machine's own apt configuration,
//! with its own source list and package lists, so the system's configuration is never changed
//! and no mirror host is ever written into the repository.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::ImageError;
use crate::run::{Progress, run_logged};

/// A Debian archive as the machine's apt configuration names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mirror {
    /// The main archive (`…/debian`).
    pub archive: String,
    /// The security archive (`…/debian-security`), when configured.
    pub security: Option<String>,
}

/// Reads the configured Debian mirrors from `/etc/apt/sources.list` and
/// `/etc/apt/sources.list.d/*.{list,sources}`.
pub fn configured_mirror() -> Result<Mirror, ImageError> {
    let mut texts = Vec::new();
    let main = Path::new("/etc/apt/sources.list");
    if let Ok(t) = std::fs::read_to_string(main) {
        texts.push((false, t));
    }
    if let Ok(dir) = std::fs::read_dir("/etc/apt/sources.list.d") {
        let mut paths: Vec<PathBuf> = dir.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        for p in paths {
            let deb822 = p.extension().is_some_and(|e| e == "sources");
            let oneline = p.extension().is_some_and(|e| e == "list");
            if (deb822 || oneline)
                && let Ok(t) = std::fs::read_to_string(&p)
            {
                texts.push((deb822, t));
            }
        }
    }
    mirror_from(&texts)
}

/// (URI, suites) of every `deb` source in the texts.
fn entries(texts: &[(bool, String)]) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    for (deb822, text) in texts {
        if *deb822 {
            for stanza in text.split("\n\n") {
                let field = |name: &str| {
                    stanza.lines().find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        (k.trim().eq_ignore_ascii_case(name)).then(|| v.trim().to_owned())
                    })
                };
                let enabled = field("Enabled").is_none_or(|v| v != "no");
                let is_deb =
                    field("Types").is_some_and(|t| t.split_whitespace().any(|t| t == "deb"));
                if let (true, true, Some(uris), Some(suites)) =
                    (enabled, is_deb, field("URIs"), field("Suites"))
                {
                    let suites: Vec<String> =
                        suites.split_whitespace().map(str::to_owned).collect();
                    for uri in uris.split_whitespace() {
                        out.push((uri.to_owned(), suites.clone()));
                    }
                }
            }
        } else {
            for line in text.lines() {
                let mut words = line
                    .split_whitespace()
                    .filter(|w| !w.starts_with('['))
                    .peekable();
                if words.next() != Some("deb") {
                    continue;
                }
                if let (Some(uri), Some(suite)) = (words.next(), words.next()) {
                    out.push((uri.to_owned(), vec![suite.to_owned()]));
                }
            }
        }
    }
    out
}

fn mirror_from(texts: &[(bool, String)]) -> Result<Mirror, ImageError> {
    const CODENAMES: [&str; 5] = ["bullseye", "bookworm", "trixie", "forky", "sid"];
    let debian = |suite: &str| CODENAMES.iter().any(|c| suite.starts_with(c));
    let all = entries(texts);
    let archive = all
        .iter()
        .find(|(uri, suites)| {
            !uri.contains("security")
                && suites
                    .iter()
                    .any(|s| debian(s) && !s.ends_with("-security"))
        })
        .map(|(uri, _)| uri.trim_end_matches('/').to_owned())
        .ok_or_else(|| ImageError::NoMirror(format!("{} deb sources read", all.len())))?;
    let security = all
        .iter()
        .find(|(_, suites)| suites.iter().any(|s| debian(s) && s.ends_with("-security")))
        .map(|(uri, _)| uri.trim_end_matches('/').to_owned());
    Ok(Mirror { archive, security })
}

/// One source stanza of the private apt context.
#[derive(Debug, Clone)]
pub struct Source {
    /// `deb` or `deb-src`.
    pub kind: &'static str,
    /// Archive URI.
    pub uri: String,
    /// Suites.
    pub suites: Vec<String>,
}

/// apt-get and apt-cache run against private sources and lists.
#[derive(Debug)]
pub struct PrivateApt {
    root: PathBuf,
}

impl PrivateApt {
    /// Writes the sources under `root` and downloads their package lists.
    pub fn new(root: &Path, sources: &[Source], progress: &Progress) -> Result<Self, ImageError> {
        let parts = root.join("sources.list.d");
        let lists = root.join("lists").join("partial");
        for d in [&parts, &lists] {
            std::fs::create_dir_all(d).map_err(ImageError::io("creating", d))?;
        }
        let text: String = sources
            .iter()
            .map(|s| {
                format!(
                    "Types: {}\nURIs: {}\nSuites: {}\nComponents: main\n\
                     Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n",
                    s.kind,
                    s.uri,
                    s.suites.join(" ")
                )
            })
            .collect();
        let file = parts.join("cloister.sources");
        std::fs::write(&file, text).map_err(ImageError::io("writing", &file))?;
        let apt = PrivateApt {
            root: root.to_owned(),
        };
        let mut cmd = apt.command("apt-get");
        cmd.arg("update");
        run_logged(cmd, &root.join("apt-update.log"), progress)?;
        Ok(apt)
    }

    /// A command with the private configuration.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        let parts = self.root.join("sources.list.d");
        let lists = self.root.join("lists");
        c.arg("-o")
            .arg("Dir::Etc::SourceList=/dev/null")
            .arg("-o")
            .arg(format!("Dir::Etc::SourceParts={}", parts.display()))
            .arg("-o")
            .arg(format!("Dir::State::Lists={}", lists.display()))
            .arg("-o")
            .arg("APT::Sandbox::User=root");
        c
    }

    /// The `Checksums-Sha256` entries (sha256, file name) of a source package version.
    pub fn source_sha256s(
        &self,
        package: &str,
        version: &str,
    ) -> Result<Vec<(String, String)>, ImageError> {
        let mut cmd = self.command("apt-cache");
        cmd.arg("showsrc").arg(package);
        let out = cmd
            .output()
            .map_err(ImageError::io("running apt-cache for", package))?;
        let text = String::from_utf8_lossy(&out.stdout);
        let mut found = Vec::new();
        let mut in_version = false;
        let mut in_sums = false;
        for line in text.lines() {
            if let Some(v) = line.strip_prefix("Version:") {
                in_version = v.trim() == version;
                in_sums = false;
            } else if line.starts_with("Checksums-Sha256:") {
                in_sums = in_version;
            } else if !line.starts_with(' ') {
                in_sums = false;
            } else if in_sums {
                let w: Vec<&str> = line.split_whitespace().collect();
                if let [sha, _size, name] = w[..] {
                    found.push((sha.to_owned(), name.to_owned()));
                }
            }
        }
        if found.is_empty() {
            return Err(ImageError::VersionNotListed {
                package: package.to_owned(),
                version: version.to_owned(),
                detail: "no Checksums-Sha256 for that version in the source index".to_owned(),
            });
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_deb822_and_one_line_sources() {
        let deb822 = "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\nComponents: main\n\n\
                      Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\nComponents: main\n";
        let m = mirror_from(&[(true, deb822.to_owned())]).expect("mirror");
        assert_eq!(m.archive, "http://mirror.example/debian");
        assert_eq!(
            m.security.as_deref(),
            Some("http://mirror.example/debian-security")
        );

        let oneline = "# comment\ndeb [arch=amd64] http://other.example/debian/ trixie main\n";
        let m = mirror_from(&[(false, oneline.to_owned())]).expect("mirror");
        assert_eq!(m.archive, "http://other.example/debian");
        assert_eq!(m.security, None);
    }

    #[test]
    fn ignores_disabled_and_foreign_sources() {
        let text = "Types: deb\nURIs: http://x.example/debian\nSuites: bookworm\nEnabled: no\n\n\
                    Types: deb\nURIs: https://vendor.example/apt\nSuites: nodistro\n";
        assert!(matches!(
            mirror_from(&[(true, text.to_owned())]),
            Err(ImageError::NoMirror(_))
        ));
    }
}
