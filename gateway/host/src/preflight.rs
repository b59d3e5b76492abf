//! Can this host run the platform it is asked for? Answered before QEMU starts, with a named
//! reason, from the kernel's own interfaces: KVM's `KVM_CAP_VM_TYPES` (the confidential VM
//! types the host kernel and CPU offer: `KVM_X86_SNP_VM`, `KVM_X86_TDX_VM`) through the design
//! card's `kvm-ioctls`, and for SEV-SNP the secure processor's platform status through the
//! `sev` crate's firmware interface (`/dev/sev`, `SNP_PLATFORM_STATUS`): its reported TCB must
//! reach the floor devices enforce, or every node launched here would be refused by them.

use std::ffi::CString;
use std::path::{Path, PathBuf};

use cloister_measurement::floors;
use cloister_measurement::policy::MinTcb;

/// `KVM_CAP_VM_TYPES` (Linux 6.10+): a bit mask of the VM types `KVM_CREATE_VM` accepts.
const KVM_CAP_VM_TYPES: u32 = kvm_bindings::KVM_CAP_VM_TYPES;

/// The platform a host is asked to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Platform {
    /// AMD SEV-SNP guests (KVM's SNP VM type, `/dev/sev` in SNP mode).
    SevSnp,
    /// Intel TDX guests (KVM's TDX VM type).
    Tdx,
    /// QEMU under TCG with the emulated secure processor (no confidentiality: development).
    InsecureEmulated,
    /// Development-mode runtimes as processes (no VM, no confidentiality).
    InsecureDevelopment,
}

impl Platform {
    /// The name the command line takes.
    pub fn name(self) -> &'static str {
        match self {
            Platform::SevSnp => "sev-snp",
            Platform::Tdx => "tdx",
            Platform::InsecureEmulated => "insecure-emulated",
            Platform::InsecureDevelopment => "insecure-development",
        }
    }

    /// The KVM VM type it needs, if any.
    fn vm_type(self) -> Option<u32> {
        match self {
            Platform::SevSnp => Some(kvm_bindings::KVM_X86_SNP_VM),
            Platform::Tdx => Some(kvm_bindings::KVM_X86_TDX_VM),
            _ => None,
        }
    }
}

impl std::str::FromStr for Platform {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            Platform::SevSnp,
            Platform::Tdx,
            Platform::InsecureEmulated,
            Platform::InsecureDevelopment,
        ]
        .into_iter()
        .find(|p| p.name() == s)
        .ok_or_else(|| {
            format!("{s:?} is not sev-snp, tdx, insecure-emulated or insecure-development")
        })
    }
}

/// Why a host cannot run the platform it was asked for.
#[derive(Debug, thiserror::Error)]
pub enum PreflightError {
    /// No KVM device (no virtualisation, or the module is not loaded).
    #[error("{path}: cannot open KVM ({source}); {platform} needs it")]
    NoKvm {
        /// The device path.
        path: PathBuf,
        /// The platform asked for.
        platform: &'static str,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// KVM is there but does not offer the confidential VM type.
    #[error(
        "KVM offers VM types [{offered}] but not {platform}: the host kernel, its firmware or \
         its CPU does not enable it (BIOS settings, kvm_amd.sev_snp=1 or kvm_intel.tdx=1)"
    )]
    VmTypeMissing {
        /// The platform asked for.
        platform: &'static str,
        /// What KVM offers, by name.
        offered: String,
    },
    /// The SEV firmware device could not be opened or asked.
    #[error("{what}: {reason}")]
    SevFirmware {
        /// What was being done.
        what: &'static str,
        /// Why it failed.
        reason: String,
    },
    /// The secure processor's reported TCB is below the floor devices enforce.
    #[error(
        "this {product} host's reported TCB {reported:?} is below the devices' floor {floor:?} \
         ({origin}): every node launched here would be refused; update the firmware and \
         microcode first"
    )]
    HostTcbBelowFloor {
        /// The product.
        product: &'static str,
        /// What the secure processor reports.
        reported: MinTcb,
        /// The floor.
        floor: MinTcb,
        /// Where the floor comes from.
        origin: &'static str,
    },
    /// The CPU is not one of the SNP products the verifier knows.
    #[error("the CPU is not an SEV-SNP product devices know (Milan, Genoa, Turin): {0}")]
    UnknownProduct(String),
}

/// What the preflight found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostReport {
    /// The platform it checked for.
    pub platform: Platform,
    /// The VM types KVM offers (names), when KVM was asked.
    pub vm_types: Option<Vec<&'static str>>,
    /// The SNP host's product and reported TCB, when asked.
    pub snp_tcb: Option<(&'static str, MinTcb)>,
}

/// KVM's VM type names, by bit.
fn vm_type_names(mask: u32) -> Vec<&'static str> {
    [
        (kvm_bindings::KVM_X86_DEFAULT_VM, "default"),
        (kvm_bindings::KVM_X86_SW_PROTECTED_VM, "sw-protected"),
        (kvm_bindings::KVM_X86_SEV_VM, "sev"),
        (kvm_bindings::KVM_X86_SEV_ES_VM, "sev-es"),
        (kvm_bindings::KVM_X86_SNP_VM, "sev-snp"),
        (kvm_bindings::KVM_X86_TDX_VM, "tdx"),
    ]
    .into_iter()
    .filter(|(bit, _)| mask & (1 << bit) != 0)
    .map(|(_, name)| name)
    .collect()
}

/// The VM types the KVM device at `path` offers, as a bit mask (0 on kernels before 6.10,
/// which know only the default type: a confidential host needs a later one).
pub fn kvm_vm_types(path: &Path, platform: Platform) -> Result<u32, PreflightError> {
    let no_kvm = |source| PreflightError::NoKvm {
        path: path.to_owned(),
        platform: platform.name(),
        source,
    };
    let c = CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|e| no_kvm(std::io::Error::other(e)))?;
    let kvm = kvm_ioctls::Kvm::new_with_path(&c)
        .map_err(|e| no_kvm(std::io::Error::from_raw_os_error(e.errno())))?;
    let mask = kvm.check_extension_raw(libc_ulong(KVM_CAP_VM_TYPES));
    Ok(u32::try_from(mask).unwrap_or(0))
}

fn libc_ulong(v: u32) -> std::os::raw::c_ulong {
    std::os::raw::c_ulong::from(v)
}

/// Checks that this host can run `platform`: the KVM device at `kvm` offers its VM type and,
/// for SEV-SNP, the secure processor's reported TCB reaches the shipped floor.
pub fn check(platform: Platform, kvm: &Path) -> Result<HostReport, PreflightError> {
    let Some(wanted) = platform.vm_type() else {
        return Ok(HostReport {
            platform,
            vm_types: None,
            snp_tcb: None,
        });
    };
    let mask = kvm_vm_types(kvm, platform)?;
    let offered = vm_type_names(mask);
    if mask & (1 << wanted) == 0 {
        return Err(PreflightError::VmTypeMissing {
            platform: platform.name(),
            offered: offered.join(", "),
        });
    }
    let snp_tcb = match platform {
        Platform::SevSnp => Some(snp_host_tcb()?),
        _ => None,
    };
    Ok(HostReport {
        platform,
        vm_types: Some(offered),
        snp_tcb,
    })
}

/// The SNP host's product and reported TCB, checked against the shipped floor.
fn snp_host_tcb() -> Result<(&'static str, MinTcb), PreflightError> {
    let fw_err = |what| {
        move |e: &dyn std::fmt::Display| PreflightError::SevFirmware {
            what,
            reason: e.to_string(),
        }
    };
    let mut fw =
        sev::firmware::host::Firmware::open().map_err(|e| fw_err("opening /dev/sev")(&e))?;
    let status = fw
        .snp_platform_status()
        .map_err(|e| fw_err("SNP_PLATFORM_STATUS")(&e))?;
    let generation = sev::Generation::identify_host_generation()
        .map_err(|e| PreflightError::UnknownProduct(e.to_string()))?;
    let product = match generation {
        sev::Generation::Milan => "Milan",
        sev::Generation::Genoa => "Genoa",
        sev::Generation::Turin => "Turin",
        _ => {
            return Err(PreflightError::UnknownProduct(
                "a generation after Turin".into(),
            ));
        }
    };
    let t = status.reported_tcb_version;
    let reported = MinTcb {
        bootloader: t.bootloader,
        tee: t.tee,
        snp: t.snp,
        microcode: t.microcode,
        fmc: t.fmc.unwrap_or(0),
    };
    reaches_floor(product, cpuid_from_proc(), reported)?;
    Ok((product, reported))
}

/// Whether `reported` reaches `product`'s shipped floor (for this CPUID's stepping when known),
/// component by component.
pub fn reaches_floor(
    product: &'static str,
    cpuid: Option<(u8, u8, u8)>,
    reported: MinTcb,
) -> Result<(), PreflightError> {
    let Some(floor) = floors::shipped(product, cpuid) else {
        return Err(PreflightError::UnknownProduct(product.into()));
    };
    let f = floor.min;
    let below = reported.bootloader < f.bootloader
        || reported.tee < f.tee
        || reported.snp < f.snp
        || reported.microcode < f.microcode
        || reported.fmc < f.fmc;
    if below {
        return Err(PreflightError::HostTcbBelowFloor {
            product,
            reported,
            floor: f,
            origin: floor.source,
        });
    }
    Ok(())
}

/// The first CPU's (family, model, stepping) from `/proc/cpuinfo`.
fn cpuid_from_proc() -> Option<(u8, u8, u8)> {
    let text = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    parse_cpuinfo(&text)
}

fn parse_cpuinfo(text: &str) -> Option<(u8, u8, u8)> {
    let field = |name: &str| {
        text.lines()
            .find(|l| l.split(':').next().is_some_and(|k| k.trim() == name))
            .and_then(|l| l.split(':').nth(1))
            .and_then(|v| v.trim().parse::<u8>().ok())
    };
    Some((field("cpu family")?, field("model")?, field("stepping")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platforms_parse_by_name() {
        for p in [
            Platform::SevSnp,
            Platform::Tdx,
            Platform::InsecureEmulated,
            Platform::InsecureDevelopment,
        ] {
            assert_eq!(p.name().parse::<Platform>(), Ok(p));
        }
        assert!("snp".parse::<Platform>().is_err());
        assert!("emulated".parse::<Platform>().is_err());
    }

    #[test]
    fn vm_type_bits_are_named() {
        assert_eq!(vm_type_names(0b1), vec!["default"]);
        assert_eq!(
            vm_type_names(0b11_1101),
            vec!["default", "sev", "sev-es", "sev-snp", "tdx"]
        );
    }

    #[test]
    fn a_missing_kvm_device_is_named() {
        let e = check(Platform::SevSnp, Path::new("/nonexistent/kvm")).expect_err("no kvm");
        assert!(matches!(e, PreflightError::NoKvm { .. }), "{e}");
        // Development needs no KVM at all.
        let r = check(Platform::InsecureDevelopment, Path::new("/nonexistent/kvm"))
            .expect("development");
        assert_eq!(r.vm_types, None);
    }

    /// This machine's KVM (an emulated hypervisor) offers the default type only: both
    /// confidential platforms are refused before any QEMU starts.
    #[test]
    #[ignore = "full tier: needs /dev/kvm (cargo xtask test)"]
    fn this_hosts_kvm_offers_neither_confidential_type() {
        let kvm = Path::new("/dev/kvm");
        let mask = kvm_vm_types(kvm, Platform::SevSnp).expect("/dev/kvm opens");
        assert_eq!(mask & (1 << kvm_bindings::KVM_X86_SNP_VM), 0);
        for p in [Platform::SevSnp, Platform::Tdx] {
            let e = check(p, kvm).expect_err("refused");
            match e {
                PreflightError::VmTypeMissing { platform, offered } => {
                    assert_eq!(platform, p.name());
                    assert!(!offered.contains("sev-snp") && !offered.contains("tdx"));
                }
                other => panic!("{other}"),
            }
        }
    }

    #[test]
    fn the_host_tcb_is_held_to_the_devices_floor() {
        let milan = floors::shipped("Milan", None).expect("floor").min;
        reaches_floor("Milan", None, milan).expect("at the floor");
        let mut low = milan;
        low.snp -= 1;
        let e = reaches_floor("Milan", None, low).expect_err("below");
        assert!(
            matches!(
                e,
                PreflightError::HostTcbBelowFloor {
                    product: "Milan",
                    ..
                }
            ),
            "{e}"
        );
        // A stepping's own row (Milan B1, microcode 0xDB) is stricter than the product's.
        let b1 = floors::shipped("Milan", Some((0x19, 0x01, 0x01)))
            .expect("row")
            .min;
        let mut old_ucode = b1;
        old_ucode.microcode = 0xD5;
        assert!(reaches_floor("Milan", Some((0x19, 0x01, 0x01)), old_ucode).is_err());
        assert!(matches!(
            reaches_floor("Rome", None, b1),
            Err(PreflightError::UnknownProduct(_))
        ));
    }

    #[test]
    fn cpuinfo_gives_family_model_stepping() {
        let text = "processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\n\
                    model\t\t: 1\nmodel name\t: AMD EPYC 7763 64-Core Processor\nstepping\t: 1\n";
        assert_eq!(parse_cpuinfo(text), Some((25, 1, 1)));
        assert_eq!(parse_cpuinfo("model name : x\n"), None);
    }
}
