//! A log killed mid-append — after its hashes are synced, and after every tile is in place but
//! before the checkpoint — keeps its previous checkpoint valid, shows no temporary file, and
//! accepts appends again. The test runs itself as a child process that aborts at the chosen
//! point (`std::process::abort`: no destructor, no flush, as a kill).

use std::path::Path;
use std::process::Command;

use cloister_transparency::{Log, ReleaseRecord, Stage};
use zeroize::Zeroizing;

const CHILD: &str = "CLOISTER_LOG_CRASH_DIR";
const STAGE: &str = "CLOISTER_LOG_CRASH_STAGE";

fn record(n: u64) -> Vec<u8> {
    let h = hex::encode([n as u8; 32]);
    let text = format!(
        r#"{{"schema":"cloister-release/v1","measurements":[{{"platform":"sev-snp","vcpus":1,"vcpu_type":"EPYC-v4","digest":"{}"}}],"manifest_sha256":"{h}","kernel_sha256":"{h}","initramfs_sha256":"{h}","firmware_sha256":"{h}","cmdline":"c","weights_disk_sha256":null,"source_revision":"r{n}","source_date_epoch":{n}}}"#,
        hex::encode([n as u8; 48])
    );
    ReleaseRecord::from_bytes(text.as_bytes()).expect("a canonical record");
    text.into_bytes()
}

fn open(dir: &Path) -> Log {
    let skey = Zeroizing::new(std::fs::read_to_string(dir.join("skey")).expect("test value"));
    let vkey = std::fs::read_to_string(dir.join("vkey")).expect("test value");
    Log::open(&dir.join("log"), &skey, &vkey).expect("the log opens")
}

/// The child: append 300 entries and die at the stage named.
fn child(dir: &Path) {
    let stage = match std::env::var(STAGE).as_deref() {
        Ok("hashes") => Stage::HashesWritten,
        _ => Stage::TilesWritten,
    };
    let log = open(dir);
    let entries: Vec<Vec<u8>> = (100..400).map(record).collect();
    let _ = log.append(&entries, |s| {
        if s == stage {
            std::process::abort();
        }
    });
    unreachable!("the hook aborts");
}

fn temporaries(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    for e in std::fs::read_dir(dir).expect("test value").flatten() {
        let p = e.path();
        if p.is_dir() {
            found.extend(temporaries(&p));
        } else if e.file_name().to_string_lossy().starts_with(".tmp") {
            found.push(p.display().to_string());
        }
    }
    found
}

#[test]
fn a_crash_mid_append_keeps_the_previous_checkpoint() {
    if let Some(dir) = std::env::var_os(CHILD) {
        return child(Path::new(&dir));
    }
    let dir = tempfile::tempdir().expect("test value");
    let (skey, vkey) = signed_note::generate_key(&mut rand_core::OsRng, "crash.example/log");
    std::fs::write(dir.path().join("skey"), &skey).expect("test value");
    std::fs::write(dir.path().join("vkey"), &vkey).expect("test value");
    let log =
        Log::create(&dir.path().join("log"), &Zeroizing::new(skey), &vkey).expect("test value");
    log.append(&(0..10).map(record).collect::<Vec<_>>(), |_| {})
        .expect("test value");
    let (before, _, root) = log.checkpoint().expect("test value");
    let mut size = 10;
    for stage in ["hashes", "tiles"] {
        let status = Command::new(std::env::current_exe().expect("test value"))
            .args([
                "--exact",
                "a_crash_mid_append_keeps_the_previous_checkpoint",
            ])
            .env(CHILD, dir.path())
            .env(STAGE, stage)
            .status()
            .expect("the child runs");
        assert!(!status.success(), "the child aborted at {stage}");
        let log = open(dir.path());
        let (cp, s, r) = log.checkpoint().expect("the old checkpoint verifies");
        assert_eq!(s, size, "after a crash at {stage}");
        if size == 10 {
            assert_eq!((cp, r), (before.clone(), root));
        }
        assert_eq!(temporaries(&dir.path().join("log")), Vec::<String>::new());
        // Appends go on, and proofs check against the new checkpoint.
        let new: Vec<Vec<u8>> = (size..size + 5).map(record).collect();
        let appended = log.append(&new, |_| {}).expect("appends after a crash");
        assert_eq!(appended.first, size);
        size += 5;
        let (_, s, root) = log.checkpoint().expect("test value");
        assert_eq!(s, size);
        for i in [0, size - 1] {
            let proof = log.prove_inclusion(i, size).expect("test value");
            tlog_tiles::check_record(&proof, size, root, i, tlog_tiles::record_hash(&record(i)))
                .expect("the proof verifies");
            assert_eq!(log.entry(i).expect("test value"), record(i));
        }
    }
}
