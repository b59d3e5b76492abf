//! Running long external steps: output to a log file, a spinner (or plain lines in CI), and
//! the log's tail in the error when a step fails.

use std::io::IsTerminal as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use crate::error::ImageError;

/// Progress of one long task: an `indicatif` spinner on a terminal, plain lines elsewhere.
#[derive(Debug)]
pub struct Progress {
    bar: Option<ProgressBar>,
    label: String,
    started: Instant,
    last_plain: std::cell::Cell<Option<Instant>>,
}

impl Progress {
    /// Starts reporting a task.
    pub fn new(label: &str) -> Self {
        let interactive = std::io::stderr().is_terminal() && std::env::var_os("CI").is_none();
        let bar = interactive.then(|| {
            let b = ProgressBar::new_spinner();
            b.set_style(
                ProgressStyle::with_template("{spinner} [{elapsed_precise}] {prefix}: {wide_msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            b.set_prefix(label.to_owned());
            b.enable_steady_tick(Duration::from_millis(200));
            b
        });
        if bar.is_none() {
            eprintln!("[{label}] started");
        }
        Progress {
            bar,
            label: label.to_owned(),
            started: Instant::now(),
            last_plain: std::cell::Cell::new(None),
        }
    }

    /// A new stage of the task (always shown).
    pub fn stage(&self, msg: &str) {
        match &self.bar {
            Some(b) => b.set_message(msg.to_owned()),
            None => eprintln!("[{}] {msg}", self.label),
        }
    }

    /// A detail (shown on a terminal; in CI at most every 30 s), cut to one short line.
    pub fn tick(&self, msg: &str) {
        let msg = &short(msg);
        match &self.bar {
            Some(b) => b.set_message(msg.to_owned()),
            None => {
                let due = self
                    .last_plain
                    .get()
                    .is_none_or(|t| t.elapsed() >= Duration::from_secs(30));
                if due {
                    self.last_plain.set(Some(Instant::now()));
                    eprintln!(
                        "[{}] {:>4} s: {}",
                        self.label,
                        self.started.elapsed().as_secs(),
                        msg
                    );
                }
            }
        }
    }

    /// The task is over.
    pub fn finish(&self, msg: &str) {
        match &self.bar {
            Some(b) => b.finish_with_message(msg.to_owned()),
            None => eprintln!(
                "[{}] {msg} ({} s)",
                self.label,
                self.started.elapsed().as_secs()
            ),
        }
    }
}

/// At most [`TICK_CHARS`] characters of `msg`, with `…` when cut (a compiler's command line
/// can be kilobytes).
fn short(msg: &str) -> String {
    match msg.char_indices().nth(TICK_CHARS) {
        Some((at, _)) => format!("{}…", &msg[..at]),
        None => msg.to_owned(),
    }
}

/// How much of a log line a progress tick shows.
const TICK_CHARS: usize = 100;

fn tail(log: &Path, lines: usize) -> String {
    let text = std::fs::read(log).unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Runs `cmd` with its output in `log`, reporting the log's last line as progress.
pub fn run_logged(mut cmd: Command, log: &Path, progress: &Progress) -> Result<(), ImageError> {
    let file = std::fs::File::create(log).map_err(ImageError::io("creating", log))?;
    let err = file.try_clone().map_err(ImageError::io("opening", log))?;
    let description = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(file)
        .stderr(err)
        .spawn()
        .map_err(ImageError::io("starting", description.clone()))?;
    let status = loop {
        if let Some(status) = child
            .try_wait()
            .map_err(ImageError::io("waiting for", log))?
        {
            break status;
        }
        let last = tail(log, 1);
        if !last.is_empty() {
            progress.tick(last.trim());
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    if status.success() {
        Ok(())
    } else {
        Err(ImageError::CommandFailed {
            command: description,
            status: status.to_string(),
            log: log.to_owned(),
            tail: tail(log, 25),
        })
    }
}

/// Whether `tool` is an executable file in a `PATH` directory.
pub fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(tool).is_file()))
}

/// Fails with the Debian package that brings `tool` when it is not on `PATH`.
pub fn require_tool(tool: &'static str, package: &'static str) -> Result<(), ImageError> {
    if on_path(tool) {
        Ok(())
    } else {
        Err(ImageError::MissingTool { tool, package })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_line_is_cut_on_a_character_boundary() {
        assert_eq!(short("gcc -c x.c"), "gcc -c x.c");
        let long = "é".repeat(300);
        let cut = short(&long);
        assert_eq!(cut.chars().count(), TICK_CHARS + 1);
        assert!(cut.ends_with('…'));
    }
}
