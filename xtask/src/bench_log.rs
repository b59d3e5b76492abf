//! `cargo xtask bench log`: the transparency log at scale. Appends N entries (release-record
//! sized) in fsynced batches to a log on disk, then times inclusion and consistency proofs
//! (generation from the on-disk hashes, and verification), and checkpoint signature
//! verification; the peer is `ct-merkle`'s in-memory tree on the same entries (append, prove,
//! verify), measured in the same run.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Result;
use cloister_transparency::{Log, Measurement, Quorum, ReleaseRecord, SCHEMA, TrustedLog};
use ct_merkle::mem_backed_tree::MemoryBackedTree;
use sha2_011::Sha256;
use zeroize::Zeroizing;

/// Arguments of `cargo xtask bench log`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Entries in the log.
    #[arg(long, default_value_t = 1_000_000)]
    entries: u64,
    /// Entries per append (one fsync round each).
    #[arg(long, default_value_t = 1000)]
    batch: u64,
    /// Proofs timed of each kind.
    #[arg(long, default_value_t = 2000)]
    proofs: u64,
    /// End with one JSON object.
    #[arg(long)]
    json: bool,
}

/// A release record (about 700 bytes), distinct per index.
fn entry(n: u64) -> Vec<u8> {
    let h = hex::encode(n.to_be_bytes()).repeat(4);
    ReleaseRecord {
        schema: SCHEMA.into(),
        measurements: vec![Measurement {
            platform: "sev-snp".into(),
            vcpus: 4,
            vcpu_type: "EPYC-Milan".into(),
            digest: hex::encode(n.to_be_bytes()).repeat(6),
        }],
        manifest_sha256: h.clone(),
        kernel_sha256: h.clone(),
        initramfs_sha256: h.clone(),
        firmware_sha256: h,
        cmdline: "console=ttyS0 panic=-1 cloister.attest=snp cloister.port=8000".into(),
        weights_disk_sha256: None,
        source_revision: format!("{n:040x}"),
        source_date_epoch: 1_700_000_000 + n,
        snp_min_tcb: None,
    }
    .to_bytes()
    .unwrap_or_default()
}

/// A deterministic spread of indexes below `n`.
fn spread(i: u64, n: u64) -> u64 {
    i.wrapping_mul(0x9E37_79B9_7F4A_7C15) % n
}

fn per(d: Duration, n: u64) -> f64 {
    d.as_secs_f64() * 1e6 / n.max(1) as f64
}

/// `cargo xtask bench log`.
pub fn run(args: &Args) -> Result<ExitCode> {
    let dir = tempfile::tempdir()?;
    let (skey, vkey) = signed_note::generate_key(&mut rand_core::OsRng, "bench.example/log");
    let log = Log::create(&dir.path().join("log"), &Zeroizing::new(skey), &vkey)?;
    let n = args.entries;

    // Entries are made outside the timed parts.
    let mut oracle: MemoryBackedTree<Sha256, Vec<u8>> = MemoryBackedTree::new();
    let (mut append, mut peer_append) = (Duration::ZERO, Duration::ZERO);
    let mut done = 0;
    while done < n {
        let k = args.batch.min(n - done);
        let batch: Vec<Vec<u8>> = (done..done + k).map(entry).collect();
        let t = Instant::now();
        log.append(&batch, |_| {})?;
        append += t.elapsed();
        let t = Instant::now();
        for e in batch {
            oracle.push(e);
        }
        peer_append += t.elapsed();
        done += k;
    }

    let (checkpoint, size, root) = log.checkpoint()?;
    anyhow::ensure!(
        root.0.as_slice() == oracle.root().as_bytes().as_slice(),
        "the log's root differs from ct-merkle's"
    );
    let trusted = TrustedLog::new(&vkey, &[], Quorum::InsecureLogSignatureOnly)?;

    // Inclusion proofs: ours from disk, then verified; the peer's from memory.
    let indexes: Vec<u64> = (0..args.proofs).map(|i| spread(i, size)).collect();
    let t = Instant::now();
    let proofs = indexes
        .iter()
        .map(|&i| log.log_proof(i))
        .collect::<Result<Vec<_>, _>>()?;
    let prove = t.elapsed();
    let t = Instant::now();
    for p in &proofs {
        trusted.verify_proof(p)?;
    }
    let verify = t.elapsed();
    let t = Instant::now();
    let peer_proofs: Vec<_> = indexes
        .iter()
        .map(|&i| oracle.prove_inclusion(i as usize))
        .collect();
    let peer_prove = t.elapsed();
    let peer_root = oracle.root();
    let leaves: Vec<Vec<u8>> = indexes.iter().map(|&i| entry(i)).collect();
    let t = Instant::now();
    for ((&i, p), leaf) in indexes.iter().zip(&peer_proofs).zip(&leaves) {
        peer_root
            .verify_inclusion(leaf, i, p)
            .map_err(|e| anyhow::anyhow!("ct-merkle: {e:?}"))?;
    }
    let peer_verify = t.elapsed();
    // The signature check alone (inside each verification above).
    let t = Instant::now();
    for _ in 0..args.proofs {
        trusted.verify_checkpoint(&checkpoint)?;
    }
    let checkpoint_verify = t.elapsed();
    let t = Instant::now();
    for &i in &indexes {
        log.prove_consistency(i.max(1), size)?;
    }
    let consistency = t.elapsed();

    let rate = |d: Duration| n as f64 / d.as_secs_f64();
    let hashes_bytes = std::fs::metadata(dir.path().join("log/hashes"))?.len();
    println!(
        "log of {n} entries ({} B each), batches of {}",
        entry(0).len(),
        args.batch
    );
    println!(
        "append            {:>10.0} entries/s (ct-merkle in memory {:.0}/s)",
        rate(append),
        rate(peer_append)
    );
    println!(
        "log proof         {:>10.1} µs to make from disk: signed checkpoint read and checked, entry from its bundle, path from the hashes (ct-merkle path {:.1} µs, in memory)",
        per(prove, args.proofs),
        per(peer_prove, args.proofs)
    );
    println!(
        "log proof check   {:>10.1} µs: checkpoint signature, path, record parse (ct-merkle path {:.1} µs)",
        per(verify, args.proofs),
        per(peer_verify, args.proofs)
    );
    println!(
        "checkpoint check  {:>10.1} µs",
        per(checkpoint_verify, args.proofs)
    );
    println!(
        "consistency proof {:>10.1} µs to make from disk (signed checkpoint read and checked)",
        per(consistency, args.proofs)
    );
    println!("on disk           {:>10} B of hashes", hashes_bytes);
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "entries": n,
                "batch": args.batch,
                "append_per_s": rate(append),
                "peer_append_per_s": rate(peer_append),
                "prove_us": per(prove, args.proofs),
                "peer_prove_us": per(peer_prove, args.proofs),
                "verify_us": per(verify, args.proofs),
                "peer_verify_us": per(peer_verify, args.proofs),
                "checkpoint_verify_us": per(checkpoint_verify, args.proofs),
                "consistency_prove_us": per(consistency, args.proofs),
            })
        );
    }
    Ok(ExitCode::SUCCESS)
}
