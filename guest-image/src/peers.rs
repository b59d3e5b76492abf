//! Reference tools that Cloister's own code is measured against, installed reproducibly:
//! pinned Python packages in a virtualenv under the cache (`pip --require-hashes`).
//! sev-snp-measure (launch digests) and llama.cpp through llama-cpp-python (the summariser).

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

/// llama-cpp-python's build tools and run-time dependencies (versions and sha256).
pub const LLAMA_CPP_BUILD_REQUIREMENTS: &str = include_str!("../peers/llama-cpp-python-build.txt");
/// llama-cpp-python's source distribution (version and sha256).
pub const LLAMA_CPP_REQUIREMENTS: &str = include_str!("../peers/llama-cpp-python.txt");

/// Where the llama-cpp-python virtualenv lives.
pub fn llama_cpp_venv(cache: &Path) -> PathBuf {
    cache.join("peers").join("llama-cpp-python-0.3.36")
}

/// Installs llama-cpp-python 0.3.36 (when absent), building llama.cpp from the pinned source
/// with every core, and returns the virtualenv's Python. Nothing unpinned is fetched: the build
/// tools are installed from hashed wheels first and the build runs without isolation.
pub fn ensure_llama_cpp_python(cache: &Path) -> Result<PathBuf, ImageError> {
    let venv = llama_cpp_venv(cache);
    let python = venv.join("bin").join("python");
    let done = venv.join(".cloister-installed");
    // The marker holds the pinned source line: a changed pin rebuilds.
    if std::fs::read_to_string(&done).is_ok_and(|pinned| pinned == LLAMA_CPP_REQUIREMENTS) {
        return Ok(python);
    }
    require_tool("python3", "python3-venv")?;
    require_tool("cc", "build-essential")?;
    require_tool("c++", "build-essential")?;
    let progress = Progress::new("llama-cpp-python (building llama.cpp)");
    let dir = cache.join("peers");
    std::fs::create_dir_all(&dir).map_err(ImageError::io("creating", &dir))?;
    let _ = std::fs::remove_dir_all(&venv);
    let result = (|| {
        let mut cmd = Command::new("python3");
        cmd.args(["-m", "venv"]).arg(&venv);
        run_logged(cmd, &dir.join("llama-cpp-venv.log"), &progress)?;
        let pip = venv.join("bin").join("pip");
        for (name, text, binary) in [
            (
                "llama-cpp-python-build.txt",
                LLAMA_CPP_BUILD_REQUIREMENTS,
                true,
            ),
            ("llama-cpp-python.txt", LLAMA_CPP_REQUIREMENTS, false),
        ] {
            let req = dir.join(name);
            std::fs::write(&req, text).map_err(ImageError::io("writing", &req))?;
            // The machine's pip configuration decides where packages come from.
            let mut cmd = Command::new(&pip);
            cmd.args(["install", "--no-deps", "--require-hashes"]);
            if binary {
                cmd.arg("--only-binary=:all:");
            } else {
                cmd.args(["--no-build-isolation", "--no-binary=:all:"]);
                let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
                cmd.env("CMAKE_BUILD_PARALLEL_LEVEL", cores.to_string());
            }
            cmd.arg("-r").arg(&req);
            run_logged(cmd, &dir.join(format!("{name}.log")), &progress)?;
        }
        std::fs::write(&done, LLAMA_CPP_REQUIREMENTS).map_err(ImageError::io("writing", &done))
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_dir_all(&venv);
        return Err(e);
    }
    progress.finish("llama-cpp-python 0.3.36 built");
    Ok(python)
}
