//! `cargo xtask measure`: the expected launch measurements of an image, from its parts alone.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use cloister_guest_image::firmware;
use cloister_launch::sev::{AmdLaunch, AmdSevFirmware, SevMode, vcpu_type, vmm_type};
use cloister_launch::tdx::{PageAddOrder, QemuAcpiDigests, TdxLaunchInputs, TdxMeasurements};

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
    /// TDX: guest memory in MiB (`-m`; it decides the TD HOB and the initrd address).
    #[arg(long, default_value_t = 2048)]
    memory_mib: u64,
    /// TDX: a directory with QEMU's ACPI fw_cfg blobs (`table-loader`, `rsdp`, `tables`) as
    /// the same QEMU command line produces them; RTMR0 depends on them.
    #[arg(long)]
    acpi_dir: Option<PathBuf>,
    /// TDX: the older out-of-tree KVM's page order (all PAGE.ADDs, then all MR.EXTENDs).
    #[arg(long)]
    two_pass_page_add: bool,
    /// End with one JSON object.
    #[arg(long)]
    json: bool,
}

pub fn run(args: &Args) -> Result<ExitCode> {
    let Some(kernel) = &args.kernel else {
        bail!("no guest image is built yet: give --kernel [--initrd] [--append]");
    };
    match args.platform.as_str() {
        "snp" => run_snp(args, kernel),
        "tdx" => run_tdx(args, kernel),
        other => bail!("--platform must be snp or tdx, not {other:?}"),
    }
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

fn run_tdx(args: &Args, kernel: &Path) -> Result<ExitCode> {
    let fw_path = match &args.firmware {
        Some(p) => p.clone(),
        None => firmware::ensure(&cloister_guest_image::cache_root(), false)?
            .inteltdx
            .clone(),
    };
    let fw = read(&fw_path)?;
    let kernel = read(kernel)?;
    let initrd = match &args.initrd {
        Some(p) => read(p)?,
        None => Vec::new(),
    };
    let acpi = match &args.acpi_dir {
        Some(dir) => {
            let blob = |n: &str| read(&dir.join(n));
            let (loader, rsdp, tables) = (blob("table-loader")?, blob("rsdp")?, blob("tables")?);
            Some(QemuAcpiDigests::from_blobs(&loader, &[&rsdp, &tables]))
        }
        None => None,
    };
    // RTMR1 and RTMR2 do not depend on the ACPI blobs; without them RTMR0 is not printed.
    let placeholder = QemuAcpiDigests::from_blobs(&[], &[]);
    let inputs = TdxLaunchInputs {
        firmware: &fw,
        kernel: &kernel,
        initrd: &initrd,
        cmdline: args.append.as_deref().unwrap_or(""),
        memory_size: args.memory_mib << 20,
        acpi: acpi.as_ref().unwrap_or(&placeholder),
        page_add_order: if args.two_pass_page_add {
            PageAddOrder::TwoPass
        } else {
            PageAddOrder::PerPage
        },
    };
    let m = TdxMeasurements::compute(&inputs)?;
    let rtmr0 = acpi.as_ref().map(|_| hex::encode(m.rtmr[0]));
    println!("mrtd    {}", hex::encode(m.mrtd));
    match &rtmr0 {
        Some(r) => println!("rtmr0   {r}"),
        None => println!("rtmr0   (needs QEMU's ACPI blobs: --acpi-dir)"),
    }
    println!("rtmr1   {}", hex::encode(m.rtmr[1]));
    println!("rtmr2   {}", hex::encode(m.rtmr[2]));
    println!("rtmr3   {}", hex::encode(m.rtmr[3]));
    if args.json {
        let obj = serde_json::json!({
            "mrtd": hex::encode(m.mrtd),
            "rtmr0": rtmr0,
            "rtmr1": hex::encode(m.rtmr[1]),
            "rtmr2": hex::encode(m.rtmr[2]),
            "rtmr3": hex::encode(m.rtmr[3]),
            "memory_mib": args.memory_mib,
            "firmware_sha256": cloister_guest_image::digest::sha256_file(&fw_path)?,
        });
        println!("{obj}");
    }
    Ok(ExitCode::SUCCESS)
}

fn run_snp(args: &Args, kernel: &Path) -> Result<ExitCode> {
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
