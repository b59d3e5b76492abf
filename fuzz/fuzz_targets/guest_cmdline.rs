//! The guest's measured kernel command line (`cloister.*` parameters).
#![no_main]

use cloister_fuzz::write_seeds;
use cloister_protocol::{AttestMode, GuestConfig};
use libfuzzer_sys::fuzz_target;

fn seeds() -> Vec<cloister_fuzz::Seed> {
    [
        ("snp", AttestMode::Snp),
        ("tdx", AttestMode::Tdx),
        ("emulated", AttestMode::Emulated),
    ]
    .into_iter()
    .map(|(name, mode)| {
        let line = format!(
            "console=ttyS0 quiet {}",
            GuestConfig::new(mode).to_cmdline()
        );
        (name, line.into_bytes())
    })
    .collect()
}

fuzz_target!(init: write_seeds(seeds), |data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(config) = GuestConfig::from_cmdline(text)
    {
        // What the image builder writes from a configuration reads back as it.
        let again = GuestConfig::from_cmdline(&config.to_cmdline()).expect("re-reads");
        assert_eq!(again, config);
    }
});
