//! Expected Intel TDX launch measurements (MRTD, RTMR0–3) for a TD that QEMU starts from an
//! OVMF IntelTdx image with direct kernel boot (`-kernel/-initrd/-append`).
//!
//! * [`Mrtd::from_tdvf`]: MRTD from the TDVF metadata of the firmware ([`mrtd`] module docs
//!   give the TDX module buffer layouts and spec sections).
//! * [`TdxEventLog::build`]: the RTMR0–2 events OVMF (edk2-stable202502) and the Linux EFI
//!   stub extend; [`TdxMeasurements::compute`] replays them. RTMR3 is zero at launch.
//!
//! # Inputs that come from QEMU, not from the image parts
//! * **ACPI tables** (RTMR0): OVMF measures QEMU's fw_cfg `etc/table-loader` and every blob the
//!   loader allocates (for a q35 TD: `etc/acpi/rsdp`, then `etc/acpi/tables`). Their bytes
//!   depend on the QEMU version, machine type, vCPU count, memory size and devices, so they are
//!   an input: [`QemuAcpiDigests`], taken from a trusted boot's TDX event log (CCEL) or from
//!   the blobs dumped from the same QEMU command line. The vCPU count enters only through them.
//! * **TD HOB** (RTMR0): computed here from the TDVF sections and the memory size, following
//!   QEMU's `tdvf-hob.c` for a q35 machine with default `max-ram-below-4g` and no hotplug.
//! * **Kernel setup header** (RTMR1): QEMU patches it (loader type, heap end, command-line
//!   pointer, initrd address/size); the initrd address depends on the memory size. Modelled.
//! * **Boot options** (RTMR0): assumed to be only Boot0000 = UiApp, as OVMF has them when it
//!   runs a `-kernel` (the variable store starts empty: the IntelTdx build emulates it in RAM).
//! * No PCI option ROMs are assumed (a NIC's iPXE ROM would add EV_EFI_BOOT_SERVICES_DRIVER
//!   events to RTMR1): give NICs `romfile=""`.

mod error;
mod hob;
mod kernel;
mod mrtd;
mod rtmr;
mod tdvf;
mod uefi;

#[cfg(test)]
mod tests;

pub use error::TdxLaunchError;
pub use hob::td_hob;
pub use kernel::authenticode_sha384;
pub use mrtd::{Mrtd, PageAddOrder};
pub use rtmr::{TdxEvent, TdxEventLog, kernel_load_options, replay};
pub use tdvf::{TdvfMetadata, TdvfSection, TdvfSectionType};

/// Digests of the QEMU-generated ACPI fw_cfg blobs OVMF measures into RTMR0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QemuAcpiDigests {
    /// SHA-384 of `etc/table-loader`.
    pub table_loader: [u8; 48],
    /// SHA-384 of each blob in the order of the loader's ALLOCATE commands (QEMU prepends
    /// allocations, so for q35: `etc/acpi/rsdp`, then `etc/acpi/tables`).
    pub allocations: Vec<[u8; 48]>,
}

impl QemuAcpiDigests {
    /// Digests from the blobs themselves (as read from QEMU's fw_cfg).
    pub fn from_blobs(table_loader: &[u8], allocations: &[&[u8]]) -> Self {
        Self {
            table_loader: uefi::sha384(table_loader),
            allocations: allocations.iter().map(|b| uefi::sha384(b)).collect(),
        }
    }
}

/// Everything the launch measurements depend on.
#[derive(Debug, Clone, Copy)]
pub struct TdxLaunchInputs<'a> {
    /// The OVMF IntelTdx image (`-bios`).
    pub firmware: &'a [u8],
    /// The bzImage (`-kernel`), a PE/COFF EFI-stub kernel.
    pub kernel: &'a [u8],
    /// The initrd (`-initrd`); empty for none.
    pub initrd: &'a [u8],
    /// The kernel command line (`-append`), without terminator.
    pub cmdline: &'a str,
    /// Guest RAM in bytes (`-m`).
    pub memory_size: u64,
    /// QEMU-generated ACPI data, see the module docs.
    pub acpi: &'a QemuAcpiDigests,
    /// How the host KVM adds and measures TDVF pages.
    pub page_add_order: PageAddOrder,
}

/// Expected TDX measurement registers at launch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TdxMeasurements {
    /// MRTD.
    pub mrtd: [u8; 48],
    /// RTMR0–3; RTMR3 is all zeros at launch.
    pub rtmr: [[u8; 48]; 4],
}

impl TdxMeasurements {
    /// Computes MRTD and replays the expected RTMR0–2 events.
    pub fn compute(inputs: &TdxLaunchInputs<'_>) -> Result<Self, TdxLaunchError> {
        let mrtd = Mrtd::from_tdvf_with_order(inputs.firmware, inputs.page_add_order)?;
        let log = TdxEventLog::build(inputs)?;
        Ok(Self {
            mrtd,
            rtmr: [
                replay(&log.rtmr[0]),
                replay(&log.rtmr[1]),
                replay(&log.rtmr[2]),
                [0; 48],
            ],
        })
    }
}
