//! Cloister's SEV/SNP launch-digest calculator against sev-snp-measure (the reference), on the
//! pinned AmdSev firmware: every configuration of the matrix must agree byte for byte. The
//! firmware and the reference tool must be installed (the full tier: `cargo xtask setup`
//! installs both); if either is missing the test fails, it does not skip.
use std::path::{Path, PathBuf};
use std::process::Command;

use cloister_guest_image::{cache_root, firmware, peers};
use cloister_launch::sev::{AmdLaunch, AmdSevFirmware, BootHashes, SevMode, vcpu_type, vmm_type};

fn firmware_path() -> PathBuf {
    firmware::cached(&cache_root())
        .expect("the pinned AmdSev firmware is not built: run `cargo xtask setup`")
        .amdsev
}

fn reference_tool() -> PathBuf {
    let bin = peers::sev_snp_measure_bin(&cache_root());
    assert!(
        bin.is_file(),
        "sev-snp-measure is not installed at {}: run `cargo xtask setup`",
        bin.display()
    );
    bin
}

/// Deterministic filler bytes (xorshift), so inputs are realistic in size but reproducible.
fn bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

struct Inputs {
    _dir: tempfile::TempDir,
    kernel: PathBuf,
    initrds: [PathBuf; 2],
}

fn inputs() -> Inputs {
    let dir = tempfile::tempdir().expect("tempdir");
    let write = |name: &str, data: Vec<u8>| {
        let p = dir.path().join(name);
        std::fs::write(&p, data).expect("write");
        p
    };
    Inputs {
        kernel: write("vmlinuz", bytes(3 << 20, 1)),
        initrds: [
            write("initrd-a", bytes(700 << 10, 2)),
            write("initrd-b", bytes(64 << 10, 3)),
        ],
        _dir: dir,
    }
}

const CMDLINES: [&str; 2] = [
    "console=ttyS0 panic=-1 quiet",
    "console=ttyS0 panic=-1 cloister.attest=emulated cloister.port=8000",
];

fn reference(
    tool: &Path,
    fw: &Path,
    mode: &str,
    vcpus: u32,
    vtype: &str,
    boot: Option<(&Path, &Path, &str)>,
) -> String {
    let mut cmd = Command::new(tool);
    cmd.args(["--mode", mode, "--ovmf"]).arg(fw);
    if mode != "sev" {
        cmd.args(["--vcpus", &vcpus.to_string(), "--vcpu-type", vtype]);
    }
    if let Some((k, i, a)) = boot {
        cmd.arg("--kernel")
            .arg(k)
            .arg("--initrd")
            .arg(i)
            .args(["--append", a]);
    }
    let out = cmd.output().expect("sev-snp-measure runs");
    assert!(
        out.status.success(),
        "sev-snp-measure failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn ours(
    fw: &AmdSevFirmware,
    mode: SevMode,
    vcpus: u32,
    vtype: &str,
    boot: Option<BootHashes>,
) -> String {
    let cfg = AmdLaunch {
        mode,
        vcpus,
        vcpu_type: vcpu_type(vtype).expect("known type"),
        vmm: vmm_type("QEMU").expect("known vmm"),
        guest_features: 0x1,
        boot,
    };
    hex::encode(fw.launch_digest(&cfg).expect("digest"))
}

#[test]
#[ignore = "full tier: the built firmware and sev-snp-measure (cargo xtask test)"]
fn equals_sev_snp_measure_on_the_matrix() {
    let (fw_path, tool, inp) = (firmware_path(), reference_tool(), inputs());
    let fw = AmdSevFirmware::load(&fw_path).expect("loads");
    let kernel = std::fs::read(&inp.kernel).expect("read");
    let mut boots: Vec<Option<(usize, BootHashes)>> = vec![None];
    for (i, initrd) in inp.initrds.iter().enumerate() {
        let data = std::fs::read(initrd).expect("read");
        boots.push(Some((
            i,
            BootHashes::new(&kernel, &data, Some(CMDLINES[i])).expect("hashes"),
        )));
    }
    let mut compared = 0;
    let mut mismatches = Vec::new();
    let mut check = |mode: &str, vcpus: u32, vtype: &str, boot: &Option<(usize, BootHashes)>| {
        let files = boot.as_ref().map(|(i, _)| {
            (
                inp.kernel.as_path(),
                inp.initrds[*i].as_path(),
                CMDLINES[*i],
            )
        });
        let theirs = reference(&tool, &fw_path, mode, vcpus, vtype, files);
        let mine = ours(
            &fw,
            mode.parse().expect("mode"),
            vcpus,
            vtype,
            boot.map(|(_, b)| b),
        );
        compared += 1;
        if mine != theirs {
            mismatches.push(format!(
                "{mode} vcpus={vcpus} {vtype} boot={:?}: ours {mine}, sev-snp-measure {theirs}",
                boot.map(|(i, _)| i)
            ));
        }
    };
    for vcpus in [1, 2, 4, 64] {
        for vtype in ["EPYC-v4", "EPYC-Milan", "EPYC-Genoa"] {
            for boot in &boots {
                check("snp", vcpus, vtype, boot);
            }
        }
    }
    for boot in &boots {
        check("seves", 2, "EPYC-v4", boot);
        check("sev", 1, "EPYC-v4", boot);
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
    assert_eq!(compared, 4 * 3 * 3 + 6);
}

#[test]
#[ignore = "full tier: the built firmware and sev-snp-measure (cargo xtask test)"]
fn hashes_page_equals_sev_snp_measure() {
    let (fw_path, tool, inp) = (firmware_path(), reference_tool(), inputs());
    let fw = AmdSevFirmware::load(&fw_path).expect("loads");
    let boot = BootHashes::new(
        &std::fs::read(&inp.kernel).expect("read"),
        &std::fs::read(&inp.initrds[0]).expect("read"),
        Some(CMDLINES[0]),
    )
    .expect("hashes");
    let (gpa, page) = fw.hashes_page(&boot).expect("page");
    let python = tool.with_file_name("python3");
    let out_path = inp.kernel.with_file_name("page.bin");
    let script = "import sys\nfrom sevsnpmeasure.ovmf import OVMF\nfrom sevsnpmeasure.sev_hashes import SevHashes\n\
                  o = OVMF(sys.argv[1]); gpa = o.sev_hashes_table_gpa()\n\
                  open(sys.argv[5], 'wb').write(SevHashes(sys.argv[2], sys.argv[3], sys.argv[4]).construct_page(gpa & 0xfff))\n\
                  print(hex(gpa))";
    let out = Command::new(&python)
        .arg("-c")
        .arg(script)
        .arg(&fw_path)
        .arg(&inp.kernel)
        .arg(&inp.initrds[0])
        .arg(CMDLINES[0])
        .arg(&out_path)
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let their_gpa = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert_eq!(
        format!("{:#x}", gpa | (fw.hashes_table_gpa().expect("gpa") & 0xfff)),
        their_gpa
    );
    assert_eq!(page.to_vec(), std::fs::read(&out_path).expect("page"));
}

#[test]
#[ignore = "full tier: the built firmware and sev-snp-measure (cargo xtask test)"]
fn every_input_changes_the_digest() {
    let (fw_path, inp) = (firmware_path(), inputs());
    let fw = AmdSevFirmware::load(&fw_path).expect("loads");
    let kernel = std::fs::read(&inp.kernel).expect("read");
    let initrd = std::fs::read(&inp.initrds[0]).expect("read");
    let boot = |k: &[u8], i: &[u8], c: &str| Some(BootHashes::new(k, i, Some(c)).expect("hashes"));
    let base = ours(
        &fw,
        SevMode::Snp,
        2,
        "EPYC-v4",
        boot(&kernel, &initrd, CMDLINES[0]),
    );

    let flip = |v: &[u8], at: usize| {
        let mut v = v.to_vec();
        v[at] ^= 1;
        v
    };
    let fw_bytes = std::fs::read(&fw_path).expect("read");
    let tampered_fw = inp.kernel.with_file_name("ovmf-tampered.fd");
    std::fs::write(&tampered_fw, flip(&fw_bytes, fw_bytes.len() / 2)).expect("write");
    let fw2 = AmdSevFirmware::load(&tampered_fw).expect("loads");

    let variants = [
        (
            "firmware byte",
            ours(
                &fw2,
                SevMode::Snp,
                2,
                "EPYC-v4",
                boot(&kernel, &initrd, CMDLINES[0]),
            ),
        ),
        (
            "kernel byte",
            ours(
                &fw,
                SevMode::Snp,
                2,
                "EPYC-v4",
                boot(&flip(&kernel, 12345), &initrd, CMDLINES[0]),
            ),
        ),
        (
            "initrd byte",
            ours(
                &fw,
                SevMode::Snp,
                2,
                "EPYC-v4",
                boot(&kernel, &flip(&initrd, 0), CMDLINES[0]),
            ),
        ),
        (
            "command line",
            ours(
                &fw,
                SevMode::Snp,
                2,
                "EPYC-v4",
                boot(&kernel, &initrd, "console=ttyS0 panic=-1 quieT"),
            ),
        ),
        (
            "vCPU count",
            ours(
                &fw,
                SevMode::Snp,
                3,
                "EPYC-v4",
                boot(&kernel, &initrd, CMDLINES[0]),
            ),
        ),
        (
            "vCPU type",
            ours(
                &fw,
                SevMode::Snp,
                2,
                "EPYC-Milan",
                boot(&kernel, &initrd, CMDLINES[0]),
            ),
        ),
        (
            "no kernel hashes",
            ours(&fw, SevMode::Snp, 2, "EPYC-v4", None),
        ),
    ];
    for (what, digest) in variants {
        assert_ne!(digest, base, "{what} did not change the digest");
    }
}

/// The calculator also agrees with the `sev` crate's own whole-launch function.
#[test]
#[ignore = "full tier: the built firmware and sev-snp-measure (cargo xtask test)"]
fn equals_the_sev_crate() {
    use sev::measurement::snp::{SnpMeasurementArgs, snp_calc_launch_digest};
    use sev::measurement::vmsa::GuestFeatures;
    let (fw_path, inp) = (firmware_path(), inputs());
    let fw = AmdSevFirmware::load(&fw_path).expect("loads");
    let boot = BootHashes::new(
        &std::fs::read(&inp.kernel).expect("read"),
        &std::fs::read(&inp.initrds[1]).expect("read"),
        Some(CMDLINES[1]),
    )
    .expect("hashes");
    for vcpus in [1u32, 4] {
        let theirs = snp_calc_launch_digest(SnpMeasurementArgs {
            vcpus,
            vcpu_type: vcpu_type("EPYC-Genoa").expect("type"),
            ovmf_file: fw_path.clone(),
            guest_features: GuestFeatures(0x1),
            kernel_file: Some(inp.kernel.clone()),
            initrd_file: Some(inp.initrds[1].clone()),
            append: Some(CMDLINES[1]),
            ovmf_hash_str: None,
            vmm_type: Some(vmm_type("QEMU").expect("vmm")),
        })
        .expect("sev crate");
        assert_eq!(
            ours(&fw, SevMode::Snp, vcpus, "EPYC-Genoa", Some(boot)),
            theirs.get_hex_ld()
        );
    }
}

/// `cargo xtask measure --json` prints the same digest, and writes the hashes page.
#[test]
#[ignore = "full tier: the built firmware and sev-snp-measure (cargo xtask test)"]
fn measure_command_prints_the_digest_and_the_page() {
    let (fw_path, tool, inp) = (firmware_path(), reference_tool(), inputs());
    let page_path = inp.kernel.with_file_name("page.out");
    let out = Command::new(env!("CARGO_BIN_EXE_cloister-xtask"))
        .args([
            "measure",
            "--vcpus",
            "4",
            "--vcpu-type",
            "EPYC-Milan",
            "--firmware",
        ])
        .arg(&fw_path)
        .arg("--kernel")
        .arg(&inp.kernel)
        .arg("--initrd")
        .arg(&inp.initrds[1])
        .args(["--append", CMDLINES[1], "--json", "--write-hashes-page"])
        .arg(&page_path)
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().last().expect("output");
    let v: serde_json::Value = serde_json::from_str(last).expect("json last line");
    let theirs = reference(
        &tool,
        &fw_path,
        "snp",
        4,
        "EPYC-Milan",
        Some((&inp.kernel, &inp.initrds[1], CMDLINES[1])),
    );
    assert_eq!(v["snp_launch_digest"], theirs.as_str());
    assert_eq!(std::fs::read(&page_path).expect("page").len(), 4096);
}
