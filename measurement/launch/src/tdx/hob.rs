//! The TD HOB QEMU writes into the TD_HOB section, which TDVF measures first into RTMR0.
//!
//! QEMU (`hw/i386/tdvf-hob.c`, `tdvf_hob_create`; `target/i386/kvm/tdx.c`,
//! `tdx_init_ram_entries` / `tdx_accept_ram_range`) builds:
//! 1. a PHIT HOB (EFI_HOB_HANDOFF_INFO_TABLE, 56 bytes): type 1, version 9, boot mode 0,
//!    memory fields 0, EfiEndOfHobList = guest address just past the end-of-list HOB;
//! 2. one resource descriptor HOB (48 bytes, type 3, owner zero) per RAM entry, sorted by
//!    address: the e820 RAM ranges, with each TD_HOB/TempMem section carved out as
//!    EFI_RESOURCE_SYSTEM_MEMORY (0), the rest EFI_RESOURCE_MEMORY_UNACCEPTED (7); attributes
//!    PRESENT|INITIALIZED|TESTED (7) for both;
//! 3. an end-of-list HOB (type 0xFFFF, 8 bytes).
//!
//! TDVF (`OvmfPkg/IntelTdx/TdxHelperLib/SecTdxHelper.c`, `TdxHelperMeasureTdHob`) hashes from
//! the start of the list up to, not including, the end-of-list HOB, and logs it as
//! EV_EFI_HANDOFF_TABLES2 into RTMR0.
//!
//! The e820 RAM ranges are those of QEMU's q35 machine (`hw/i386/pc_q35.c`): below 4 GiB
//! `min(ram, lowmem)` where lowmem is 2 GiB when ram ≥ 0xB000_0000 and 0xB000_0000 otherwise;
//! the rest at 4 GiB. This assumes the default `max-ram-below-4g` and no memory hotplug.

use super::TdxLaunchError;
use super::tdvf::{TdvfMetadata, TdvfSectionType};

const EFI_HOB_TYPE_HANDOFF: u16 = 1;
const EFI_HOB_TYPE_RESOURCE_DESCRIPTOR: u16 = 3;
const EFI_HOB_HANDOFF_TABLE_VERSION: u32 = 9;
const EFI_RESOURCE_SYSTEM_MEMORY: u32 = 0;
const EFI_RESOURCE_MEMORY_UNACCEPTED: u32 = 7;
/// PRESENT | INITIALIZED | TESTED.
const TDVF_RESOURCE_ATTRIBUTES: u32 = 0x7;
const PHIT_LEN: usize = 56;
const RESOURCE_LEN: usize = 48;
const END_HOB_LEN: u64 = 8;

const GIB: u64 = 1 << 30;

/// QEMU q35's split of guest RAM into (below 4 GiB, above 4 GiB) sizes.
pub(crate) fn q35_ram_split(memory_size: u64) -> (u64, u64) {
    let lowmem = if memory_size >= 0xB000_0000 {
        0x8000_0000
    } else {
        0xB000_0000
    };
    if memory_size >= lowmem {
        (lowmem, memory_size - lowmem)
    } else {
        (memory_size, 0)
    }
}

#[derive(Debug, Clone, Copy)]
struct RamEntry {
    start: u64,
    len: u64,
    accepted: bool,
}

/// Splits the unaccepted entry containing `[start, start+len)` the way `tdx_accept_ram_range`
/// does; a range not inside one RAM entry is an error (QEMU would fail the launch).
fn accept(
    entries: &mut Vec<RamEntry>,
    start: u64,
    len: u64,
    memory_size: u64,
) -> Result<(), TdxLaunchError> {
    let end = start + len;
    let i = entries
        .iter()
        .position(|e| !e.accepted && e.start <= start && end <= e.start + e.len)
        .ok_or(TdxLaunchError::BadMemorySize { memory_size })?;
    let e = entries[i];
    entries[i] = RamEntry {
        start,
        len,
        accepted: true,
    };
    if start > e.start {
        entries.push(RamEntry {
            start: e.start,
            len: start - e.start,
            accepted: false,
        });
    }
    if end < e.start + e.len {
        entries.push(RamEntry {
            start: end,
            len: e.start + e.len - end,
            accepted: false,
        });
    }
    Ok(())
}

/// The bytes of the TD HOB list as measured by TDVF (without the end-of-list HOB).
pub fn td_hob(metadata: &TdvfMetadata, memory_size: u64) -> Result<Vec<u8>, TdxLaunchError> {
    let hob_section = metadata.single(TdvfSectionType::TdHob)?;
    let (below, above) = q35_ram_split(memory_size);
    let mut entries = vec![RamEntry {
        start: 0,
        len: below,
        accepted: false,
    }];
    if above > 0 {
        entries.push(RamEntry {
            start: 4 * GIB,
            len: above,
            accepted: false,
        });
    }
    for s in &metadata.sections {
        if matches!(
            s.section_type,
            TdvfSectionType::TdHob | TdvfSectionType::TempMem
        ) && s.memory_data_size > 0
        {
            accept(
                &mut entries,
                s.memory_address,
                s.memory_data_size,
                memory_size,
            )?;
        }
    }
    entries.retain(|e| e.len > 0);
    entries.sort_by_key(|e| e.start);

    let total = PHIT_LEN + entries.len() * RESOURCE_LEN;
    let needed = total as u64 + END_HOB_LEN;
    if needed > hob_section.memory_data_size {
        return Err(TdxLaunchError::HobOverflow {
            needed,
            available: hob_section.memory_data_size,
        });
    }
    let mut hob = Vec::with_capacity(total);
    // PHIT: header {type, length, reserved}, version, boot mode, 4 memory fields, end of list.
    hob.extend_from_slice(&EFI_HOB_TYPE_HANDOFF.to_le_bytes());
    hob.extend_from_slice(&(PHIT_LEN as u16).to_le_bytes());
    hob.extend_from_slice(&0u32.to_le_bytes());
    hob.extend_from_slice(&EFI_HOB_HANDOFF_TABLE_VERSION.to_le_bytes());
    hob.extend_from_slice(&0u32.to_le_bytes());
    hob.extend_from_slice(&[0u8; 32]);
    hob.extend_from_slice(&(hob_section.memory_address + needed).to_le_bytes());
    for e in &entries {
        let resource_type = if e.accepted {
            EFI_RESOURCE_SYSTEM_MEMORY
        } else {
            EFI_RESOURCE_MEMORY_UNACCEPTED
        };
        hob.extend_from_slice(&EFI_HOB_TYPE_RESOURCE_DESCRIPTOR.to_le_bytes());
        hob.extend_from_slice(&(RESOURCE_LEN as u16).to_le_bytes());
        hob.extend_from_slice(&0u32.to_le_bytes());
        hob.extend_from_slice(&[0u8; 16]); // Owner GUID: zero.
        hob.extend_from_slice(&resource_type.to_le_bytes());
        hob.extend_from_slice(&TDVF_RESOURCE_ATTRIBUTES.to_le_bytes());
        hob.extend_from_slice(&e.start.to_le_bytes());
        hob.extend_from_slice(&e.len.to_le_bytes());
    }
    Ok(hob)
}
