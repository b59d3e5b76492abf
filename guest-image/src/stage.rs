//! What a long command prints as it goes, so that no minute passes in silence: one line per
//! stage with the time since the command started, and, for a stage still running after
//! [`HEARTBEAT_AFTER`], a heartbeat naming what it is doing — an `indicatif` spinner on a
//! terminal, a plain line every [`PLAIN_EVERY`] elsewhere (CI logs). `--quiet` turns all of it
//! off, leaving the command's results.

use std::io::IsTerminal as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// A stage that has run this long starts its heartbeat.
pub const HEARTBEAT_AFTER: Duration = Duration::from_secs(15);
/// Off a terminal, a running stage prints a line this often after the first.
pub const PLAIN_EVERY: Duration = Duration::from_secs(30);

static QUIET: AtomicBool = AtomicBool::new(false);

/// Sets quiet mode for this process (`cargo xtask --quiet …`).
pub fn set_quiet(quiet: bool) {
    QUIET.store(quiet, Ordering::Relaxed);
}

/// Whether quiet mode is on.
pub fn quiet() -> bool {
    QUIET.load(Ordering::Relaxed)
}

/// `1m05s`, `12.3s`.
pub fn human(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 60.0 {
        format!("{s:.1}s")
    } else {
        let whole = d.as_secs();
        format!("{}m{:02}s", whole / 60, whole % 60)
    }
}

/// A command's clock: every stage line gives the time since it started.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    started: Instant,
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

impl Clock {
    /// Starts the clock now.
    pub fn new() -> Self {
        Clock {
            started: Instant::now(),
        }
    }

    /// Time since the command started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Prints one line for this command (unless quiet): `[ 1m05s] what`.
    pub fn line(&self, what: &str) {
        if !quiet() {
            eprintln!("[{:>7}] {what}", human(self.elapsed()));
        }
    }

    /// Starts a stage without a heartbeat: for work that shows its own progress (cargo's
    /// builds, the firmware and model fetches' spinners).
    pub fn stage(&self, name: &'static str, doing: &str) -> Stage {
        self.line(&format!("{name}: {doing}"));
        Stage {
            clock: *self,
            name,
            started: Instant::now(),
            heartbeat: None,
            finished: false,
        }
    }

    /// Starts a stage with a heartbeat naming `doing`, for work that is silent while it runs
    /// (a boot, a request to the guest).
    pub fn watched(&self, name: &'static str, doing: &str) -> Stage {
        let mut stage = self.stage(name, doing);
        if !quiet() {
            stage.heartbeat = Some(Heartbeat::start(*self, name, doing));
        }
        stage
    }
}

/// One stage of a command; says how it ended when it is [`Stage::done`] or dropped.
#[derive(Debug)]
pub struct Stage {
    clock: Clock,
    name: &'static str,
    started: Instant,
    heartbeat: Option<Heartbeat>,
    finished: bool,
}

impl Stage {
    /// Changes what the heartbeat says the stage is doing.
    pub fn doing(&self, what: &str) {
        if let Some(h) = &self.heartbeat {
            h.set(what);
        }
    }

    /// The stage is over: `[ 2m10s] boot: done in 21.4s — READY …`.
    pub fn done(mut self, result: &str) {
        self.finish(&format!(
            "done in {} — {result}",
            human(self.started.elapsed())
        ));
    }

    fn finish(&mut self, how: &str) {
        if let Some(h) = self.heartbeat.take() {
            h.stop();
        }
        self.finished = true;
        self.clock.line(&format!("{}: {how}", self.name));
    }
}

impl Drop for Stage {
    fn drop(&mut self) {
        if !self.finished {
            let after = human(self.started.elapsed());
            self.finish(&format!("stopped after {after}"));
        }
    }
}

/// The thread behind a silent stage's heartbeat.
#[derive(Debug)]
struct Heartbeat {
    stop: Arc<AtomicBool>,
    doing: Arc<Mutex<String>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Heartbeat {
    fn start(clock: Clock, name: &'static str, doing: &str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let text = Arc::new(Mutex::new(doing.to_owned()));
        let started = Instant::now();
        let (stop2, text2) = (Arc::clone(&stop), Arc::clone(&text));
        let interactive = std::io::stderr().is_terminal() && std::env::var_os("CI").is_none();
        let thread = std::thread::spawn(move || {
            let current = || text2.lock().map(|t| t.clone()).unwrap_or_default();
            let mut bar: Option<ProgressBar> = None;
            let mut next_plain = HEARTBEAT_AFTER;
            while !stop2.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(200));
                let ran = started.elapsed();
                if ran < HEARTBEAT_AFTER {
                    continue;
                }
                if interactive {
                    let b = bar.get_or_insert_with(|| {
                        let b = ProgressBar::new_spinner();
                        b.set_style(
                            ProgressStyle::with_template("{spinner} {prefix}: {wide_msg}")
                                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                        );
                        b.set_prefix(name);
                        b.enable_steady_tick(Duration::from_millis(200));
                        b
                    });
                    b.set_message(format!("{} — {} so far", current(), human(ran)));
                } else if ran >= next_plain {
                    next_plain = ran + PLAIN_EVERY;
                    clock.line(&format!("{name}: {} — {} so far", current(), human(ran)));
                }
            }
            if let Some(b) = bar {
                b.finish_and_clear();
            }
        });
        Heartbeat {
            stop,
            doing: text,
            thread: Some(thread),
        }
    }

    fn set(&self, what: &str) {
        if let Ok(mut t) = self.doing.lock() {
            what.clone_into(&mut t);
        }
    }

    fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_seconds_then_minutes() {
        assert_eq!(human(Duration::from_millis(12_340)), "12.3s");
        assert_eq!(human(Duration::from_secs(65)), "1m05s");
        assert_eq!(human(Duration::from_secs(600)), "10m00s");
    }

    #[test]
    fn a_dropped_stage_stops_its_heartbeat() {
        let clock = Clock::new();
        let stage = clock.watched("test", "waiting");
        stage.doing("still waiting");
        // Joins the heartbeat's thread: a thread that missed its stop flag would hang here.
        drop(stage);
    }
}
