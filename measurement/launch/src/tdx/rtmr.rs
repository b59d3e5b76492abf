//! The RTMR[0..2] event sequence of OVMF IntelTdx (edk2-stable202502, as in Debian
//! 2025.02-8+deb13u1) booting a Linux kernel passed with QEMU `-kernel/-initrd/-append`.
//!
//! Extension (TDG.MR.RTMR.EXTEND, TDX Module ABI): `RTMR ← SHA-384(RTMR ‖ digest)`, where the
//! 48-byte digest is what TDVF logs as the event's SHA-384. For most events the digest is
//! SHA-384 of the logged data; the exceptions are noted per event below (EV_EFI_VARIABLE_BOOT
//! hashes only the variable's value, the kernel event is an Authenticode hash).
//!
//! PCR → RTMR mapping (`OvmfPkg/IntelTdx/TdxMeasurementLib`): PCR 1, 7 → RTMR0; PCR 2–6 →
//! RTMR1; PCR 8–15 → RTMR2.

use super::hob::td_hob;
use super::kernel::{authenticode_sha384, qemu_patched_kernel};
use super::tdvf::{TdvfMetadata, TdvfSectionType};
use super::uefi::{
    EFI_GLOBAL_VARIABLE, EFI_IMAGE_SECURITY_DATABASE, driver_config_variable_digest, sha384,
    ui_app_load_option, utf16le,
};
use super::{QemuAcpiDigests, TdxLaunchError, TdxLaunchInputs};

/// One measured event: what it is and the 48-byte digest extended into the RTMR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TdxEvent {
    /// Event type and content, as a TDX event log (CCEL) reader would describe it.
    pub description: String,
    /// The digest extended into the RTMR.
    pub digest: [u8; 48],
}

impl TdxEvent {
    fn new(description: impl Into<String>, digest: [u8; 48]) -> Self {
        Self {
            description: description.into(),
            digest,
        }
    }
}

/// The expected events of RTMR0, RTMR1 and RTMR2, in extension order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TdxEventLog {
    /// `rtmr[i]` lists the events of RTMR i.
    pub rtmr: [Vec<TdxEvent>; 3],
}

/// `RTMR ← SHA-384(RTMR ‖ digest)` over `events`, starting from zero.
pub fn replay(events: &[TdxEvent]) -> [u8; 48] {
    let mut mr = [0u8; 48];
    for e in events {
        let mut buf = [0u8; 96];
        buf[..48].copy_from_slice(&mr);
        buf[48..].copy_from_slice(&e.digest);
        mr = sha384(&buf);
    }
    mr
}

const SEPARATOR: [u8; 4] = [0; 4];

impl TdxEventLog {
    /// Builds the expected events for `inputs`.
    pub fn build(inputs: &TdxLaunchInputs<'_>) -> Result<Self, TdxLaunchError> {
        let metadata = TdvfMetadata::parse(inputs.firmware)?;
        Ok(Self {
            rtmr: [
                rtmr0_events(inputs.firmware, &metadata, inputs.memory_size, inputs.acpi)?,
                rtmr1_events(inputs)?,
                rtmr2_events(inputs.cmdline, inputs.initrd),
            ],
        })
    }
}

/// RTMR0 (PCR 1 and 7 events), in the order TDVF produces them.
fn rtmr0_events(
    firmware: &[u8],
    metadata: &TdvfMetadata,
    memory_size: u64,
    acpi: &QemuAcpiDigests,
) -> Result<Vec<TdxEvent>, TdxLaunchError> {
    let mut ev = Vec::new();
    // SEC (`TdxHelperMeasureTdHob`): EV_EFI_HANDOFF_TABLES2 "TdxTable", SHA-384 of QEMU's HOB.
    ev.push(TdxEvent::new(
        "EV_EFI_HANDOFF_TABLES2 TD HOB",
        sha384(&td_hob(metadata, memory_size)?),
    ));
    // SEC (`TdxHelperMeasureCfvImage`): EV_EFI_PLATFORM_FIRMWARE_BLOB2 over
    // PcdOvmfFlashNvStorageVariableBase..+PcdCfvRawDataSize, i.e. the CFV section's raw bytes
    // (ResetVector.nasmb sets TDX_CFV_RAW_DATA_SIZE = PcdCfvRawDataSize).
    let cfv = metadata.single(TdvfSectionType::Cfv)?;
    let start = cfv.data_offset as usize;
    let cfv_bytes = firmware
        .get(start..start.saturating_add(cfv.raw_data_size as usize))
        .ok_or(TdxLaunchError::SectionOutOfBounds {
            index: u32::MAX,
            offset: u64::from(cfv.data_offset),
            size: u64::from(cfv.raw_data_size),
            len: firmware.len(),
        })?;
    ev.push(TdxEvent::new(
        "EV_EFI_PLATFORM_FIRMWARE_BLOB2 CFV (variable store)",
        sha384(cfv_bytes),
    ));
    // DXE (TdTcg2Dxe `MeasureSecureBootPolicy`, on VariableWriteArch): PCR 7,
    // EV_EFI_VARIABLE_DRIVER_CONFIG, digest over the whole UEFI_VARIABLE_DATA. IntelTdxX64.dsc
    // builds with SECURE_BOOT_ENABLE = FALSE, so all five are absent (data length 0).
    for (vendor, name) in [
        (&EFI_GLOBAL_VARIABLE, "SecureBoot"),
        (&EFI_GLOBAL_VARIABLE, "PK"),
        (&EFI_GLOBAL_VARIABLE, "KEK"),
        (&EFI_IMAGE_SECURITY_DATABASE, "db"),
        (&EFI_IMAGE_SECURITY_DATABASE, "dbx"),
    ] {
        ev.push(TdxEvent::new(
            format!("EV_EFI_VARIABLE_DRIVER_CONFIG {name} (absent)"),
            driver_config_variable_digest(vendor, name),
        ));
    }
    ev.push(TdxEvent::new("EV_SEPARATOR (PCR 7)", sha384(&SEPARATOR)));
    // BDS (`OvmfPkg/Library/AcpiPlatformLib/QemuFwCfgAcpi.c`): PCR 1, EV_PLATFORM_CONFIG_FLAGS
    // "ACPI DATA", first etc/table-loader, then each blob as its ALLOCATE command is processed.
    // QEMU-generated: supplied by the caller.
    ev.push(TdxEvent::new(
        "EV_PLATFORM_CONFIG_FLAGS ACPI DATA etc/table-loader (QEMU-generated)",
        acpi.table_loader,
    ));
    for (i, d) in acpi.allocations.iter().enumerate() {
        ev.push(TdxEvent::new(
            format!("EV_PLATFORM_CONFIG_FLAGS ACPI DATA allocation #{i} (QEMU-generated)"),
            *d,
        ));
    }
    // ReadyToBoot (TdTcg2Dxe `MeasureAllBootVariables`): PCR 1, EV_EFI_VARIABLE_BOOT, digest
    // over the variable *data* only. With -kernel, OVMF signals ReadyToBoot from
    // `TryRunningQemuKernel`, before `EfiBootManagerRefreshAllBootOption`, so the only boot
    // option is Boot0000 (the Boot Manager Menu, UiApp) and BootOrder = { 0x0000 }.
    ev.push(TdxEvent::new(
        "EV_EFI_VARIABLE_BOOT BootOrder = {0000}",
        sha384(&[0, 0]),
    ));
    ev.push(TdxEvent::new(
        "EV_EFI_VARIABLE_BOOT Boot0000 (UiApp)",
        sha384(&ui_app_load_option()),
    ));
    Ok(ev)
}

/// RTMR1 (PCR 2–6 events).
fn rtmr1_events(inputs: &TdxLaunchInputs<'_>) -> Result<Vec<TdxEvent>, TdxLaunchError> {
    let patched = qemu_patched_kernel(
        inputs.kernel,
        inputs.initrd.len(),
        inputs.cmdline,
        inputs.memory_size,
    )?;
    Ok(vec![
        // LoadImage of the kernel (DxeTpm2MeasureBootLib → TdTcg2Dxe, PE_COFF_IMAGE flag):
        // PCR 4, EV_EFI_BOOT_SERVICES_APPLICATION, digest = Authenticode SHA-384.
        TdxEvent::new(
            "EV_EFI_BOOT_SERVICES_APPLICATION kernel (QEMU-patched, Authenticode)",
            authenticode_sha384(&patched)?,
        ),
        // ReadyToBoot (TdTcg2Dxe `OnReadyToBoot`): PCR 4 action, then the separator that
        // TDVF extends into RTMR1 only (RTMR0 got its separator from PCR 7).
        TdxEvent::new(
            "EV_EFI_ACTION Calling EFI Application from Boot Option",
            sha384(b"Calling EFI Application from Boot Option"),
        ),
        TdxEvent::new("EV_SEPARATOR (RTMR1)", sha384(&SEPARATOR)),
        // The kernel's EFI stub calls ExitBootServices (`OnExitBootServices`): PCR 5 actions.
        TdxEvent::new(
            "EV_EFI_ACTION Exit Boot Services Invocation",
            sha384(b"Exit Boot Services Invocation"),
        ),
        TdxEvent::new(
            "EV_EFI_ACTION Exit Boot Services Returned with Success",
            sha384(b"Exit Boot Services Returned with Success"),
        ),
    ])
}

/// The UEFI LoadOptions OVMF gives the kernel (`X86QemuLoadImageLib`, `QemuLoadKernelImage`):
/// the command line, plus " initrd=initrd" when an initrd is present, in UTF-16LE with a
/// terminating NUL; `None` when both are empty (LoadOptions is NULL then).
pub fn kernel_load_options(cmdline: &str, has_initrd: bool) -> Option<Vec<u8>> {
    if cmdline.is_empty() && !has_initrd {
        return None;
    }
    let mut s = String::with_capacity(cmdline.len() + 15);
    s.push_str(cmdline);
    if has_initrd {
        s.push_str(" initrd=initrd");
    }
    s.push('\0');
    Some(utf16le(&s))
}

/// RTMR2 (PCR 8–15). Not TDVF's doing: the Linux EFI stub (≥ 6.9 measures through the CC
/// measurement protocol) logs EV_EVENT_TAG events into PCR 9 — first the LoadOptions
/// ("LOADED_IMAGE::LoadOptions"), then the initrd it loads through LoadFile2 ("Linux initrd");
/// digests are SHA-384 of those bytes.
fn rtmr2_events(cmdline: &str, initrd: &[u8]) -> Vec<TdxEvent> {
    let mut ev = Vec::new();
    if let Some(options) = kernel_load_options(cmdline, !initrd.is_empty()) {
        ev.push(TdxEvent::new(
            "EV_EVENT_TAG LOADED_IMAGE::LoadOptions",
            sha384(&options),
        ));
    }
    if !initrd.is_empty() {
        ev.push(TdxEvent::new("EV_EVENT_TAG Linux initrd", sha384(initrd)));
    }
    ev
}
