//! `cloister-runtime`: PID 1 of the confidential VM, or (not PID 1) a development server on a
//! Unix socket with emulated attestation.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Parser;
use cloister_protocol::guest_config::MODELS_DIR;
use cloister_protocol::{AttestMode, GuestConfig, Platform, Weights};
use cloister_runtime::attest::Attester;
use cloister_runtime::attest::emulated::{EmulatedSnpAttester, SpAddress};
use cloister_runtime::attest::sev_guest::SevGuestAttester;
use cloister_runtime::attest::tsm::{self, TsmAttester};
use cloister_runtime::evidence::EvidenceService;
use cloister_runtime::init;
use cloister_runtime::keys::{KeyRing, Now};
use cloister_runtime::memory;
use cloister_runtime::server::{self, AppState, Limits, Listen};
use cloister_runtime::weights;
use cloister_runtime::workload::Router;

/// Host CID seen from a guest.
const HOST_CID: u32 = 2;
/// Where the image manifest is inside the initramfs.
const MANIFEST: &str = "/cloister/manifest.json";
/// Where the kernel modules are inside the initramfs.
const MODULES: &str = "/lib/modules/cloister";
/// How long before expiry a new key takes over.
const KEY_OVERLAP: Duration = Duration::from_secs(3600);
/// How often PID 1 prints its memory on the console.
const MEMORY_REPORT: Duration = Duration::from_secs(30);

#[derive(Parser, Debug)]
#[command(
    name = "cloister-runtime",
    about = "Cloister guest runtime (development mode when not PID 1)"
)]
struct Dev {
    /// Unix socket to serve on.
    #[arg(long)]
    unix: PathBuf,
    /// Unix socket of the emulated AMD secure processor.
    #[arg(long)]
    emulated_sp: PathBuf,
    /// The `cloister.*` parameters, as a kernel command line would carry them.
    #[arg(long, default_value = "cloister.attest=emulated")]
    cmdline: String,
    /// Directory of model weights (one directory per pinned model, as in the image's
    /// `/cloister/models`); needed when `cloister.model` is not `none`.
    #[arg(long)]
    models: Option<PathBuf>,
    /// SHA-256 (hex) of the image manifest to name in the evidence.
    #[arg(
        long,
        default_value = "0000000000000000000000000000000000000000000000000000000000000000"
    )]
    manifest_digest: String,
}

fn main() -> ExitCode {
    init::install_panic_hook();
    if std::process::id() == 1 {
        if let Err(e) = guest() {
            init::fatal(&format!("{e:#}"));
        }
        init::fatal("the server stopped");
    }
    // Development mode holds the same keys and plaintext: the same hardening as in the guest.
    init::disable_core_dumps();
    match dev() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn logging() {
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_target(false)
        .try_init();
}

fn manifest_digest(path: &Path) -> Result<[u8; 32]> {
    use sha2::Digest as _;
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(sha2::Sha256::digest(bytes).into())
}

/// The workloads `cloister.model` selects: echo alone, or echo plus the summariser (loaded
/// once, here, before the server is ready).
fn router(cfg: &GuestConfig, models: Option<&Path>) -> Result<Router> {
    if cfg.model == "none" {
        return Ok(Router::with_echo());
    }
    let Some(models) = models else {
        bail!("cloister.model={} needs --models DIR", cfg.model);
    };
    summarizer_router(cfg, models)
}

#[cfg(not(feature = "summarizer"))]
fn summarizer_router(cfg: &GuestConfig, _models: &Path) -> Result<Router> {
    bail!(
        "cloister.model={}: this runtime is the echo runtime (built without the `summarizer` \
         feature)",
        cfg.model
    )
}

#[cfg(feature = "summarizer")]
fn summarizer_router(cfg: &GuestConfig, models: &Path) -> Result<Router> {
    use cloister_runtime::summarize;
    let started = std::time::Instant::now();
    eprintln!("cloister: loading model {}", cfg.model);
    // Loading a large model under emulation takes minutes: say so, so that a watcher can tell
    // a long load from a hang.
    let (done, heartbeat) = std::sync::mpsc::channel::<()>();
    let beat = std::thread::spawn(move || {
        while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
            heartbeat.recv_timeout(std::time::Duration::from_secs(30))
        {
            eprintln!(
                "cloister: still loading the model ({:.0} s)",
                started.elapsed().as_secs_f64()
            );
        }
    });
    let engine = summarize::load(
        models,
        &cfg.model,
        cloister_summarizer::SummarizerConfig::default(),
    );
    drop(done);
    let _ = beat.join();
    let engine = engine?;
    eprintln!(
        "cloister: model {} loaded in {:.1} s",
        engine.model(),
        started.elapsed().as_secs_f64()
    );
    Ok(summarize::router(Arc::new(engine)))
}

fn state(
    cfg: &GuestConfig,
    attester: Arc<dyn Attester>,
    manifest: [u8; 32],
    router: Router,
) -> Result<Arc<AppState>> {
    let keys = KeyRing::new(cfg.key_lifetime, KEY_OVERLAP, Now::read())?;
    let limits = Limits {
        max_body: cfg.max_body,
        max_concurrent: cfg.max_concurrent,
        deadline: cfg.deadline,
        max_connections: 256,
    };
    Ok(Arc::new(AppState::new(
        keys,
        EvidenceService::new(attester, manifest),
        router,
        limits,
    )))
}

fn guest() -> Result<()> {
    init::mount_early()?;
    init::disable_core_dumps();
    init::spawn_reaper();
    for m in init::load_modules(Path::new(MODULES))? {
        match m.result {
            Ok(true) => eprintln!("cloister: module {} loaded", m.name),
            Ok(false) => {}
            Err(why) => eprintln!("cloister: module {} not loaded: {why}", m.name),
        }
    }
    init::mount_configfs()?;
    logging();
    let cfg = GuestConfig::from_cmdline(&init::read_cmdline()?)?;
    let attester: Arc<dyn Attester> = match cfg.attest {
        // configfs-tsm where the kernel has it; /dev/sev-guest otherwise.
        AttestMode::Snp if Path::new(tsm::DEFAULT_ROOT).is_dir() => {
            Arc::new(TsmAttester::new(Platform::SevSnp)?)
        }
        AttestMode::Snp => Arc::new(SevGuestAttester::new()),
        AttestMode::Tdx => Arc::new(TsmAttester::new(Platform::Tdx)?),
        AttestMode::Emulated => Arc::new(EmulatedSnpAttester::new(SpAddress::Vsock {
            cid: HOST_CID,
            port: cfg.emulated_sp_port,
        })),
    };
    let models = Path::new(MODELS_DIR);
    if let Weights::Verity(verity) = &cfg.weights {
        let started = std::time::Instant::now();
        let node = weights::mount_verity(verity, models)?;
        eprintln!(
            "cloister: weights disk verified by dm-verity ({} data blocks, root {}) on {}, \
             mounted in {:.2} s",
            verity.data_blocks,
            hex::encode(verity.root_hash),
            node.display(),
            started.elapsed().as_secs_f64()
        );
    }
    let router = router(&cfg, Some(models))?;
    let state = state(
        &cfg,
        attester,
        manifest_digest(Path::new(MANIFEST))?,
        router,
    )?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        server::spawn_rotation(Arc::clone(&state));
        memory::spawn_report(MEMORY_REPORT);
        let key_id = state.keys.read().map(|k| k.current().key_id()).unwrap_or(0);
        let ready = || {
            eprintln!(
                "cloister: READY vsock-port={} attest={} key-id={key_id}",
                cfg.port,
                cfg.attest.as_str()
            )
        };
        server::serve(
            state,
            Listen::Vsock(cfg.port),
            ready,
            std::future::pending(),
        )
        .await
    })?;
    Ok(())
}

fn dev() -> Result<()> {
    let args = Dev::parse();
    logging();
    let cfg = GuestConfig::from_cmdline(&args.cmdline)?;
    if cfg.attest != AttestMode::Emulated {
        bail!(
            "development mode attests only with the emulated processor (cloister.attest=emulated)"
        );
    }
    if cfg.weights != Weights::Initramfs {
        bail!("development mode reads the weights from --models, not from a weights disk");
    }
    let mut manifest = [0u8; 32];
    hex::decode_to_slice(&args.manifest_digest, &mut manifest).context("--manifest-digest")?;
    let attester = Arc::new(EmulatedSnpAttester::new(SpAddress::Unix(
        args.emulated_sp.clone(),
    )));
    let router = router(&cfg, args.models.as_deref())?;
    let state = state(&cfg, attester, manifest, router)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        server::spawn_rotation(Arc::clone(&state));
        let ready = || println!("READY {}", args.unix.display());
        let shutdown = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        server::serve(state, Listen::Unix(args.unix.clone()), ready, shutdown).await
    })?;
    Ok(())
}
