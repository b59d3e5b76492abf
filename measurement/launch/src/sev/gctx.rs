//! The SNP launch digest's guest context: each `SNP_LAUNCH_UPDATE` folds one page into the
//! running SHA-384 digest (AMD SEV-SNP ABI specification 56860, §8.17.2 "PAGE_INFO").
//!
//! `PAGE_INFO` is hashed as: DIGEST_CUR (48) ‖ CONTENTS (48) ‖ LENGTH u16 = 0x70 ‖ PAGE_TYPE u8
//! ‖ IMI_PAGE u8 ‖ VMPL3_PERMS u8 ‖ VMPL2_PERMS u8 ‖ VMPL1_PERMS u8 ‖ reserved u8 ‖ GPA u64,
//! little-endian. CONTENTS is SHA-384 of the page for normal and VMSA pages, zero otherwise.
//!
//! The `sev` crate has the same fold (`measurement::gctx`) but keeps its result private
//! (`finished`/`ld` are crate-internal): only its whole-launch function, which re-reads every
//! file on each call, can return a digest. Cloister computes digests for many launch
//! configurations of one firmware, so the fold is here; tests require equality with the crate
//! and with sev-snp-measure.

use sha2::{Digest as _, Sha384};

/// SNP page types (56860, Table 67 "PAGE_TYPE").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum PageType {
    /// Normal data page, measured.
    Normal = 0x01,
    /// VMSA page.
    Vmsa = 0x02,
    /// Zero page.
    Zero = 0x03,
    /// Unmeasured page.
    Unmeasured = 0x04,
    /// Secrets page.
    Secrets = 0x05,
    /// CPUID page.
    Cpuid = 0x06,
}

/// GPA recorded for VMSA pages: (u64)-1 page-aligned with bits above 51 cleared.
pub const VMSA_GPA: u64 = 0xFFFF_FFFF_F000;

const PAGE: usize = 4096;

/// A running SNP launch digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gctx {
    ld: [u8; 48],
}

impl Default for Gctx {
    fn default() -> Self {
        Gctx { ld: [0; 48] }
    }
}

impl Gctx {
    /// Continues from a digest (e.g. the one after the firmware pages).
    pub fn from_digest(ld: [u8; 48]) -> Self {
        Gctx { ld }
    }

    /// The digest so far.
    pub fn digest(&self) -> [u8; 48] {
        self.ld
    }

    fn fold(&mut self, page_type: PageType, gpa: u64, contents: &[u8; 48]) {
        let mut h = Sha384::new();
        h.update(self.ld);
        h.update(contents);
        h.update(0x70u16.to_le_bytes());
        h.update([page_type as u8, 0, 0, 0, 0, 0]);
        h.update(gpa.to_le_bytes());
        self.ld = h.finalize().into();
    }

    /// Folds `data` (a multiple of 4096 bytes) as normal pages starting at `gpa`.
    pub fn normal_pages(&mut self, gpa: u64, data: &[u8]) {
        for (i, page) in data.chunks(PAGE).enumerate() {
            let contents: [u8; 48] = Sha384::digest(page).into();
            self.fold(PageType::Normal, gpa + (i * PAGE) as u64, &contents);
        }
    }

    /// Folds normal pages whose contents digests were computed beforehand (in parallel: the
    /// page digests are independent, only the fold is sequential).
    pub fn normal_page_digests(&mut self, gpa: u64, digests: &[[u8; 48]]) {
        for (i, contents) in digests.iter().enumerate() {
            self.fold(PageType::Normal, gpa + (i * PAGE) as u64, contents);
        }
    }

    /// SHA-384 of each 4096-byte page of `data`, on up to `threads` threads.
    pub fn page_digests(data: &[u8], threads: usize) -> Vec<[u8; 48]> {
        let pages: Vec<&[u8]> = data.chunks(PAGE).collect();
        let per = pages.len().div_ceil(threads.max(1)).max(1);
        std::thread::scope(|s| {
            let handles: Vec<_> = pages
                .chunks(per)
                .map(|chunk| {
                    s.spawn(move || {
                        chunk
                            .iter()
                            .map(|p| <[u8; 48]>::from(Sha384::digest(p)))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap_or_default())
                .collect()
        })
    }

    /// Folds `len` bytes of pages of a contentless type (zero, unmeasured, secrets, CPUID).
    pub fn typed_pages(&mut self, page_type: PageType, gpa: u64, len: usize) {
        for i in 0..len.div_ceil(PAGE) {
            self.fold(page_type, gpa + (i * PAGE) as u64, &[0; 48]);
        }
    }

    /// Folds one VMSA page.
    pub fn vmsa_page(&mut self, page: &[u8]) {
        let contents: [u8; 48] = Sha384::digest(page).into();
        self.fold(PageType::Vmsa, VMSA_GPA, &contents);
    }
}
