//! PID 1 duties inside the confidential VM.
//!
//! The guest has no shell, no writable persistent storage and no login: init mounts the pseudo
//! file systems, loads the kernel modules shipped in the (measured) initramfs, reaps orphans,
//! and on any fatal error prints one line on the console and powers the VM off — it never hangs
//! and never drops to a shell.

use std::path::Path;
use std::time::Duration;

use nix::errno::Errno;
use nix::kmod::{ModuleInitFlags, finit_module};
use nix::mount::{MsFlags, mount};
use nix::sys::reboot::{RebootMode, reboot};
use nix::sys::resource::{Resource, setrlimit};
use nix::sys::wait::waitpid;

/// Why init could not finish.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// A mount failed.
    #[error("mounting {fstype} on {target}: {errno}")]
    Mount {
        /// File system type.
        fstype: &'static str,
        /// Mount point.
        target: &'static str,
        /// Error.
        errno: Errno,
    },
    /// The module list could not be read.
    #[error("reading the module list {path}: {source}")]
    ModuleList {
        /// Path.
        path: String,
        /// OS error.
        source: std::io::Error,
    },
    /// A module could not be loaded.
    #[error("loading kernel module {name}: {reason}")]
    Module {
        /// Module name.
        name: String,
        /// Why.
        reason: String,
    },
    /// The kernel command line could not be read.
    #[error("reading /proc/cmdline: {0}")]
    Cmdline(std::io::Error),
}

fn mount_one(
    source: &'static str,
    target: &'static str,
    fstype: &'static str,
    flags: MsFlags,
    data: Option<&'static str>,
) -> Result<(), InitError> {
    let _ = std::fs::create_dir_all(target);
    match mount(Some(source), target, Some(fstype), flags, data) {
        Ok(()) | Err(Errno::EBUSY) => Ok(()),
        Err(errno) => Err(InitError::Mount {
            fstype,
            target,
            errno,
        }),
    }
}

/// Mounts /proc, /sys, /dev (devtmpfs; the kernel's DEVTMPFS_MOUNT is off) and a small /tmp.
pub fn mount_early() -> Result<(), InitError> {
    let hardened = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mount_one("proc", "/proc", "proc", hardened, None)?;
    mount_one("sysfs", "/sys", "sysfs", hardened, None)?;
    mount_one(
        "devtmpfs",
        "/dev",
        "devtmpfs",
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        None,
    )?;
    mount_one(
        "tmpfs",
        "/tmp",
        "tmpfs",
        hardened,
        Some("size=16m,mode=0700"),
    )
}

/// Mounts configfs (after its module is loaded), where configfs-tsm lives.
pub fn mount_configfs() -> Result<(), InitError> {
    let hardened = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mount_one("configfs", "/sys/kernel/config", "configfs", hardened, None)
}

/// No core dumps, and not dumpable (no ptrace attach by other processes of the same user,
/// `/proc/<pid>/mem` closed to them): a crashing or inspected process must not hand out keys
/// or request plaintext.
pub fn disable_core_dumps() {
    let _ = setrlimit(Resource::RLIMIT_CORE, 0, 0);
    let _ = nix::sys::prctl::set_dumpable(false);
}

/// Outcome of loading one module.
#[derive(Debug)]
pub struct ModuleLoad {
    /// Module name.
    pub name: String,
    /// `Ok(true)`: loaded; `Ok(false)`: not shipped or already loaded; `Err`: refused.
    pub result: Result<bool, String>,
}

/// Loads the modules named in `dir/order`, one per line, from `dir/NAME.ko`, in that order
/// (dependencies first). A platform module refused by the kernel (e.g. `tdx-guest` on an SNP
/// machine) is reported, not fatal: what the runtime really needs fails later, with its name.
pub fn load_modules(dir: &Path) -> Result<Vec<ModuleLoad>, InitError> {
    let order = dir.join("order");
    let list = std::fs::read_to_string(&order).map_err(|source| InitError::ModuleList {
        path: order.display().to_string(),
        source,
    })?;
    let mut out = Vec::new();
    for name in list
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let path = dir.join(format!("{name}.ko"));
        let result = match std::fs::File::open(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e.to_string()),
            Ok(f) => match finit_module(&f, c"", ModuleInitFlags::empty()) {
                Ok(()) => Ok(true),
                Err(Errno::EEXIST) => Ok(false),
                Err(e) => Err(e.desc().to_owned()),
            },
        };
        out.push(ModuleLoad {
            name: name.to_owned(),
            result,
        });
    }
    Ok(out)
}

/// Reaps orphaned children forever (PID 1 inherits every orphan).
pub fn spawn_reaper() {
    let _ = std::thread::Builder::new()
        .name("reaper".to_owned())
        .spawn(|| {
            loop {
                match waitpid(None, None) {
                    Ok(_) | Err(Errno::EINTR) => {}
                    Err(_) => std::thread::sleep(Duration::from_secs(1)),
                }
            }
        });
}

/// The kernel command line.
pub fn read_cmdline() -> Result<String, InitError> {
    std::fs::read_to_string("/proc/cmdline").map_err(InitError::Cmdline)
}

/// What a panic prints: where it happened and a fixed sentence, never its message. A panic's
/// message can quote what the panicking code held (a request's text, a header, a key's bytes),
/// and the console is the host's.
pub fn panic_line(location: Option<&std::panic::Location<'_>>) -> String {
    match location {
        Some(l) => format!(
            "cloister: FATAL: panic at {}:{}:{} (message withheld)",
            l.file(),
            l.line(),
            l.column()
        ),
        None => "cloister: FATAL: panic (location unknown, message withheld)".to_owned(),
    }
}

/// Replaces the default panic hook (which prints the panic's message) with one that prints
/// [`panic_line`] and then, in PID 1, powers the VM off at once — a guest whose thread
/// panicked holding request state does not limp on. Outside PID 1 (development mode) the
/// process aborts, so no unwinding code runs with the withheld message either.
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        eprintln!("{}", panic_line(info.location()));
        if std::process::id() == 1 {
            nix::unistd::sync();
            let _ = reboot(RebootMode::RB_POWER_OFF);
        }
        std::process::abort();
    }));
}

/// Prints one line on the console and powers the VM off. Never returns.
pub fn fatal(message: &str) -> ! {
    eprintln!("cloister: FATAL: {message}");
    nix::unistd::sync();
    let _ = reboot(RebootMode::RB_POWER_OFF);
    // Power-off failed (not PID 1?): stop the process instead of hanging.
    std::process::exit(70)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Set in the child process the test below starts.
    const CHILD: &str = "CLOISTER_PANIC_HOOK_CHILD";

    #[test]
    fn a_panic_prints_its_place_and_never_its_message() {
        if std::env::var_os(CHILD).is_some() {
            install_panic_hook();
            let text = String::from("SECRET-REQUEST-TEXT");
            panic!("the request said {text}");
        }
        let exe = std::env::current_exe().expect("test binary");
        let out = std::process::Command::new(exe)
            .args([
                "--exact",
                "init::tests::a_panic_prints_its_place_and_never_its_message",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD, "1")
            .output()
            .expect("child runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(!out.status.success(), "the child must die: {stderr}");
        assert!(
            stderr.contains("FATAL: panic at runtime/src/init.rs:"),
            "{stderr}"
        );
        assert!(
            !stderr.contains("SECRET") && !stdout.contains("SECRET"),
            "the message leaked: {stderr} {stdout}"
        );
    }
}
