//! Reference tools that Cloister's own code is measured against, installed reproducibly:
//! pinned Python packages in a virtualenv under the cache (`pip --require-hashes`).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::ImageError;
use crate::run::{Progress, require_tool, run_logged};

/// sev-snp-measure's pinned requirements (versions and sha256).
pub const SEV_SNP_MEASURE_REQUIREMENTS: &str = include_str!("../peers/sev-snp-measure.txt");

/// Where the sev-snp-measure virtualenv lives.
pub fn sev_snp_measure_venv(cache: &Path) -> PathBuf {
    cache.join("peers").join("sev-snp-measure-0.0.13")
}

/// The sev-snp-measure executable: `$CLOISTER_SEV_SNP_MEASURE`, else the cache's virtualenv.
pub fn sev_snp_measure_bin(cache: &Path) -> PathBuf {
    match std::env::var_os("CLOISTER_SEV_SNP_MEASURE") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => sev_snp_measure_venv(cache)
            .join("bin")
            .join("sev-snp-measure"),
    }
}

/// Installs sev-snp-measure (when absent) and returns its executable.
pub fn ensure_sev_snp_measure(cache: &Path) -> Result<PathBuf, ImageError> {
    let venv = sev_snp_measure_venv(cache);
    let bin = venv.join("bin").join("sev-snp-measure");
    if bin.is_file() {
        return Ok(bin);
    }
    require_tool("python3", "python3-venv")?;
    let progress = Progress::new("sev-snp-measure");
    std::fs::create_dir_all(cache.join("peers")).map_err(ImageError::io("creating", cache))?;
    let log_dir = cache.join("peers");
    let mut cmd = Command::new("python3");
    cmd.args(["-m", "venv"]).arg(&venv);
    run_logged(cmd, &log_dir.join("venv.log"), &progress)?;
    let req = log_dir.join("sev-snp-measure.txt");
    std::fs::write(&req, SEV_SNP_MEASURE_REQUIREMENTS).map_err(ImageError::io("writing", &req))?;
    // The machine's pip configuration decides where packages come from.
    let mut cmd = Command::new(venv.join("bin").join("pip"));
    cmd.args([
        "install",
        "--no-deps",
        "--require-hashes",
        "--only-binary=:all:",
        "-r",
    ])
    .arg(&req);
    if let Err(e) = run_logged(cmd, &log_dir.join("pip.log"), &progress) {
        let _ = std::fs::remove_dir_all(&venv);
        return Err(e);
    }
    progress.finish("sev-snp-measure 0.0.13 installed");
    Ok(bin)
}
