//! The kernel as OVMF measures it: QEMU's patched bzImage, hashed the Authenticode way.

use sha2::{Digest, Sha384};

use super::TdxLaunchError;
use super::hob::q35_ram_split;
use super::tdvf::{le_u16, le_u32};

/// QEMU's PC machines reserve this much below the top of low RAM for ACPI when placing the
/// initrd (`pcmc->acpi_data_size = 0x20000 + 0x8000`, hw/i386/pc.c).
const QEMU_ACPI_DATA_SIZE: u64 = 0x2_8000;

/// Applies the setup-header patches of QEMU's `x86_load_linux` (hw/i386/x86-common.c), which
/// are visible to OVMF because it reassembles the kernel file from fw_cfg "setup" + "kernel"
/// (`OvmfPkg/QemuKernelLoaderFsDxe`). Only the "high and recent" layout (boot protocol ≥ 2.02
/// with LOADED_HIGH) is modelled; a `vga=` on the command line (which QEMU turns into a
/// vid_mode patch) is refused.
pub(crate) fn qemu_patched_kernel(
    kernel: &[u8],
    initrd_len: usize,
    cmdline: &str,
    memory_size: u64,
) -> Result<Vec<u8>, TdxLaunchError> {
    if kernel.len() < 0x1000 || kernel.get(0x202..0x206) != Some(&b"HdrS"[..]) {
        return Err(TdxLaunchError::UnsupportedKernel {
            reason: "no Linux boot protocol header (\"HdrS\" at 0x202)",
        });
    }
    if cmdline.contains("vga=") {
        return Err(TdxLaunchError::UnsupportedCmdline {
            reason: "\"vga=\" makes QEMU patch the header's vid_mode; not modelled",
        });
    }
    let protocol = le_u16(kernel, 0x206).unwrap_or(0);
    let loadflags = kernel.get(0x211).copied().unwrap_or(0);
    if protocol < 0x202 || loadflags & 0x01 == 0 {
        return Err(TdxLaunchError::UnsupportedKernel {
            reason: "boot protocol older than 2.02 or not LOADED_HIGH",
        });
    }
    // "High and recent kernel": real-mode code at 0x10000, command line at 0x20000.
    let real_addr: u32 = 0x1_0000;
    let cmdline_addr: u32 = 0x2_0000;

    let mut k = kernel.to_vec();
    k[0x210] = 0xb0; // type_of_loader: QEMU.
    k[0x211] |= 0x80; // loadflags |= CAN_USE_HEAP.
    let heap_end = (cmdline_addr - real_addr - 0x200) as u16;
    k[0x224..0x226].copy_from_slice(&heap_end.to_le_bytes());
    k[0x228..0x22c].copy_from_slice(&cmdline_addr.to_le_bytes());

    if initrd_len > 0 {
        let xloadflags = le_u16(kernel, 0x236).unwrap_or(0);
        let mut initrd_max: u64 = if protocol >= 0x20c && xloadflags & 0x40 != 0 {
            // XLF_CAN_BE_LOADED_ABOVE_4G: QEMU caps at UINT32_MAX.
            u64::from(u32::MAX)
        } else if protocol >= 0x203 {
            u64::from(le_u32(kernel, 0x22c).unwrap_or(0))
        } else {
            0x37ff_ffff
        };
        let (below_4g, _) = q35_ram_split(memory_size);
        let limit = below_4g
            .checked_sub(QEMU_ACPI_DATA_SIZE)
            .ok_or(TdxLaunchError::BadMemorySize { memory_size })?;
        if initrd_max >= limit {
            initrd_max = limit.saturating_sub(1);
        }
        let size = initrd_len as u64;
        if size >= initrd_max {
            return Err(TdxLaunchError::InitrdTooLarge {
                size,
                max: initrd_max,
            });
        }
        let initrd_addr = (initrd_max - size) & !0xfff;
        // Both fit in u32: initrd_max ≤ u32::MAX and size < initrd_max.
        k[0x218..0x21c].copy_from_slice(&(initrd_addr as u32).to_le_bytes());
        k[0x21c..0x220].copy_from_slice(&(size as u32).to_le_bytes());
    }
    Ok(k)
}

fn pe_err(reason: &'static str) -> TdxLaunchError {
    TdxLaunchError::MalformedPe { reason }
}

fn slice(image: &[u8], start: usize, end: usize) -> Result<&[u8], TdxLaunchError> {
    image
        .get(start..end)
        .ok_or(pe_err("a hashed range lies outside the image"))
}

/// Authenticode SHA-384 of a PE/COFF image exactly as edk2's `MeasurePeImageAndExtend`
/// (`OvmfPkg/Tcg/TdTcg2Dxe/MeasureBootPeCoff.c`, after PE/COFF spec Appendix A "Calculating the
/// PE Image Hash"): headers without CheckSum and the Security directory entry, sections sorted
/// by PointerToRawData, then trailing data minus the certificate table. No padding.
pub fn authenticode_sha384(image: &[u8]) -> Result<[u8; 48], TdxLaunchError> {
    let pe_offset = if image.get(0..2) == Some(&b"MZ"[..]) {
        le_u32(image, 0x3c).ok_or(pe_err("truncated DOS header"))? as usize
    } else {
        0
    };
    if le_u32(image, pe_offset) != Some(0x0000_4550) {
        return Err(pe_err("no \"PE\\0\\0\" signature at e_lfanew"));
    }
    let coff = pe_offset + 4;
    let number_of_sections =
        usize::from(le_u16(image, coff + 2).ok_or(pe_err("truncated COFF header"))?);
    let optional_size =
        usize::from(le_u16(image, coff + 16).ok_or(pe_err("truncated COFF header"))?);
    let optional = coff + 20;
    let magic = le_u16(image, optional).ok_or(pe_err("truncated optional header"))?;
    // Offsets of NumberOfRvaAndSizes / DataDirectory inside the optional header.
    let (rva_count_at, dirs_at) = match magic {
        0x10b => (92, 96),
        0x20b => (108, 112),
        _ => return Err(pe_err("unknown optional header magic")),
    };
    let checksum = optional + 64;
    let size_of_headers =
        le_u32(image, optional + 60).ok_or(pe_err("truncated optional header"))? as usize;
    let rva_count =
        le_u32(image, optional + rva_count_at).ok_or(pe_err("truncated optional header"))?;
    let security_dir = optional + dirs_at + 4 * 8;
    if size_of_headers > image.len() || checksum + 4 > size_of_headers {
        return Err(pe_err("SizeOfHeaders outside the image or before CheckSum"));
    }

    let mut h = Sha384::new();
    h.update(slice(image, 0, checksum)?);
    let cert_size = if rva_count <= 4 {
        h.update(slice(image, checksum + 4, size_of_headers)?);
        0
    } else {
        if security_dir + 8 > size_of_headers {
            return Err(pe_err("Security directory entry beyond SizeOfHeaders"));
        }
        h.update(slice(image, checksum + 4, security_dir)?);
        h.update(slice(image, security_dir + 8, size_of_headers)?);
        le_u32(image, security_dir + 4).ok_or(pe_err("truncated data directory"))? as usize
    };

    let table = optional + optional_size;
    let mut sections = Vec::with_capacity(number_of_sections);
    for i in 0..number_of_sections {
        let at = table + i * 40;
        let size_of_raw = le_u32(image, at + 16).ok_or(pe_err("truncated section table"))? as usize;
        let pointer = le_u32(image, at + 20).ok_or(pe_err("truncated section table"))? as usize;
        sections.push((pointer, size_of_raw));
    }
    // edk2 uses a stable insertion sort on PointerToRawData.
    sections.sort_by_key(|&(pointer, _)| pointer);
    let mut sum = size_of_headers;
    for &(pointer, size) in &sections {
        if size == 0 {
            continue;
        }
        let end = pointer
            .checked_add(size)
            .ok_or(pe_err("section size overflows"))?;
        h.update(slice(image, pointer, end)?);
        sum = sum
            .checked_add(size)
            .ok_or(pe_err("section sizes overflow"))?;
    }
    if image.len() > sum {
        let extra_end = image
            .len()
            .checked_sub(cert_size)
            .filter(|&e| e >= sum)
            .ok_or(pe_err("certificate table larger than the trailing data"))?;
        h.update(slice(image, sum, extra_end)?);
    }
    Ok(h.finalize().into())
}
