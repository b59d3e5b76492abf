//! Why an expected TDX launch measurement could not be computed.

use thiserror::Error;

/// One variant per reason the TDX launch calculator refuses its inputs.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TdxLaunchError {
    /// The firmware image is too small to hold the OVMF GUIDed table footer.
    #[error("firmware image is {len} bytes, too small for the OVMF GUIDed table footer")]
    FirmwareTooSmall {
        /// Length of the image.
        len: usize,
    },
    /// The GUID at 48 bytes before the end of the image is not the table footer GUID.
    #[error("no OVMF GUIDed table footer (96b582de-…) 48 bytes before the end of the image")]
    NoGuidTableFooter,
    /// The GUIDed table, or one of its entries, has a length that does not fit.
    #[error("OVMF GUIDed table is malformed: {reason}")]
    MalformedGuidTable {
        /// What was wrong.
        reason: &'static str,
    },
    /// The GUIDed table has no TDX metadata offset entry (e47a6535-…).
    #[error("the OVMF GUIDed table has no TDX metadata offset entry (e47a6535-…): not a TDVF")]
    NoTdvfMetadata,
    /// The TDVF metadata offset points outside the image.
    #[error("TDVF metadata offset {offset:#x} (from the end) is outside the {len}-byte image")]
    MetadataOutOfBounds {
        /// Offset from the end of the image, as stored in the GUIDed table.
        offset: u32,
        /// Length of the image.
        len: usize,
    },
    /// The descriptor does not start with "TDVF".
    #[error("TDVF descriptor signature is {found:02x?}, expected \"TDVF\"")]
    BadSignature {
        /// The four bytes found.
        found: [u8; 4],
    },
    /// The descriptor version is not 1.
    #[error("TDVF descriptor version {0}, expected 1")]
    UnsupportedVersion(u32),
    /// The descriptor declares no sections.
    #[error("TDVF descriptor declares no sections")]
    NoSections,
    /// The descriptor length is too small for its section count.
    #[error("TDVF descriptor length {length} is too small for {sections} sections")]
    DescriptorLength {
        /// Declared descriptor length.
        length: u32,
        /// Declared number of sections.
        sections: u32,
    },
    /// A section's bytes (or the section table itself) lie outside the image.
    #[error("TDVF section {index}: bytes {offset:#x}+{size:#x} are outside the {len}-byte image")]
    SectionOutOfBounds {
        /// Section index (the section table itself is reported as `u32::MAX`).
        index: u32,
        /// Start offset in the image.
        offset: u64,
        /// Size in bytes.
        size: u64,
        /// Length of the image.
        len: usize,
    },
    /// A section's memory address or size is not 4 KiB aligned, or wraps around.
    #[error("TDVF section {index}: memory {address:#x}+{size:#x} is not page aligned or overflows")]
    SectionMisaligned {
        /// Section index.
        index: u32,
        /// MemoryAddress.
        address: u64,
        /// MemoryDataSize.
        size: u64,
    },
    /// RawDataSize is larger than MemoryDataSize, or inconsistent with the section type.
    #[error(
        "TDVF section {index} (type {section_type}): raw size {raw:#x} does not fit the section"
    )]
    BadRawSize {
        /// Section index.
        index: u32,
        /// Section type.
        section_type: u32,
        /// RawDataSize.
        raw: u32,
    },
    /// The section type is not one QEMU accepts (BFV, CFV, TD_HOB, TempMem).
    #[error("TDVF section {index}: unsupported section type {section_type}")]
    UnsupportedSectionType {
        /// Section index.
        index: u32,
        /// The type found.
        section_type: u32,
    },
    /// The section has attribute bits other than MR.EXTEND.
    #[error("TDVF section {index}: unsupported attributes {attributes:#x}")]
    UnsupportedAttributes {
        /// Section index.
        index: u32,
        /// The attributes found.
        attributes: u32,
    },
    /// A section the RTMR computation needs is absent (or present twice).
    #[error("TDVF metadata must have exactly one {kind} section")]
    MissingSection {
        /// "TD_HOB" or "CFV".
        kind: &'static str,
    },
    /// The guest memory size cannot hold the TDVF memory sections.
    #[error("guest memory size {memory_size:#x} does not fit QEMU's q35 layout for this TDVF")]
    BadMemorySize {
        /// The memory size given.
        memory_size: u64,
    },
    /// The TD HOB that QEMU would write does not fit in the TD_HOB section.
    #[error("TD HOB of {needed} bytes does not fit in the {available}-byte TD_HOB section")]
    HobOverflow {
        /// Bytes the HOB list needs.
        needed: u64,
        /// Bytes the section provides.
        available: u64,
    },
    /// The kernel is not a PE/COFF image edk2 would measure.
    #[error("kernel is not a well-formed PE/COFF image: {reason}")]
    MalformedPe {
        /// What was wrong.
        reason: &'static str,
    },
    /// The kernel is not a Linux bzImage QEMU patches the way this module models.
    #[error("unsupported kernel image: {reason}")]
    UnsupportedKernel {
        /// What was wrong.
        reason: &'static str,
    },
    /// The initrd is too large for QEMU to place below its initrd_max.
    #[error("initrd of {size} bytes does not fit below QEMU's initrd_max {max:#x}")]
    InitrdTooLarge {
        /// Initrd size.
        size: u64,
        /// QEMU's initrd_max for this memory size and kernel.
        max: u64,
    },
    /// The command line contains something QEMU would turn into a header patch not modelled here.
    #[error("unsupported kernel command line: {reason}")]
    UnsupportedCmdline {
        /// What was wrong.
        reason: &'static str,
    },
}
