//! MRTD: the build-time measurement the TDX module accumulates while the VMM adds pages.
//!
//! The TDX module keeps MRTD as a running SHA-384 over 128-byte "extension buffers"
//! (finalised by TDH.MR.FINALIZE):
//! * TDH.MEM.PAGE.ADD — Intel TDX Module Base Architecture Specification §9.9 "Adding TD
//!   Private Pages during TD Build Time", ABI Reference §5.3.20 "TDH.MEM.PAGE.ADD Leaf": one
//!   128-byte buffer, bytes 0..12 the ASCII "MEM.PAGE.ADD" (zero-padded to 16), bytes 16..24 the
//!   page GPA little-endian, the rest zero.
//! * TDH.MR.EXTEND — ABI Reference §5.3.44 "TDH.MR.EXTEND Leaf": per 256-byte chunk, one
//!   128-byte buffer with ASCII "MR.EXTEND" (zero-padded to 16) and the chunk GPA at 16..24,
//!   followed by the 256 chunk bytes (two more 128-byte blocks).
//!
//! Section numbers are those of the spec revisions Google's go-tdx-guest cites; the layout was
//! checked against go-tdx-guest, Intel's tdx-tools, td-shim-tools and Phala's dstack-mr, which
//! all agree.
//!
//! Order: QEMU issues one KVM_TDX_INIT_MEM_REGION per TDVF section in metadata order
//! (`target/i386/kvm/tdx.c`, `tdx_finalize_vm`), with KVM_TDX_MEASURE_MEMORY_REGION when the
//! section has MR.EXTEND. Upstream KVM (`arch/x86/kvm/vmx/tdx.c`, `tdx_gmem_post_populate`)
//! does, per page, TDH.MEM.PAGE.ADD then the 16 TDH.MR.EXTENDs of that page: that is
//! [`PageAddOrder::PerPage`]. The pre-upstream TDX patches for QEMU 8.x added all pages of a
//! region first and extended afterwards: [`PageAddOrder::TwoPass`].

use sha2::{Digest, Sha384};

use super::TdxLaunchError;
use super::tdvf::{PAGE_SIZE, TdvfMetadata, TdvfSection};

/// TDH.MR.EXTEND measures 256 bytes per call.
const MR_EXTEND_CHUNK: usize = 256;

/// The order in which the host adds and measures the pages of one TDVF section.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PageAddOrder {
    /// Upstream KVM (Linux ≥ 6.16) with QEMU ≥ 10.1: per page, PAGE.ADD then its MR.EXTENDs.
    #[default]
    PerPage,
    /// Older out-of-tree KVM/QEMU TDX stacks: all PAGE.ADDs of a section, then all MR.EXTENDs.
    TwoPass,
}

/// The MRTD calculator.
#[derive(Debug, Clone, Copy)]
pub struct Mrtd;

impl Mrtd {
    /// MRTD of a TD launched from the OVMF IntelTdx image `firmware` by QEMU on upstream KVM.
    pub fn from_tdvf(firmware: &[u8]) -> Result<[u8; 48], TdxLaunchError> {
        Self::from_tdvf_with_order(firmware, PageAddOrder::PerPage)
    }

    /// MRTD with an explicit page add/extend order.
    pub fn from_tdvf_with_order(
        firmware: &[u8],
        order: PageAddOrder,
    ) -> Result<[u8; 48], TdxLaunchError> {
        let metadata = TdvfMetadata::parse(firmware)?;
        Self::from_metadata(firmware, &metadata, order)
    }

    /// MRTD from already parsed metadata (`firmware` must be the image it was parsed from).
    pub fn from_metadata(
        firmware: &[u8],
        metadata: &TdvfMetadata,
        order: PageAddOrder,
    ) -> Result<[u8; 48], TdxLaunchError> {
        let mut h = Sha384::new();
        for (index, s) in (0u32..).zip(&metadata.sections) {
            let content = section_content(firmware, index, s)?;
            match order {
                PageAddOrder::PerPage => {
                    for page in 0..s.pages() {
                        page_add(&mut h, s.memory_address + page * PAGE_SIZE);
                        extend_page(&mut h, s, content, page);
                    }
                }
                PageAddOrder::TwoPass => {
                    for page in 0..s.pages() {
                        page_add(&mut h, s.memory_address + page * PAGE_SIZE);
                    }
                    for page in 0..s.pages() {
                        extend_page(&mut h, s, content, page);
                    }
                }
            }
        }
        Ok(h.finalize().into())
    }
}

/// The bytes QEMU hands to KVM for a measured section: `MemoryDataSize` bytes of the image
/// from `DataOffset` (bounds were checked at parse time; checked again here).
fn section_content<'a>(
    fw: &'a [u8],
    index: u32,
    s: &TdvfSection,
) -> Result<&'a [u8], TdxLaunchError> {
    if !s.mr_extend {
        return Ok(&[]);
    }
    let start = s.data_offset as usize;
    usize::try_from(s.memory_data_size)
        .ok()
        .and_then(|n| fw.get(start..start.checked_add(n)?))
        .ok_or(TdxLaunchError::SectionOutOfBounds {
            index,
            offset: u64::from(s.data_offset),
            size: s.memory_data_size,
            len: fw.len(),
        })
}

/// A 128-byte extension buffer: ASCII operation name, then the GPA at byte 16.
fn op_buffer(op: &[u8], gpa: u64) -> [u8; 128] {
    let mut buf = [0u8; 128];
    buf[..op.len()].copy_from_slice(op);
    buf[16..24].copy_from_slice(&gpa.to_le_bytes());
    buf
}

fn page_add(h: &mut Sha384, gpa: u64) {
    h.update(op_buffer(b"MEM.PAGE.ADD", gpa));
}

fn extend_page(h: &mut Sha384, s: &TdvfSection, content: &[u8], page: u64) {
    if !s.mr_extend {
        return;
    }
    let page_offset = (page * PAGE_SIZE) as usize;
    let page_bytes = content
        .get(page_offset..page_offset + PAGE_SIZE as usize)
        .unwrap_or(&[]);
    for (i, chunk) in page_bytes.chunks_exact(MR_EXTEND_CHUNK).enumerate() {
        let gpa = s.memory_address + page * PAGE_SIZE + (i * MR_EXTEND_CHUNK) as u64;
        h.update(op_buffer(b"MR.EXTEND", gpa));
        h.update(chunk);
    }
}
