//! TDX verification input: the quote (mode 0) or its collateral JSON (mode 1) from the
//! fuzzer, the other half the real sample, verified by dcap-qvl under Intel's pinned root at a
//! time inside the collateral's window, then Cloister's policy.
#![no_main]

use std::sync::OnceLock;

use cloister_fuzz::{TDX_NOW, tagged, testdata, write_seeds};
use cloister_measurement::{FixedClock, Policy, TrustAnchor, Verifier};
use cloister_protocol::{Endorsements, EvidenceBundle, Platform};
use libfuzzer_sys::fuzz_target;

struct Fixture {
    verifier: Verifier<FixedClock>,
    quote: Vec<u8>,
    collateral: Vec<u8>,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| Fixture {
        verifier: Verifier::new(
            TrustAnchor::hardware().expect("pinned roots"),
            Policy::default(),
            FixedClock(TDX_NOW),
        ),
        quote: testdata("tdx_quote.bin"),
        collateral: testdata("tdx_quote_collateral.json"),
    })
}

fn seeds() -> Vec<cloister_fuzz::Seed> {
    vec![
        ("quote", tagged(0, &testdata("tdx_quote.bin"))),
        (
            "collateral",
            tagged(1, &testdata("tdx_quote_collateral.json")),
        ),
        (
            "outdated-quote",
            tagged(0, &testdata("tdx_quote_outdated.bin")),
        ),
    ]
}

fuzz_target!(init: write_seeds(seeds), |data: &[u8]| {
    let f = fixture();
    let Some((&mode, body)) = data.split_first() else {
        return;
    };
    let (quote, collateral) = if mode % 2 == 0 {
        (body.to_vec(), f.collateral.clone())
    } else {
        (f.quote.clone(), body.to_vec())
    };
    let bundle = EvidenceBundle {
        platform: Platform::Tdx,
        evidence: quote,
        endorsements: Endorsements::Tdx { collateral },
        key_config: b"\x01\x00\x20fuzz-key-config".to_vec(),
        expires_at: TDX_NOW + 3600,
        image_manifest_digest: [0x33; 32],
        log_proof: None,
    };
    // The default policy allows no TD: nothing may be accepted.
    assert!(!f.verifier.inspect(&bundle, b"").is_accepted());
});
