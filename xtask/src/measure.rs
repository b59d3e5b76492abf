//! `cargo xtask measure`: the expected launch measurements of an image, from its parts alone.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use cloister_guest_image::firmware;
use cloister_measurement::launch::{AmdLaunch, AmdSevFirmware, SevMode, vcpu_type, vmm_type};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Number of vCPUs.
    #[arg(long, default_value_t = 1)]
    vcpus: u32,
    /// vCPU model (QEMU name: EPYC, EPYC-v4, EPYC-Milan, EPYC-Genoa, …).
    #[arg(long, default_value = "EPYC-v4")]
    vcpu_type: String,
    /// Platform: `snp` (AMD SEV-SNP) or `tdx`.
    #[arg(long, default_value = "snp")]
    platform: String,
    /// AMD mode with `--platform snp`: `snp`, `seves` or `sev`.
    #[arg(long, default_value = "snp")]
    mode: String,
    /// VMM type (QEMU, ec2, krun).
    #[arg(long, default_value = "QEMU")]
    vmm: String,
    /// SEV_FEATURES of the VMSAs (SNP), hex.
    #[arg(long, default_value = "0x1")]
    guest_features: String,
    /// Firmware image (default: the pinned build from `cargo xtask firmware`).
    #[arg(long)]
    firmware: Option<PathBuf>,
    /// Kernel (bzImage) for measured direct boot.
    #[arg(long)]
    kernel: Option<PathBuf>,
    /// Initrd.
    #[arg(long, requires = "kernel")]
    initrd: Option<PathBuf>,
    /// Kernel command line.
    #[arg(long, requires = "kernel")]
    append: Option<String>,
    /// Also write the SEV kernel-hashes page (what QEMU fills for kernel-hashes=on) here.
    #[arg(long, requires = "kernel")]
    write_hashes_page: Option<PathBuf>,
    /// End with one JSON object.
    #[arg(long)]
    json: bool,
}

pub fn run(args: &Args) -> Result<ExitCode> {
    if args.platform == "tdx" {
        bail!("--platform tdx: the TDX calculator is not wired into xtask yet");
    }
    if args.platform != "snp" {
        bail!("--platform must be snp or tdx, not {:?}", args.platform);
    }
    let Some(kernel) = &args.kernel else {
        bail!("no guest image is built yet: give --kernel [--initrd] [--append]");
    };
    let fw_path = match &args.firmware {
        Some(p) => p.clone(),
        None => firmware::ensure(&cloister_guest_image::cache_root(), false)?
            .amdsev
            .clone(),
    };
    let (fw, boot) = AmdSevFirmware::load_with_boot(
        &fw_path,
        kernel,
        args.initrd.as_deref(),
        args.append.as_deref(),
    )?;
    let features = u64::from_str_radix(args.guest_features.trim_start_matches("0x"), 16)
        .context("--guest-features is not hex")?;
    let mode: SevMode = args.mode.parse()?;
    let cfg = AmdLaunch {
        mode,
        vcpus: args.vcpus,
        vcpu_type: vcpu_type(&args.vcpu_type)?,
        vmm: vmm_type(&args.vmm)?,
        guest_features: features,
        boot: Some(boot),
    };
    let digest = hex::encode(fw.launch_digest(&cfg)?);
    let (page_gpa, page) = fw.hashes_page(&boot)?;
    if let Some(out) = &args.write_hashes_page {
        std::fs::write(out, page).with_context(|| format!("writing {}", out.display()))?;
    }
    let field = match mode {
        SevMode::Snp => "snp_launch_digest",
        SevMode::SevEs => "sev_es_launch_digest",
        SevMode::Sev => "sev_launch_digest",
    };
    println!("firmware          {}", hex::encode(fw.sha256()));
    println!("kernel            {}", hex::encode(boot.kernel));
    println!("initrd            {}", hex::encode(boot.initrd));
    println!("cmdline           {}", hex::encode(boot.cmdline));
    println!("hashes page gpa   {page_gpa:#x}");
    println!("{field:<17} {digest}");
    if args.json {
        let obj = serde_json::json!({
            field: digest,
            "mode": args.mode,
            "vcpus": args.vcpus,
            "vcpu_type": args.vcpu_type,
            "vmm": args.vmm,
            "guest_features": format!("{features:#x}"),
            "firmware_sha256": hex::encode(fw.sha256()),
            "kernel_sha256": hex::encode(boot.kernel),
            "initrd_sha256": hex::encode(boot.initrd),
            "cmdline_sha256": hex::encode(boot.cmdline),
            "hashes_page_gpa": format!("{page_gpa:#x}"),
        });
        println!("{obj}");
    }
    Ok(ExitCode::SUCCESS)
}
