//! Expected AMD SEV / SEV-ES / SEV-SNP launch digests of an AmdSev OVMF launch with measured
//! direct boot, for any vCPU count and type, computed from the image's parts.
//!
//! The firmware is parsed once (the `sev` crate's `OVMF`: footer table, SEV metadata sections,
//! reset vector) and its pages folded once; each configuration then costs only its metadata
//! pages and VMSAs. Launch sequences follow QEMU's (`target/i386/sev.c`): SNP — firmware pages,
//! then every SEV metadata section in order (zero, secrets, CPUID, the kernel-hashes page,
//! SVSM CAA), then one VMSA per vCPU; SEV-ES — SHA-256 of firmware ‖ hashes table ‖ VMSAs;
//! SEV — SHA-256 of firmware ‖ hashes table. The `sev` crate's SEV and SEV-ES digests exist only
//! with its OpenSSL backend, which Cloister does not build, hence the two lines here.

use std::path::Path;
use std::str::FromStr;

use sev::measurement::ovmf::{OVMF, SectionType};
use sev::measurement::vcpu_types::CpuType;
use sev::measurement::vmsa::{GuestFeatures, VMMType, VMSA};
use sha2::{Digest as _, Sha256};

use super::LaunchError;
use super::gctx::{Gctx, PageType};
use super::hashes::BootHashes;

/// Which SEV generation launches the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SevMode {
    /// SEV: SHA-256 launch measurement of the initial memory.
    Sev,
    /// SEV-ES: as SEV, plus the initial register state (VMSAs).
    SevEs,
    /// SEV-SNP: the 48-byte MEASUREMENT of the attestation report.
    Snp,
}

impl FromStr for SevMode {
    type Err = LaunchError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "sev" => Ok(SevMode::Sev),
            "seves" | "sev-es" => Ok(SevMode::SevEs),
            "snp" | "sev-snp" => Ok(SevMode::Snp),
            other => Err(LaunchError::UnknownMode(other.chars().take(40).collect())),
        }
    }
}

/// QEMU's names of the EPYC vCPU models (`-cpu NAME`), as sev-snp-measure takes them.
const VCPU_TYPES: [(&str, CpuType); 17] = [
    ("EPYC", CpuType::Epyc),
    ("EPYC-v1", CpuType::EpycV1),
    ("EPYC-v2", CpuType::EpycV2),
    ("EPYC-IBPB", CpuType::EpycIBPB),
    ("EPYC-v3", CpuType::EpycV3),
    ("EPYC-v4", CpuType::EpycV4),
    ("EPYC-Rome", CpuType::EpycRome),
    ("EPYC-Rome-v1", CpuType::EpycRomeV1),
    ("EPYC-Rome-v2", CpuType::EpycRomeV2),
    ("EPYC-Rome-v3", CpuType::EpycRomeV3),
    ("EPYC-Milan", CpuType::EpycMilan),
    ("EPYC-Milan-v1", CpuType::EpycMilanV1),
    ("EPYC-Milan-v2", CpuType::EpycMilanV2),
    ("EPYC-Genoa", CpuType::EpycGenoa),
    ("EPYC-Genoa-v1", CpuType::EpycGenoaV1),
    ("EPYC-Turin", CpuType::EpycTurin),
    ("EPYC-Turin-v1", CpuType::EpycTurinV1),
];

/// Parses a QEMU EPYC model name (case-insensitive).
pub fn vcpu_type(name: &str) -> Result<CpuType, LaunchError> {
    VCPU_TYPES
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, t)| *t)
        .ok_or_else(|| LaunchError::UnknownVcpuType(name.chars().take(40).collect()))
}

/// The VMM that launches the guest (it decides some VMSA fields and the CPUID page order).
pub fn vmm_type(name: &str) -> Result<VMMType, LaunchError> {
    VMMType::from_str(name).map_err(|_| LaunchError::UnknownVmm(name.chars().take(40).collect()))
}

/// One launch configuration.
#[derive(Debug, Clone, Copy)]
pub struct AmdLaunch {
    /// SEV generation.
    pub mode: SevMode,
    /// Number of vCPUs (one VMSA each).
    pub vcpus: u32,
    /// vCPU model.
    pub vcpu_type: CpuType,
    /// VMM.
    pub vmm: VMMType,
    /// SEV_FEATURES of the VMSAs (SNP; 0x1 = SNPActive, what QEMU sets by default).
    pub guest_features: u64,
    /// Measured direct boot inputs; `None` for a firmware-only launch.
    pub boot: Option<BootHashes>,
}

/// An AmdSev OVMF image, parsed and pre-hashed.
pub struct AmdSevFirmware {
    ovmf: OVMF,
    sha256: [u8; 32],
    snp_after_firmware: [u8; 48],
    sev_after_firmware: Sha256,
}

impl std::fmt::Debug for AmdSevFirmware {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmdSevFirmware")
            .field("sha256", &hex::encode(self.sha256))
            .field("gpa", &format_args!("{:#x}", self.ovmf.gpa()))
            .finish_non_exhaustive()
    }
}

impl AmdSevFirmware {
    /// Loads and pre-hashes an OVMF image.
    pub fn load(path: &Path) -> Result<Self, LaunchError> {
        let ovmf = OVMF::new(path.to_owned()).map_err(|e| LaunchError::Firmware(e.to_string()))?;
        let data = ovmf.data();
        if data.is_empty() || data.len() % 4096 != 0 {
            return Err(LaunchError::Firmware(format!(
                "{} bytes is not a whole number of pages",
                data.len()
            )));
        }
        // The page digests (SHA-384) and the SEV/SEV-ES prefix (SHA-256 of the whole image)
        // are independent: compute them side by side.
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let (digests, sev) = std::thread::scope(|s| {
            let sev = s.spawn(|| {
                let mut h = Sha256::new();
                h.update(data);
                h
            });
            let digests = Gctx::page_digests(data, threads);
            (digests, sev.join())
        });
        let sev = sev.map_err(|_| LaunchError::Firmware("hashing thread failed".to_owned()))?;
        if digests.len() != data.len() / 4096 {
            return Err(LaunchError::Firmware("hashing thread failed".to_owned()));
        }
        let mut g = Gctx::default();
        g.normal_page_digests(ovmf.gpa(), &digests);
        Ok(AmdSevFirmware {
            sha256: sev.clone().finalize().into(),
            snp_after_firmware: g.digest(),
            sev_after_firmware: sev,
            ovmf,
        })
    }

    /// Loads the firmware and hashes the boot inputs side by side (what a one-shot measurement
    /// costs is mostly hashing; the firmware's and the kernel's are independent).
    pub fn load_with_boot(
        firmware: &Path,
        kernel: &Path,
        initrd: Option<&Path>,
        cmdline: Option<&str>,
    ) -> Result<(Self, BootHashes), LaunchError> {
        let read = |p: &Path| {
            std::fs::read(p).map_err(|source| LaunchError::Io {
                path: p.to_owned(),
                source,
            })
        };
        std::thread::scope(|s| {
            let boot = s.spawn(|| -> Result<BootHashes, LaunchError> {
                let k = read(kernel)?;
                let i = initrd.map(read).transpose()?.unwrap_or_default();
                BootHashes::new(&k, &i, cmdline)
            });
            let fw = Self::load(firmware)?;
            let boot = boot
                .join()
                .map_err(|_| LaunchError::Firmware("hashing thread failed".to_owned()))??;
            Ok((fw, boot))
        })
    }

    /// SHA-256 of the image.
    pub fn sha256(&self) -> [u8; 32] {
        self.sha256
    }

    /// GPA of the SEV hashes table, from the firmware's metadata.
    pub fn hashes_table_gpa(&self) -> Result<u64, LaunchError> {
        self.ovmf
            .sev_hashes_table_gpa()
            .map_err(|_| LaunchError::NoHashesTable)
    }

    /// The hashes page QEMU would fill for `kernel-hashes=on`, and the GPA of its page.
    pub fn hashes_page(&self, boot: &BootHashes) -> Result<(u64, [u8; 4096]), LaunchError> {
        let gpa = self.hashes_table_gpa()?;
        Ok((gpa & !0xfff, boot.page((gpa & 0xfff) as usize)?))
    }

    fn vmsa_pages(&self, cfg: &AmdLaunch, features: u64) -> Result<Vec<Vec<u8>>, LaunchError> {
        if cfg.vcpus == 0 {
            return Err(LaunchError::NoVcpus);
        }
        let eip = self
            .ovmf
            .sev_es_reset_eip()
            .map_err(|e| LaunchError::Firmware(e.to_string()))?;
        VMSA::new(
            eip.into(),
            cfg.vcpu_type,
            cfg.vmm,
            Some(u64::from(cfg.vcpus)),
            GuestFeatures(features),
        )
        .pages(cfg.vcpus as usize)
        .map_err(|e| LaunchError::Vmsa(e.to_string()))
    }

    /// The launch digest: 48 bytes for SNP, 32 for SEV and SEV-ES.
    pub fn launch_digest(&self, cfg: &AmdLaunch) -> Result<Vec<u8>, LaunchError> {
        match cfg.mode {
            SevMode::Snp => self.snp_launch_digest(cfg).map(|d| d.to_vec()),
            SevMode::Sev | SevMode::SevEs => {
                let mut h = self.sev_after_firmware.clone();
                if let Some(boot) = &cfg.boot {
                    if !self.ovmf.is_sev_hashes_table_supported() {
                        return Err(LaunchError::NoHashesTable);
                    }
                    h.update(boot.table());
                }
                if cfg.mode == SevMode::SevEs {
                    for page in self.vmsa_pages(cfg, 0)? {
                        h.update(&page);
                    }
                }
                Ok(h.finalize().to_vec())
            }
        }
    }

    /// The SNP launch digest (the report's MEASUREMENT).
    pub fn snp_launch_digest(&self, cfg: &AmdLaunch) -> Result<[u8; 48], LaunchError> {
        let mut g = Gctx::from_digest(self.snp_after_firmware);
        let ec2 = cfg.vmm == VMMType::EC2;
        for s in self.ovmf.metadata_items() {
            let (gpa, size) = (u64::from(s.gpa), s.size as usize);
            match s.section_type {
                SectionType::SnpSecMemory | SectionType::SvsmCaa => {
                    g.typed_pages(PageType::Zero, gpa, size)
                }
                SectionType::SnpSecrets => g.typed_pages(PageType::Secrets, gpa, 4096),
                // EC2 measures the CPUID page after all other sections.
                SectionType::Cpuid if !ec2 => g.typed_pages(PageType::Cpuid, gpa, 4096),
                SectionType::Cpuid => {}
                SectionType::SnpKernelHashes => match &cfg.boot {
                    Some(boot) => {
                        let (_, page) = self.hashes_page(boot)?;
                        if size != page.len() {
                            return Err(LaunchError::Firmware(format!(
                                "kernel hashes section is {size:#x} bytes, expected one page"
                            )));
                        }
                        g.normal_pages(gpa, &page);
                    }
                    None => g.typed_pages(PageType::Zero, gpa, size),
                },
            }
        }
        if ec2 {
            for s in self.ovmf.metadata_items() {
                if s.section_type == SectionType::Cpuid {
                    g.typed_pages(PageType::Cpuid, u64::from(s.gpa), 4096);
                }
            }
        }
        if cfg.boot.is_some() && !self.ovmf.has_metadata_section(SectionType::SnpKernelHashes) {
            return Err(LaunchError::NoHashesTable);
        }
        for page in self.vmsa_pages(cfg, cfg.guest_features)? {
            g.vmsa_page(&page);
        }
        Ok(g.digest())
    }
}
