//! `cloister-emulated-sp`: the emulated AMD secure processor as a host process. INSECURE:
//! for CI and local research only (ARCHITECTURE.md, "Platforms").
//!
//! It derives an emulated ARK → ASK → VCEK chain from a seed, writes the ARK (DER) where the
//! verifier will pin it, listens on a Unix socket (the launcher bridges the guest's vsock port to
//! it), prints `READY <sha256 of the ARK DER>` on stdout, and answers report requests for the
//! given launch measurement until SIGTERM or SIGINT.
//!
//! stderr carries one line per connection; it never contains a request's `report_data`.

use std::io::Write as _;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context as _, bail};
use clap::{ArgGroup, Parser};
use nix::sys::signal::{SigSet, Signal};
use sha2::{Digest as _, Sha256};

use cloister_insecure_emulated_sp::{EmulatedSnpSigner, EmulatedSp, SpEvent};

/// Set by the signal thread; read by the accept loop.
static STOP: AtomicBool = AtomicBool::new(false);

/// The emulated AMD secure processor (INSECURE: CI and local research only).
#[derive(Debug, Parser)]
#[command(version, group(ArgGroup::new("seed").required(true).args(["seed_file", "random_seed"])))]
struct Args {
    /// Unix socket to listen on (a stale socket nobody listens on is replaced).
    #[arg(long, value_name = "PATH")]
    socket: PathBuf,
    /// Launch measurement every report carries: 96 hex digits (48 bytes).
    #[arg(long, value_name = "HEX96", value_parser = parse_measurement)]
    measurement: Measurement,
    /// Seed of the emulated chain: a file of exactly 32 bytes, or of 64 hex digits.
    #[arg(long, value_name = "FILE")]
    seed_file: Option<PathBuf>,
    /// Use a fresh random seed (the chain then lives as long as this process).
    #[arg(long)]
    random_seed: bool,
    /// Where to write the emulated ARK certificate (DER) for verifiers to pin.
    #[arg(long, value_name = "PATH")]
    write_ark: PathBuf,
}

#[derive(Debug, Clone, Copy)]
struct Measurement([u8; 48]);

fn parse_measurement(s: &str) -> Result<Measurement, String> {
    let s = s.trim();
    if s.len() != 96 {
        return Err(format!(
            "expected 96 hex digits, found {} characters",
            s.len()
        ));
    }
    let mut out = [0u8; 48];
    hex::decode_to_slice(s, &mut out).map_err(|e| format!("not hex: {e}"))?;
    Ok(Measurement(out))
}

fn read_seed(path: &Path) -> anyhow::Result<[u8; 32]> {
    let raw =
        std::fs::read(path).with_context(|| format!("reading seed file {}", path.display()))?;
    if let Ok(seed) = <[u8; 32]>::try_from(raw.as_slice()) {
        return Ok(seed);
    }
    let text = std::str::from_utf8(&raw).map(str::trim).unwrap_or_default();
    let mut seed = [0u8; 32];
    if text.len() == 64 && hex::decode_to_slice(text, &mut seed).is_ok() {
        return Ok(seed);
    }
    bail!(
        "seed file {} holds {} bytes: expected exactly 32 bytes or 64 hex digits",
        path.display(),
        raw.len()
    )
}

fn random_seed() -> anyhow::Result<[u8; 32]> {
    use std::io::Read as _;
    let mut seed = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut seed))
        .context("reading /dev/urandom")?;
    Ok(seed)
}

/// Binds `path`, replacing a stale socket left by a process that died, but never a live one or
/// anything that is not a socket.
fn bind(path: &Path) -> anyhow::Result<UnixListener> {
    use std::os::unix::fs::FileTypeExt as _;
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            bail!("{} exists and is not a socket", path.display());
        }
        match UnixStream::connect(path) {
            Ok(_) => bail!("{} is in use by a running processor", path.display()),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                std::fs::remove_file(path)
                    .with_context(|| format!("removing stale socket {}", path.display()))?;
            }
            Err(e) => {
                return Err(e).with_context(|| format!("probing socket {}", path.display()));
            }
        }
    }
    UnixListener::bind(path).with_context(|| format!("binding {}", path.display()))
}

/// Blocks SIGTERM and SIGINT in this thread (and so in every thread spawned after it) and
/// spawns one thread that waits for them synchronously and sets [`STOP`]. No handler runs in
/// signal context, so no unsafe code is needed.
fn stop_on_signals() -> anyhow::Result<()> {
    let mut set = SigSet::empty();
    set.add(Signal::SIGTERM);
    set.add(Signal::SIGINT);
    set.thread_block().context("blocking SIGTERM/SIGINT")?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            if let Ok(signal) = set.wait() {
                eprintln!("cloister-emulated-sp: {signal}, stopping");
            }
            // Also on a failed wait: better to stop than to become unstoppable.
            STOP.store(true, Ordering::SeqCst);
        })
        .context("spawning the signal thread")?;
    Ok(())
}

fn log_event(event: SpEvent) {
    // SpEvent carries no request content (the refusal texts never include report_data).
    match event {
        SpEvent::Served => eprintln!("cloister-emulated-sp: report signed"),
        SpEvent::Refused(why) => eprintln!("cloister-emulated-sp: request refused: {why}"),
        SpEvent::Busy => eprintln!("cloister-emulated-sp: busy, connection refused"),
        SpEvent::Connection(e) => eprintln!("cloister-emulated-sp: connection failed: {e}"),
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    stop_on_signals()?;
    let seed = match (&args.seed_file, args.random_seed) {
        (Some(path), false) => read_seed(path)?,
        (None, true) => random_seed()?,
        // clap's group makes exactly one of them present.
        _ => bail!("give exactly one of --seed-file and --random-seed"),
    };
    eprintln!(
        "cloister-emulated-sp: INSECURE emulated AMD secure processor; deriving keys (RSA-4096, \
         takes seconds)"
    );
    let signer = EmulatedSnpSigner::from_seed(&seed).context("deriving the emulated chain")?;
    let ark = signer.ark_der().to_vec();
    let ark_sha256 = hex::encode(Sha256::digest(&ark));
    std::fs::write(&args.write_ark, &ark)
        .with_context(|| format!("writing the ARK to {}", args.write_ark.display()))?;
    if STOP.load(Ordering::SeqCst) {
        return Ok(());
    }
    let listener = bind(&args.socket)?;
    eprintln!(
        "cloister-emulated-sp: measurement {}; ARK sha256 {ark_sha256}; listening on {}",
        hex::encode(args.measurement.0),
        args.socket.display()
    );
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "READY {ark_sha256}").context("writing READY")?;
        out.flush().context("writing READY")?;
    }
    let sp = EmulatedSp::new(signer, args.measurement.0);
    let served = sp.serve_with(listener, &STOP, &log_event);
    // Remove our socket whether serving ended by a signal or an error.
    let _ = std::fs::remove_file(&args.socket);
    served.context("serving")?;
    eprintln!("cloister-emulated-sp: stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measurement_must_be_96_hex_digits() {
        let m = parse_measurement(&"ab".repeat(48)).expect("parses");
        assert_eq!(m.0, [0xab; 48]);
        assert!(parse_measurement(&"ab".repeat(47)).is_err());
        assert!(parse_measurement(&"zz".repeat(48)).is_err());
    }

    #[test]
    fn seed_file_is_32_bytes_or_64_hex_digits() {
        let dir = tempfile::tempdir().expect("temp dir");
        let raw = dir.path().join("raw");
        std::fs::write(&raw, [7u8; 32]).expect("writes");
        assert_eq!(read_seed(&raw).expect("raw"), [7u8; 32]);
        let hexed = dir.path().join("hex");
        std::fs::write(&hexed, format!("{}\n", "07".repeat(32))).expect("writes");
        assert_eq!(read_seed(&hexed).expect("hex"), [7u8; 32]);
        let short = dir.path().join("short");
        std::fs::write(&short, [7u8; 31]).expect("writes");
        assert!(read_seed(&short).is_err());
        assert!(read_seed(&dir.path().join("absent")).is_err());
    }

    #[test]
    fn bind_replaces_only_stale_sockets() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("sp.sock");
        let live = bind(&path).expect("binds");
        assert!(bind(&path).is_err(), "a live socket is not replaced");
        drop(live);
        bind(&path).expect("a stale socket is replaced");
        let file = dir.path().join("file");
        std::fs::write(&file, b"x").expect("writes");
        assert!(bind(&file).is_err(), "a regular file is not replaced");
    }
}
