//! OVMF for AMD SEV-SNP (`OvmfPkg/AmdSev`) and Intel TDX (`OvmfPkg/IntelTdx`), built
//! reproducibly from Debian's edk2 source package.
//!
//! No Debian binary package ships these two builds. The source package does: its tarballs are
//! fetched through a private apt context (deb-src derived from the machine's configured
//! mirror), checked against the pinned sha256 *and* the signed source index, unpacked, patched
//! with Debian's quilt series and built with the pinned recipe. The bytes are reproducible when
//! the build runs at the same absolute path (GenFw sizes CodeView entries by the module's path),
//! so every build runs at [`LOGICAL_BUILD_PATH`], a symlink to the cache; the result must equal
//! the pinned sha256 or the build fails.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::apt::{PrivateApt, Source, configured_mirror};
use crate::digest::{check_sha256, sha256_file};
use crate::error::ImageError;
use crate::run::{Progress, require_tool, run_logged};

/// Debian's edk2 source package, pinned.
#[derive(Debug, Clone, Copy)]
pub struct Edk2Source {
    /// Source package version.
    pub version: &'static str,
    /// Debian suites that carry it (deb-src).
    pub suites: &'static [&'static str],
    /// Security suites that may carry it.
    pub security_suites: &'static [&'static str],
    /// (file name, sha256) of the upstream tarball.
    pub orig: (&'static str, &'static str),
    /// (file name, sha256) of the Debian tarball.
    pub debian: (&'static str, &'static str),
    /// Directory the upstream tarball unpacks to.
    pub dir: &'static str,
}

/// edk2 2025.02-8+deb13u1 (Debian 13 "trixie").
pub const EDK2: Edk2Source = Edk2Source {
    version: "2025.02-8+deb13u1",
    suites: &["trixie", "trixie-updates"],
    security_suites: &["trixie-security"],
    orig: (
        "edk2_2025.02.orig.tar.xz",
        "b63b6053d6d89c74d9291f9e96fde1584be99e6fb9c169ba9511505129d6b049",
    ),
    debian: (
        "edk2_2025.02-8+deb13u1.debian.tar.xz",
        "e2a7f6fc58640818416a028d6d5e9dfc255697a7cdc60c14566c236df6bd9b08",
    ),
    dir: "edk2-2025.02",
};

/// Every build runs here (a symlink to the cache), so that any machine with the same
/// toolchain (Debian 12 gcc 12.2, nasm, iasl) produces the same bytes.
pub const LOGICAL_BUILD_PATH: &str = "/tmp/cloister-edk2-build";

/// Parallel jobs of the edk2 build, fixed so the recipe does not depend on the machine.
const JOBS: &str = "2";

/// A firmware platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Platform {
    /// `OvmfPkg/AmdSev/AmdSevX64.dsc`: SEV, SEV-ES and SEV-SNP with measured direct boot
    /// (the `SNP_KERNEL_HASHES` metadata section).
    AmdSev,
    /// `OvmfPkg/IntelTdx/IntelTdxX64.dsc`: TDVF.
    IntelTdx,
}

impl Platform {
    /// Both platforms.
    pub const ALL: [Platform; 2] = [Platform::AmdSev, Platform::IntelTdx];

    /// Short name (`amdsev`, `inteltdx`).
    pub fn name(self) -> &'static str {
        match self {
            Platform::AmdSev => "amdsev",
            Platform::IntelTdx => "inteltdx",
        }
    }

    fn dsc(self) -> &'static str {
        match self {
            Platform::AmdSev => "OvmfPkg/AmdSev/AmdSevX64.dsc",
            Platform::IntelTdx => "OvmfPkg/IntelTdx/IntelTdxX64.dsc",
        }
    }

    fn output(self) -> &'static str {
        match self {
            Platform::AmdSev => "Build/AmdSev/RELEASE_GCC5/FV/OVMF.fd",
            Platform::IntelTdx => "Build/IntelTdx/RELEASE_GCC5/FV/OVMF.fd",
        }
    }

    /// The pinned sha256 of the built image.
    pub fn pinned_sha256(self) -> &'static str {
        match self {
            Platform::AmdSev => AMDSEV_SHA256,
            Platform::IntelTdx => INTELTDX_SHA256,
        }
    }
}

/// sha256 of `OVMF.fd` built from [`EDK2`] by this recipe (Debian 12, gcc 12.2.0-14+deb12u1).
pub const AMDSEV_SHA256: &str = "01ed7c0d2b1ee843b59dd494455a1445f2358959ac2b54d5e0d538d84a0b10c5";
/// sha256 of the IntelTdx `OVMF.fd`.
pub const INTELTDX_SHA256: &str =
    "c238aefff3648ed5c30262194bf04bf72be7fe2d02e74423cd00def258372bc8";

/// The built firmware images.
#[derive(Debug, Clone)]
pub struct BuiltFirmware {
    /// AmdSev OVMF.
    pub amdsev: PathBuf,
    /// IntelTdx OVMF.
    pub inteltdx: PathBuf,
}

impl BuiltFirmware {
    /// The image of one platform.
    pub fn path(&self, p: Platform) -> &Path {
        match p {
            Platform::AmdSev => &self.amdsev,
            Platform::IntelTdx => &self.inteltdx,
        }
    }
}

/// Tools the build needs, with the Debian package that brings each (the set-up step installs
/// these packages).
pub const BUILD_TOOLS: [(&str, &str); 9] = [
    ("apt-get", "apt"),
    ("gcc", "gcc"),
    // BaseTools' VfrCompile and BrotliCompress are C++.
    ("g++", "g++"),
    ("make", "make"),
    ("python3", "python3"),
    ("nasm", "nasm"),
    ("iasl", "acpica-tools"),
    ("quilt", "quilt"),
    ("xz", "xz-utils"),
];

/// The header edk2's BaseTools include, and the Debian package that brings it.
pub const UUID_HEADER: (&str, &str) = ("/usr/include/uuid/uuid.h", "uuid-dev");

fn check_tools() -> Result<(), ImageError> {
    for (tool, package) in BUILD_TOOLS {
        require_tool(tool, package)?;
    }
    if !Path::new(UUID_HEADER.0).exists() {
        return Err(ImageError::MissingTool {
            tool: UUID_HEADER.0,
            package: UUID_HEADER.1,
        });
    }
    Ok(())
}

/// Where the firmware of the pinned inputs is kept.
pub fn firmware_dir(cache: &Path) -> PathBuf {
    cache.join("firmware").join(EDK2.version)
}

/// The cached firmware, if present and equal to the pins.
pub fn cached(cache: &Path) -> Option<BuiltFirmware> {
    let dir = firmware_dir(cache);
    let built = BuiltFirmware {
        amdsev: dir.join("amdsev.fd"),
        inteltdx: dir.join("inteltdx.fd"),
    };
    Platform::ALL
        .iter()
        .all(|p| check_sha256(p.name(), built.path(*p), p.pinned_sha256()).is_ok())
        .then_some(built)
}

/// Returns the pinned firmware, building it when it is not cached (or always, with
/// `rebuild`), and fails unless the bytes equal the pins.
pub fn ensure(cache: &Path, rebuild: bool) -> Result<BuiltFirmware, ImageError> {
    if !rebuild && let Some(b) = cached(cache) {
        return Ok(b);
    }
    check_tools()?;
    let progress = Progress::new("firmware");
    let src = fetch_source(cache, &progress)?;
    let built = build(cache, &src, &progress)?;
    progress.finish("firmware built and matches the pinned sha256");
    Ok(built)
}

/// Fetches, checks, unpacks and patches the edk2 source; returns the patched tree.
fn fetch_source(cache: &Path, progress: &Progress) -> Result<PathBuf, ImageError> {
    let root = cache.join("edk2-src").join(EDK2.version);
    let tree = root.join(EDK2.dir);
    let marker = root.join(".patched");
    if marker.exists() {
        return Ok(tree);
    }
    std::fs::create_dir_all(&root).map_err(ImageError::io("creating", &root))?;
    let have_tarballs = [EDK2.orig, EDK2.debian]
        .iter()
        .all(|(name, sha)| check_sha256(name, &root.join(name), sha).is_ok());
    if !have_tarballs {
        progress.stage("fetching Debian's edk2 source package");
        let mirror = configured_mirror()?;
        let mut sources = vec![Source {
            kind: "deb-src",
            uri: mirror.archive.clone(),
            suites: EDK2.suites.iter().map(|s| s.to_string()).collect(),
        }];
        if let Some(sec) = &mirror.security {
            sources.push(Source {
                kind: "deb-src",
                uri: sec.clone(),
                suites: EDK2.security_suites.iter().map(|s| s.to_string()).collect(),
            });
        }
        let apt = PrivateApt::new(&cache.join("apt-edk2"), &sources, progress)?;
        // The signed index must list the pinned tarballs with the pinned digests.
        let listed = apt.source_sha256s("edk2", EDK2.version)?;
        for (name, sha) in [EDK2.orig, EDK2.debian] {
            if !listed.iter().any(|(s, n)| n == name && s == sha) {
                return Err(ImageError::VersionNotListed {
                    package: "edk2".to_owned(),
                    version: EDK2.version.to_owned(),
                    detail: format!("the source index does not list {name} with sha256 {sha}"),
                });
            }
        }
        // `apt-get source` stops on the .dsc, which the mirror answers 404 for, after the
        // tarballs have arrived; the digests below decide whether the fetch worked.
        let mut cmd = apt.command("apt-get");
        cmd.arg("source")
            .arg("--download-only")
            .arg(format!("edk2={}", EDK2.version))
            .current_dir(&root);
        let _ = run_logged(cmd, &root.join("apt-source.log"), progress);
        for (name, sha) in [EDK2.orig, EDK2.debian] {
            check_sha256(name, &root.join(name), sha)?;
        }
    }
    progress.stage("unpacking and applying Debian's patch series");
    if tree.exists() {
        std::fs::remove_dir_all(&tree).map_err(ImageError::io("removing", &tree))?;
    }
    let mut cmd = Command::new("tar");
    cmd.arg("xf").arg(EDK2.orig.0).current_dir(&root);
    run_logged(cmd, &root.join("unpack.log"), progress)?;
    let mut cmd = Command::new("tar");
    cmd.arg("xf")
        .arg(root.join(EDK2.debian.0))
        .current_dir(&tree);
    run_logged(cmd, &root.join("unpack-debian.log"), progress)?;
    let mut cmd = Command::new("quilt");
    cmd.args(["push", "-a", "-q"])
        .env("QUILT_PATCHES", "debian/patches")
        .current_dir(&tree);
    run_logged(cmd, &root.join("quilt.log"), progress)?;
    std::fs::write(&marker, EDK2.version).map_err(ImageError::io("writing", &marker))?;
    Ok(tree)
}

/// The build recipe, run by bash in the tree at the logical path: edksetup, then the step.
const RECIPE: &str = r#"set -euo pipefail
umask 022
export LC_ALL=C TZ=UTC
cd -L "$1"; shift
step=("$@")
# edksetup.sh parses the positional parameters it is sourced with: give it none.
set --
unset WORKSPACE EDK_TOOLS_PATH CONF_PATH PACKAGES_PATH
export PYTHON3_ENABLE=TRUE PYTHON_COMMAND=/usr/bin/python3
set +u; . ./edksetup.sh >/dev/null; set -u
"${step[@]}"
"#;

fn build(cache: &Path, src: &Path, progress: &Progress) -> Result<BuiltFirmware, ImageError> {
    let real = cache.join("edk2-build");
    let lock_path = cache.join("edk2-build.lock");
    let lock = std::fs::File::create(&lock_path).map_err(ImageError::io("creating", &lock_path))?;
    // One build at a time may own the logical path.
    lock.lock().map_err(ImageError::io("locking", &lock_path))?;
    if real.exists() {
        std::fs::remove_dir_all(&real).map_err(ImageError::io("removing", &real))?;
    }
    std::fs::create_dir_all(&real).map_err(ImageError::io("creating", &real))?;
    let logical = Path::new(LOGICAL_BUILD_PATH);
    if logical.symlink_metadata().is_ok() {
        std::fs::remove_file(logical)
            .or_else(|_| std::fs::remove_dir_all(logical))
            .map_err(ImageError::io("removing", logical))?;
    }
    std::os::unix::fs::symlink(&real, logical).map_err(ImageError::io("linking", logical))?;

    progress.stage("copying the patched source tree");
    let mut cmd = Command::new("cp");
    cmd.arg("-a").arg(src).arg(real.join("edk2"));
    run_logged(cmd, &real.join("copy.log"), progress)?;
    let tree = format!("{LOGICAL_BUILD_PATH}/edk2");
    let step = |name: &str, args: &[&str]| -> Result<(), ImageError> {
        progress.stage(name);
        let mut cmd = Command::new("bash");
        cmd.arg("-c")
            .arg(RECIPE)
            .arg("recipe")
            .arg(&tree)
            .args(args);
        run_logged(
            cmd,
            &real.join(format!("{}.log", name.replace(' ', "-"))),
            progress,
        )
    };
    step(
        "building BaseTools",
        &["make", "-C", "BaseTools", "-j", JOBS],
    )?;
    // The AmdSev platform bundles a grub.efi; an empty one builds it without grub (the
    // pre-build step skips grub when grub.efi is newer than its inputs).
    let grub = real.join("edk2/OvmfPkg/AmdSev/Grub/grub.efi");
    std::fs::write(&grub, b"").map_err(ImageError::io("writing", &grub))?;
    let out_dir = firmware_dir(cache);
    std::fs::create_dir_all(&out_dir).map_err(ImageError::io("creating", &out_dir))?;
    let mut result = Vec::new();
    for p in Platform::ALL {
        let args = [
            "build",
            "-a",
            "X64",
            "-t",
            "GCC5",
            "-b",
            "RELEASE",
            "-n",
            JOBS,
            "-p",
            p.dsc(),
        ];
        step(&format!("building {}", p.name()), &args)?;
        let built = real.join("edk2").join(p.output());
        let dest = out_dir.join(format!("{}.fd", p.name()));
        std::fs::copy(&built, &dest).map_err(ImageError::io("copying", &built))?;
        let found = sha256_file(&dest)?;
        progress.stage(&format!("{} sha256 {found}", p.name()));
        result.push((p, dest, found));
    }
    let _ = std::fs::remove_file(logical);
    for (p, dest, found) in &result {
        if found != p.pinned_sha256() {
            return Err(ImageError::DigestMismatch {
                artifact: format!("{} firmware ({})", p.name(), dest.display()),
                expected: p.pinned_sha256().to_owned(),
                found: found.clone(),
            });
        }
    }
    // The build tree is 1.5 GB and no longer needed.
    let _ = std::fs::remove_dir_all(&real);
    Ok(BuiltFirmware {
        amdsev: out_dir.join("amdsev.fd"),
        inteltdx: out_dir.join("inteltdx.fd"),
    })
}
