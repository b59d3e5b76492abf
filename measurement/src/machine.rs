//! Which physical machine a report comes from, as the hardware's own signer names it: an SNP
//! chip's ID (in the signed report, and equal to the VCEK's hwID, which the chain step
//! checked) or a TDX platform's PPID (in the PCK certificate that dcap-qvl verified up to
//! Intel's root). A device counts distinct machines with it, so that a gateway cannot pass one
//! machine off as many (issue 24, attack 5).

use std::fmt;

/// A machine's identity, from authenticated evidence.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MachineId {
    /// An AMD SEV-SNP chip: the report's `CHIP_ID` (64 bytes; Turin's hwID fills the first 8).
    SnpChip(Vec<u8>),
    /// An Intel TDX platform: the PPID of its PCK certificate (16 bytes).
    TdxPlatform(Vec<u8>),
}

impl fmt::Display for MachineId {
    /// `snp-chip:` or `tdx-ppid:` and the first 8 bytes in hex (enough to tell machines
    /// apart when reading a report; comparisons use every byte).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (kind, b) = match self {
            MachineId::SnpChip(b) => ("snp-chip", b),
            MachineId::TdxPlatform(b) => ("tdx-ppid", b),
        };
        write!(f, "{kind}:{}", hex::encode(&b[..b.len().min(8)]))
    }
}

impl fmt::Debug for MachineId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shown_short_compared_whole() {
        let mut a = vec![0xab; 64];
        let b = a.clone();
        a[63] = 0;
        let (a, b) = (MachineId::SnpChip(a), MachineId::SnpChip(b));
        assert_eq!(a.to_string(), "snp-chip:abababababababab");
        assert_eq!(a.to_string(), b.to_string());
        assert_ne!(a, b);
        assert_ne!(
            MachineId::SnpChip(vec![1; 16]),
            MachineId::TdxPlatform(vec![1; 16])
        );
        assert_eq!(
            format!("{:?}", MachineId::TdxPlatform(vec![0x0f; 16])),
            "tdx-ppid:0f0f0f0f0f0f0f0f"
        );
    }
}
