//! Who links what: each actor's crate builds only its own trust domain's code. Read from
//! `cargo tree` (normal dependencies, this lockfile), so a new dependency that crosses a
//! boundary fails here, not in a review.

use std::collections::BTreeSet;
use std::process::Command;

/// The crates `package` links (normal dependencies, all features it enables by default).
fn links(package: &str) -> BTreeSet<String> {
    let out = Command::new(env!("CARGO"))
        .args([
            "tree",
            "--locked",
            "--offline",
            "-e",
            "normal",
            "--prefix",
            "none",
        ])
        .args(["--format", "{p}", "-p", package])
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .output()
        .expect("cargo tree runs");
    assert!(
        out.status.success(),
        "cargo tree -p {package}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

fn assert_free_of(package: &str, forbidden: &[&str]) {
    let linked = links(package);
    assert!(linked.contains(package), "{package} is not in its own tree");
    let found: Vec<&&str> = forbidden.iter().filter(|f| linked.contains(**f)).collect();
    assert!(found.is_empty(), "{package} links {found:?}");
}

/// The device's verifier and core run on a phone or in a browser: no async runtime, HTTP
/// stack, database, model code, command-line parser or Unix calls.
#[test]
fn the_devices_crates_link_no_server_model_or_platform_code() {
    let server_side = [
        "tokio",
        "hyper",
        "redb",
        "redis",
        "candle-core",
        "clap",
        "nix",
        "cloister-launch",
        "cloister-insecure-emulated-sp",
        "cloister-runtime",
        "cloister-http",
    ];
    assert_free_of("cloister-measurement", &server_side);
    assert_free_of("cloister-device-core", &server_side);
    assert_free_of("cloister-web", &server_side);
}

/// The relay is a third party's: it builds none of the operator's stores or token code.
#[test]
fn the_relay_links_no_store_or_token_code() {
    assert_free_of(
        "cloister-relay",
        &[
            "redb",
            "redis",
            "privacypass",
            "cloister-gateway",
            "cloister-issuer",
        ],
    );
}

/// No production server links the insecure emulated processor.
#[test]
fn no_server_links_the_insecure_emulated_processor() {
    for server in [
        "cloister-gateway",
        "cloister-issuer",
        "cloister-relay",
        "cloister-client",
    ] {
        assert_free_of(server, &["cloister-insecure-emulated-sp"]);
    }
}

/// The end-to-end tests use the image recipe, not the command line.
#[test]
fn the_tests_do_not_link_the_command_line() {
    assert_free_of("cloister-tests", &["cloister-xtask"]);
}
