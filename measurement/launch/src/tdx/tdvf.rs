//! TDVF metadata: where the VMM finds it in an OVMF image and what its sections say.
//!
//! Layout references:
//! * OVMF GUIDed footer table: edk2 `OvmfPkg/ResetVector/Ia16/ResetVectorVtf0.asm` — the
//!   footer GUID `96b582de-1fb2-45f7-baea-a366c55a082d` sits at 4 GiB − 0x30 (48 bytes before
//!   the end of the image), preceded by the u16 length of the whole table (footer included).
//!   Entries are `data ‖ u16 length(data+18) ‖ GUID`, walked backwards from the footer.
//!   QEMU parses it the same way (`hw/i386/pc_sysfw_ovmf.c`).
//! * The TDX metadata offset entry (GUID `e47a6535-984a-4798-865e-4685a7bf8ec2`) holds a u32:
//!   the distance from the end of the image to the `TDVF` descriptor.
//! * Intel "TDX Virtual Firmware Design Guide", §11 "TDVF Metadata" (TDVF_DESCRIPTOR:
//!   Signature "TDVF", Length, Version = 1, NumberOfSectionEntry; TDVF_SECTION: DataOffset u32,
//!   RawDataSize u32, MemoryAddress u64, MemoryDataSize u64, Type u32, Attributes u32;
//!   types 0 BFV, 1 CFV, 2 TD_HOB, 3 TempMem (4 PermMem, 5 Payload, 6 PayloadParam);
//!   attribute bit 0 MR.EXTEND, bit 1 PAGE.AUG). edk2's copy is
//!   `OvmfPkg/ResetVector/X64/IntelTdxMetadata.asm`.
//! * Checks mirror QEMU's `hw/i386/tdvf.c` (`tdvf_parse_and_check_section_entry`): sizes and
//!   addresses page aligned, RawDataSize ≤ MemoryDataSize, BFV/CFV carry raw data, TD_HOB/TempMem
//!   carry none, any other type is refused.

use super::TdxLaunchError;

/// 4 KiB, the TDX page and TDVF alignment unit.
pub(crate) const PAGE_SIZE: u64 = 0x1000;

/// Bytes after the footer GUID: the footer GUID starts at 4 GiB − 0x30.
const BYTES_AFTER_FOOTER_GUID: usize = 32;

/// `96b582de-1fb2-45f7-baea-a366c55a082d` in its on-disk (mixed-endian) byte order.
const FOOTER_GUID: [u8; 16] = guid_bytes(
    0x96b5_82de,
    0x1fb2,
    0x45f7,
    [0xba, 0xea, 0xa3, 0x66, 0xc5, 0x5a, 0x08, 0x2d],
);

/// `e47a6535-984a-4798-865e-4685a7bf8ec2`, the TDX metadata offset entry.
const TDX_METADATA_OFFSET_GUID: [u8; 16] = guid_bytes(
    0xe47a_6535,
    0x984a,
    0x4798,
    [0x86, 0x5e, 0x46, 0x85, 0xa7, 0xbf, 0x8e, 0xc2],
);

/// Size of a GUIDed table entry trailer: u16 length + GUID.
const ENTRY_TRAILER: usize = 18;
/// TDVF_DESCRIPTOR is 16 bytes, each TDVF_SECTION 32.
const DESCRIPTOR_LEN: usize = 16;
const SECTION_LEN: usize = 32;

/// EFI GUID in its in-memory byte order (first three fields little-endian).
pub(crate) const fn guid_bytes(d1: u32, d2: u16, d3: u16, d4: [u8; 8]) -> [u8; 16] {
    let a = d1.to_le_bytes();
    let b = d2.to_le_bytes();
    let c = d3.to_le_bytes();
    [
        a[0], a[1], a[2], a[3], b[0], b[1], c[0], c[1], d4[0], d4[1], d4[2], d4[3], d4[4], d4[5],
        d4[6], d4[7],
    ]
}

pub(crate) fn le_u16(b: &[u8], at: usize) -> Option<u16> {
    let s = b.get(at..at.checked_add(2)?)?;
    Some(u16::from_le_bytes([s[0], s[1]]))
}

pub(crate) fn le_u32(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

pub(crate) fn le_u64(b: &[u8], at: usize) -> Option<u64> {
    let s = b.get(at..at.checked_add(8)?)?;
    let mut a = [0u8; 8];
    a.copy_from_slice(s);
    Some(u64::from_le_bytes(a))
}

/// TDVF section type (TDVF Design Guide §11, Table "TDVF_SECTION Type").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TdvfSectionType {
    /// 0: Boot Firmware Volume, code; measured into MRTD.
    Bfv,
    /// 1: Configuration Firmware Volume (variable store); copied, not measured into MRTD.
    Cfv,
    /// 2: TD HOB page(s), written by the VMM.
    TdHob,
    /// 3: temporary memory, zero-filled and added (accepted) at build time.
    TempMem,
}

/// Attribute bit 0: the VMM extends MRTD with the section's content (TDH.MR.EXTEND).
pub(crate) const ATTRIBUTE_MR_EXTEND: u32 = 0x1;

/// One TDVF_SECTION entry, checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TdvfSection {
    /// Offset of the section's bytes in the firmware image.
    pub data_offset: u32,
    /// Bytes of the image that belong to the section.
    pub raw_data_size: u32,
    /// Guest physical address of the section (page aligned).
    pub memory_address: u64,
    /// Size in guest memory (page aligned, ≥ `raw_data_size`).
    pub memory_data_size: u64,
    /// Section type.
    pub section_type: TdvfSectionType,
    /// Whether the VMM extends MRTD with the section's content.
    pub mr_extend: bool,
}

impl TdvfSection {
    /// Number of 4 KiB pages the section occupies in guest memory.
    pub fn pages(&self) -> u64 {
        self.memory_data_size / PAGE_SIZE
    }
}

/// The parsed TDVF metadata of an OVMF IntelTdx image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TdvfMetadata {
    /// Sections in descriptor order (the order QEMU adds them to the TD).
    pub sections: Vec<TdvfSection>,
}

impl TdvfMetadata {
    /// Finds and checks the TDVF metadata of `firmware`.
    pub fn parse(firmware: &[u8]) -> Result<Self, TdxLaunchError> {
        let descriptor_at = find_descriptor(firmware)?;
        parse_descriptor(firmware, descriptor_at)
    }

    /// The single section of `kind`, for the RTMR computation.
    pub(crate) fn single(&self, kind: TdvfSectionType) -> Result<&TdvfSection, TdxLaunchError> {
        let mut it = self.sections.iter().filter(|s| s.section_type == kind);
        match (it.next(), it.next()) {
            (Some(s), None) => Ok(s),
            _ => Err(TdxLaunchError::MissingSection {
                kind: match kind {
                    TdvfSectionType::TdHob => "TD_HOB",
                    TdvfSectionType::Cfv => "CFV",
                    TdvfSectionType::Bfv => "BFV",
                    TdvfSectionType::TempMem => "TempMem",
                },
            }),
        }
    }
}

/// Walks the OVMF GUIDed footer table and returns the image offset of the TDVF descriptor.
fn find_descriptor(fw: &[u8]) -> Result<usize, TdxLaunchError> {
    let len = fw.len();
    let guid_end = len
        .checked_sub(BYTES_AFTER_FOOTER_GUID)
        .filter(|&e| e >= ENTRY_TRAILER)
        .ok_or(TdxLaunchError::FirmwareTooSmall { len })?;
    let guid_start = guid_end - 16;
    if fw.get(guid_start..guid_end) != Some(&FOOTER_GUID[..]) {
        return Err(TdxLaunchError::NoGuidTableFooter);
    }
    let table_len = usize::from(le_u16(fw, guid_start - 2).ok_or(
        TdxLaunchError::MalformedGuidTable {
            reason: "truncated footer length",
        },
    )?);
    // The table length covers the footer itself (length word + GUID).
    let table_start = guid_end
        .checked_sub(table_len)
        .filter(|_| table_len >= ENTRY_TRAILER)
        .ok_or(TdxLaunchError::MalformedGuidTable {
            reason: "footer length larger than the image or smaller than the footer",
        })?;
    // Entries end where the footer's length word starts.
    let mut end = guid_start - 2;
    while end >= table_start + ENTRY_TRAILER {
        let guid = fw
            .get(end - 16..end)
            .ok_or(TdxLaunchError::MalformedGuidTable {
                reason: "entry outside the image",
            })?;
        let entry_len = usize::from(le_u16(fw, end - ENTRY_TRAILER).ok_or(
            TdxLaunchError::MalformedGuidTable {
                reason: "entry outside the image",
            },
        )?);
        if entry_len < ENTRY_TRAILER || entry_len > end - table_start {
            return Err(TdxLaunchError::MalformedGuidTable {
                reason: "entry length outside the table",
            });
        }
        if guid == TDX_METADATA_OFFSET_GUID {
            let data_start = end - entry_len;
            let data = &fw[data_start..end - ENTRY_TRAILER];
            if data.len() < 4 {
                return Err(TdxLaunchError::MalformedGuidTable {
                    reason: "TDX metadata offset entry shorter than 4 bytes",
                });
            }
            let offset = le_u32(data, 0).ok_or(TdxLaunchError::MalformedGuidTable {
                reason: "TDX metadata offset entry shorter than 4 bytes",
            })?;
            return usize::try_from(offset)
                .ok()
                .and_then(|o| len.checked_sub(o))
                .filter(|&at| at < len)
                .ok_or(TdxLaunchError::MetadataOutOfBounds { offset, len });
        }
        end -= entry_len;
    }
    Err(TdxLaunchError::NoTdvfMetadata)
}

fn parse_descriptor(fw: &[u8], at: usize) -> Result<TdvfMetadata, TdxLaunchError> {
    let len = fw.len();
    let header = fw.get(at..at.saturating_add(DESCRIPTOR_LEN)).ok_or(
        TdxLaunchError::SectionOutOfBounds {
            index: u32::MAX,
            offset: at as u64,
            size: DESCRIPTOR_LEN as u64,
            len,
        },
    )?;
    let mut signature = [0u8; 4];
    signature.copy_from_slice(&header[..4]);
    if &signature != b"TDVF" {
        return Err(TdxLaunchError::BadSignature { found: signature });
    }
    let length = le_u32(header, 4).unwrap_or(0);
    let version = le_u32(header, 8).unwrap_or(0);
    let count = le_u32(header, 12).unwrap_or(0);
    if version != 1 {
        return Err(TdxLaunchError::UnsupportedVersion(version));
    }
    if count == 0 {
        return Err(TdxLaunchError::NoSections);
    }
    let needed = DESCRIPTOR_LEN as u64 + u64::from(count) * SECTION_LEN as u64;
    if u64::from(length) < needed {
        return Err(TdxLaunchError::DescriptorLength {
            length,
            sections: count,
        });
    }
    let table = usize::try_from(needed)
        .ok()
        .and_then(|n| fw.get(at..at.checked_add(n)?))
        .ok_or(TdxLaunchError::SectionOutOfBounds {
            index: u32::MAX,
            offset: at as u64,
            size: needed,
            len,
        })?;
    let mut sections = Vec::with_capacity(table.len() / SECTION_LEN);
    for (index, raw) in (0u32..).zip(table[DESCRIPTOR_LEN..].chunks_exact(SECTION_LEN)) {
        sections.push(check_section(fw, index, raw)?);
    }
    Ok(TdvfMetadata { sections })
}

fn check_section(fw: &[u8], index: u32, raw: &[u8]) -> Result<TdvfSection, TdxLaunchError> {
    // `raw` is exactly 32 bytes (chunks_exact), so these reads cannot fail.
    let data_offset = le_u32(raw, 0).unwrap_or(0);
    let raw_data_size = le_u32(raw, 4).unwrap_or(0);
    let memory_address = le_u64(raw, 8).unwrap_or(0);
    let memory_data_size = le_u64(raw, 16).unwrap_or(0);
    let type_code = le_u32(raw, 24).unwrap_or(0);
    let attributes = le_u32(raw, 28).unwrap_or(0);

    let section_type = match type_code {
        0 => TdvfSectionType::Bfv,
        1 => TdvfSectionType::Cfv,
        2 => TdvfSectionType::TdHob,
        3 => TdvfSectionType::TempMem,
        other => {
            return Err(TdxLaunchError::UnsupportedSectionType {
                index,
                section_type: other,
            });
        }
    };
    // Only MR.EXTEND is honoured by QEMU; PAGE.AUG (bit 1) would change what the TDX module
    // sees at build time, so refuse it rather than guess.
    if attributes & !ATTRIBUTE_MR_EXTEND != 0 {
        return Err(TdxLaunchError::UnsupportedAttributes { index, attributes });
    }
    if !memory_address.is_multiple_of(PAGE_SIZE)
        || !memory_data_size.is_multiple_of(PAGE_SIZE)
        || memory_address.checked_add(memory_data_size).is_none()
    {
        return Err(TdxLaunchError::SectionMisaligned {
            index,
            address: memory_address,
            size: memory_data_size,
        });
    }
    let bad_raw = TdxLaunchError::BadRawSize {
        index,
        section_type: type_code,
        raw: raw_data_size,
    };
    if u64::from(raw_data_size) > memory_data_size {
        return Err(bad_raw);
    }
    match section_type {
        TdvfSectionType::Bfv | TdvfSectionType::Cfv => {
            if raw_data_size == 0 {
                return Err(bad_raw);
            }
            // QEMU copies MemoryDataSize bytes from the image at DataOffset
            // (`entry->mem_ptr = tdvf->mem_ptr + entry->data_offset`), so all must exist.
            let end = u64::from(data_offset) + memory_data_size;
            if end > fw.len() as u64 {
                return Err(TdxLaunchError::SectionOutOfBounds {
                    index,
                    offset: u64::from(data_offset),
                    size: memory_data_size,
                    len: fw.len(),
                });
            }
        }
        TdvfSectionType::TdHob | TdvfSectionType::TempMem => {
            if raw_data_size != 0 {
                return Err(bad_raw);
            }
            if attributes & ATTRIBUTE_MR_EXTEND != 0 {
                // Content is VMM-written or zero; QEMU would measure zeros/HOB. Not modelled.
                return Err(TdxLaunchError::UnsupportedAttributes { index, attributes });
            }
        }
    }
    Ok(TdvfSection {
        data_offset,
        raw_data_size,
        memory_address,
        memory_data_size,
        section_type,
        mr_extend: attributes & ATTRIBUTE_MR_EXTEND != 0,
    })
}
