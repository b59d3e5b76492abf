//! The TCB floors a device ships with: the lowest firmware and microcode security versions
//! (SPLs) AMD's security bulletins name as fixed, per product and CPU stepping.
//!
//! A report signed by a genuine VCEK says only what firmware the chip ran; without a floor, a
//! node on microcode from before AMD's fixes — for example before the SEV-SNP microcode
//! signature flaw (CVE-2024-56161, AMD-SB-3019, 2025-02-03), which lets a local administrator
//! load microcode that breaks SEV-SNP's guarantees — passes. Each value below names its source
//! and date; a component for which no bulletin gives a value is 0 and says so. The device
//! enforces the larger of this floor and the policy file's `snp_min_tcb`, and of the floor in
//! the logged release record, component by component: a policy can raise a floor, never lower
//! it.
//!
//! Values are the SPLs the report's REPORTED_TCB carries (AMD SEV-SNP ABI 56860, TCB_VERSION):
//! the microcode SPL is the low byte of the microcode patch level.

use crate::policy::MinTcb;

/// One floor: a product line, optionally one CPU stepping of it (CPUID family, model and
/// stepping, which reports of version 3 and later carry).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnpFloor {
    /// Product line, as the ARK names it (`Milan`, `Genoa`, `Turin`).
    pub product: &'static str,
    /// CPUID (family, model, stepping) this row is for; `None`: the product's lowest row,
    /// used for a report that carries no CPUID (version 2).
    pub cpuid: Option<(u8, u8, u8)>,
    /// The minimum.
    pub min: MinTcb,
    /// Where each value comes from.
    pub source: &'static str,
}

const fn tcb(bootloader: u8, tee: u8, snp: u8, microcode: u8, fmc: u8) -> MinTcb {
    MinTcb {
        bootloader,
        tee,
        snp,
        microcode,
        fmc,
    }
}

/// SNP firmware SPL 0x1B on Milan and Genoa, 0x04 on Turin: the fix of AMD-SB-3023
/// (CVE-2025-48514), as AMD's own Linux patch states it ("crypto/ccp: export firmware supported
/// vm types", 2026-03-24: `get_v1_svn(sev) < 0x1b` on Zen 3/4, `get_v2_svn(sev) < 0x4` on
/// Zen 5, "Documented in AMD-SB-3023"). It is above AMD-SB-3019's SNP minimums (0x18 Milan,
/// 0x17 Genoa).
const SB_3023: &str = "SNP SPL: AMD-SB-3023 (2026-03) via AMD's Linux patch of 2026-03-24";

/// The floors. Microcode: the first patch with AMD-SB-3019's microcode-signature fix, per
/// stepping (AMD-SB-3019 2025-02-03; patch levels as fwupd's `fu-cpu-common.c` tabulates
/// them: Milan 0x0A0011DB, Milan-X 0x0A001244, Genoa 0x0A101154, Genoa-X 0x0A10124F,
/// Bergamo/Siena 0x0AA00219; AMD's linux-firmware README names 0x0A0011D5 and 0x0A101148 as
/// the last patches without it). Turin (Zen 5) is not affected by AMD-SB-3019 and no bulletin
/// we could read gives a Turin microcode or FMC value: those are 0 here. No bulletin gives a
/// bootloader or TEE value for any product: 0.
pub const SNP_FLOORS: &[SnpFloor] = &[
    SnpFloor {
        product: "Milan",
        cpuid: Some((0x19, 0x01, 0x01)),
        min: tcb(0, 0, 0x1B, 0xDB, 0),
        source: "microcode 0x0A0011DB (AMD-SB-3019); SNP SPL 0x1B (AMD-SB-3023)",
    },
    SnpFloor {
        product: "Milan",
        cpuid: Some((0x19, 0x01, 0x02)),
        min: tcb(0, 0, 0x1B, 0x44, 0),
        source: "Milan-X: microcode 0x0A001244 (AMD-SB-3019); SNP SPL 0x1B (AMD-SB-3023)",
    },
    SnpFloor {
        product: "Milan",
        cpuid: None,
        min: tcb(0, 0, 0x1B, 0x44, 0),
        source: "no CPUID in the report: the lowest Milan stepping's floor",
    },
    SnpFloor {
        product: "Genoa",
        cpuid: Some((0x19, 0x11, 0x01)),
        min: tcb(0, 0, 0x1B, 0x54, 0),
        source: "microcode 0x0A101154 (AMD-SB-3019); SNP SPL 0x1B (AMD-SB-3023)",
    },
    SnpFloor {
        product: "Genoa",
        cpuid: Some((0x19, 0x11, 0x02)),
        min: tcb(0, 0, 0x1B, 0x4F, 0),
        source: "Genoa-X: microcode 0x0A10124F (AMD-SB-3019); SNP SPL 0x1B (AMD-SB-3023)",
    },
    SnpFloor {
        product: "Genoa",
        cpuid: Some((0x19, 0xA0, 0x02)),
        min: tcb(0, 0, 0x1B, 0x19, 0),
        source: "Bergamo/Siena: microcode 0x0AA00219 (AMD-SB-3019); SNP SPL 0x1B (AMD-SB-3023)",
    },
    SnpFloor {
        product: "Genoa",
        cpuid: None,
        min: tcb(0, 0, 0x1B, 0x19, 0),
        source: "no CPUID in the report: the lowest Genoa stepping's floor",
    },
    SnpFloor {
        product: "Turin",
        cpuid: None,
        min: tcb(0, 0, 0x04, 0, 0),
        source: SB_3023,
    },
];

/// The shipped floor for a report from `product` with this CPUID: the row for its stepping,
/// else the product's lowest row; `None` for a product with no shipped floor (the emulated
/// processor).
pub fn shipped(product: &str, cpuid: Option<(u8, u8, u8)>) -> Option<&'static SnpFloor> {
    let rows = || SNP_FLOORS.iter().filter(move |f| f.product == product);
    rows()
        .find(|f| cpuid.is_some() && f.cpuid == cpuid)
        .or_else(|| rows().find(|f| f.cpuid.is_none()))
}

/// The component-wise larger of two floors.
pub fn max(a: MinTcb, b: MinTcb) -> MinTcb {
    MinTcb {
        bootloader: a.bootloader.max(b.bootloader),
        tee: a.tee.max(b.tee),
        snp: a.snp.max(b.snp),
        microcode: a.microcode.max(b.microcode),
        fmc: a.fmc.max(b.fmc),
    }
}

/// Whether a floor requires nothing at all.
pub fn is_zero(t: &MinTcb) -> bool {
    *t == MinTcb::default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_pinned_product_has_a_nonzero_floor_for_reports_without_cpuid() {
        for product in ["Milan", "Genoa", "Turin"] {
            let f = shipped(product, None).expect(product);
            assert!(!is_zero(&f.min), "{product}");
            assert!(f.min.snp >= 0x04, "{product}");
        }
        assert!(shipped("Emulated", None).is_none());
    }

    #[test]
    fn a_stepping_gets_its_own_row_and_an_unknown_one_the_lowest() {
        assert_eq!(
            shipped("Milan", Some((0x19, 0x01, 0x01))).map(|f| f.min.microcode),
            Some(0xDB)
        );
        assert_eq!(
            shipped("Milan", Some((0x19, 0x01, 0x09))).map(|f| f.min.microcode),
            Some(0x44)
        );
        // Last fixed-less patches (AMD's linux-firmware README) fall below the floor.
        assert!(shipped("Milan", Some((0x19, 0x01, 0x01))).is_some_and(|f| f.min.microcode > 0xD5));
        assert!(shipped("Genoa", Some((0x19, 0x11, 0x01))).is_some_and(|f| f.min.microcode > 0x48));
    }

    #[test]
    fn the_larger_floor_wins_component_by_component() {
        let a = tcb(1, 0, 9, 200, 0);
        let b = tcb(0, 2, 27, 100, 1);
        assert_eq!(max(a, b), tcb(1, 2, 27, 200, 1));
    }
}
