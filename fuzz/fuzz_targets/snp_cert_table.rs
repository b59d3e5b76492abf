//! The SNP extended report's certificate table (GUID, offset, length entries), which the
//! host hands the guest: parsed, turned into the bundle's certificates, and a table that
//! parses re-encodes to one that parses the same.
#![no_main]

use cloister_fuzz::{milan_ask_ark, testdata, write_seeds};
use cloister_runtime::attest::certtable::{self, CertEntry, CertKind};
use libfuzzer_sys::fuzz_target;

fn seeds() -> Vec<cloister_fuzz::Seed> {
    let (ask, ark) = milan_ask_ark();
    let entries = vec![
        CertEntry {
            kind: CertKind::Vcek,
            data: testdata("snp_milan_vcek.der"),
        },
        CertEntry {
            kind: CertKind::Ask,
            data: ask,
        },
        CertEntry {
            kind: CertKind::Ark,
            data: ark,
        },
    ];
    vec![("milan", certtable::encode(&entries))]
}

fuzz_target!(init: write_seeds(seeds), |data: &[u8]| {
    if let Ok(entries) = certtable::parse(data) {
        let again = certtable::parse(&certtable::encode(&entries)).expect("re-encoded table parses");
        assert_eq!(again, entries);
        let _ = certtable::certificates(entries);
    }
});
