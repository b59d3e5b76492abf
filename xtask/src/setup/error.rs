//! Why the set-up step stopped: one variant per reason, each naming the command that fixes it.

use cloister_guest_image::ImageError;

/// A set-up failure. Every message ends with what to type to get past it.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// Debian packages are missing and this process may not install them.
    #[error(
        "the Debian packages {packages} are missing and installing them needs root: run \
         `sudo apt-get install -y --no-install-recommends {packages}`, or run this command as root"
    )]
    NotRoot {
        /// Space-separated package names.
        packages: String,
    },
    /// `apt-get update` failed (no network to the Debian mirror, or a broken source list).
    #[error(
        "refreshing Debian's package index failed ({detail}): check the network to the Debian \
         mirror and /etc/apt/sources.list, then run `apt-get update` and this command again"
    )]
    IndexUpdate {
        /// The end of apt-get's output.
        detail: String,
    },
    /// A package is unknown to apt even after refreshing the index.
    #[error(
        "apt knows no package {package} even after `apt-get update`: the configured sources \
         lack Debian's main component (see /etc/apt/sources.list), or this is not Debian 12"
    )]
    UnknownPackage {
        /// The package.
        package: String,
    },
    /// `apt-get install` failed.
    #[error("`{command}` failed ({detail}): run it by hand to see why, then this command again")]
    AptInstall {
        /// The command that failed.
        command: String,
        /// The end of its output.
        detail: String,
    },
    /// A package was installed but the command it brings is still not found.
    #[error("{package} is installed but `{tool}` is not on PATH: run `dpkg -L {package}`")]
    ToolStillMissing {
        /// The package.
        package: String,
        /// The command looked for.
        tool: String,
    },
    /// The Rust toolchain manager is missing (the musl target and components need it).
    #[error(
        "rustup is not on PATH: {what} needs it; install the toolchain with rustup, or run \
         `rustup {args}` where rustup is"
    )]
    NoRustup {
        /// What needed it.
        what: String,
        /// The rustup arguments that would do it.
        args: String,
    },
    /// A `rustup` or `cargo install` command failed.
    #[error(
        "`{command}` failed ({detail}): check the network to the crate registry and rustup's \
         distribution server, then run `{command}` and this command again"
    )]
    Toolchain {
        /// The command that failed.
        command: String,
        /// The end of its output.
        detail: String,
    },
    /// A pinned artifact (firmware, kernel, model weights, reference tool) could not be had.
    #[error("{what}: {source}\n  to retry this step alone: `{fix}`")]
    Artifact {
        /// Which artifact.
        what: String,
        /// The command that retries it.
        fix: String,
        /// What went wrong.
        #[source]
        source: Box<ImageError>,
    },
    /// Running a command failed before it could say anything.
    #[error("could not run `{command}`: {source}")]
    Spawn {
        /// The command.
        command: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// The last `n` non-empty lines of a command's output, on one line.
pub(crate) fn last_lines(output: &[u8], n: usize) -> String {
    let text = String::from_utf8_lossy(output);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = lines[lines.len().saturating_sub(n)..].join(" | ");
    if tail.is_empty() {
        "no output".to_owned()
    } else {
        tail
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_message_names_the_command_that_fixes_it() {
        let not_root = SetupError::NotRoot {
            packages: "nasm quilt".into(),
        };
        assert!(
            not_root
                .to_string()
                .contains("sudo apt-get install -y --no-install-recommends nasm quilt")
        );
        let index = SetupError::IndexUpdate {
            detail: "Temporary failure resolving".into(),
        };
        assert!(index.to_string().contains("run `apt-get update`"));
        let tool = SetupError::Toolchain {
            command: "cargo install cargo-fuzz --version =0.13.2 --locked".into(),
            detail: "x".into(),
        };
        assert!(
            tool.to_string()
                .contains("run `cargo install cargo-fuzz --version =0.13.2 --locked`")
        );
    }

    #[test]
    fn the_tail_of_an_output_is_its_last_non_empty_lines() {
        assert_eq!(last_lines(b"a\n\nb\nc\n\n", 2), "b | c");
        assert_eq!(last_lines(b"", 3), "no output");
    }
}
