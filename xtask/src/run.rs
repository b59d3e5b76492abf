//! `cargo xtask image`, `cargo xtask run`, `cargo xtask verify-repro`.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use cloister_guest_image::vm::{LaunchPlatform, VmSpec, qemu_args};
use cloister_protocol::workload::{ECHO_PATH, SUMMARIZE_PATH};
use cloister_protocol::{AttestMode, GuestConfig};
use cloister_xtask::image::{self, REPRO_MODEL, WeightsPlacement};
use cloister_xtask::launch::{LaunchOptions, RunningGuest, expected};
use cloister_xtask::release;
use cloister_xtask::setup::{self, Plan};
use cloister_xtask::stage::Clock;

fn attest_mode(s: &str) -> Result<AttestMode> {
    Ok(match s {
        "emulated" => AttestMode::Emulated,
        "snp" => AttestMode::Snp,
        "tdx" => AttestMode::Tdx,
        other => bail!("--platform must be emulated, snp or tdx, not {other:?}"),
    })
}

fn default_out(attest: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("target")
        .join("cloister-image")
        .join(attest)
}

#[derive(clap::Args, Debug)]
pub struct ImageArgs {
    /// Attestation the image is configured for (part of the measured command line).
    #[arg(long, default_value = "emulated")]
    platform: String,
    /// Output directory (default: target/cloister-image/PLATFORM).
    #[arg(long)]
    out: Option<PathBuf>,
    /// vCPUs the expected measurement is computed for.
    #[arg(long, default_value_t = 1)]
    vcpus: u32,
    /// `cloister.model`: `none` (echo only), or a pinned model whose weights go into the image.
    #[arg(long, default_value = "none")]
    model: String,
    /// Where the weights go: in the initramfs, or on a dm-verity disk.
    #[arg(long, default_value = "disk")]
    weights: WeightsPlacement,
    /// End with one JSON object.
    #[arg(long)]
    json: bool,
}

/// The guest configuration for `model`: a model image gets a deadline that TCG can meet.
fn config_for(mode: AttestMode, model: &str) -> GuestConfig {
    let mut config = GuestConfig::new(mode);
    config.model = model.to_owned();
    if model != "none" {
        config.deadline = MODEL_DEADLINE;
    }
    config
}

/// Per-request deadline of a model image: a 1.5B model under TCG on one vCPU takes minutes.
const MODEL_DEADLINE: Duration = Duration::from_secs(1200);

pub fn image_cmd(args: &ImageArgs) -> Result<ExitCode> {
    let config = config_for(attest_mode(&args.platform)?, &args.model);
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| default_out(&args.platform));
    let clock = Clock::new();
    setup::run(&Plan::for_image(&args.model)?, &clock)?;
    let img = image::build_staged(&config, args.weights, &out, &clock)?;
    let (digest, gpa, page) = expected(&img, &img.initrd, args.vcpus)?;
    std::fs::write(out.join("hashes-page.bin"), page)?;
    let record = release::measurement_json(&img, &digest, gpa, args.vcpus)?;
    std::fs::write(
        out.join("measurement.json"),
        serde_json::to_vec_pretty(&record)?,
    )?;
    println!("image             {}", out.display());
    println!("init (static)     {} bytes", img.init_size);
    println!(
        "initrd            {} bytes",
        std::fs::metadata(&img.initrd)?.len()
    );
    if let Some(d) = &img.weights_disk {
        println!(
            "weights disk      {} ({} data blocks, verity root {})",
            d.path.display(),
            d.verity.data_blocks,
            hex::encode(d.verity.root_hash)
        );
    }
    println!("cmdline           {}", img.cmdline);
    println!("snp_launch_digest {}", hex::encode(digest));
    if args.json {
        println!("{record}");
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// `emulated` boots here under TCG; `snp` and `tdx` are for hardware hosts.
    #[arg(long, default_value = "emulated")]
    platform: String,
    /// Print the QEMU command line instead of running it.
    #[arg(long)]
    dry_run: bool,
    /// Keep serving after the request (until Ctrl-C).
    #[arg(long)]
    keep_running: bool,
    /// vCPUs (one under TCG: SMP boots of the 6.12 kernel crashed in some runs).
    #[arg(long, default_value_t = 1)]
    vcpus: u32,
    /// Guest RAM, MiB (default: sized for the model's weights).
    #[arg(long)]
    memory_mib: Option<u32>,
    /// `cloister.model`: the pinned model that answers (`none`: echo only). The default is the
    /// extractive summariser, chosen by `cargo xtask eval`; under TCG a language model boots
    /// (about 8 minutes to READY for the 1.5B) but cannot meet a deadline.
    #[arg(long, default_value = image::DEFAULT_MODEL)]
    model: String,
    /// Where the weights go: in the initramfs, or on a dm-verity disk.
    #[arg(long, default_value = "disk")]
    weights: WeightsPlacement,
    /// The chat to summarise (JSON `{"messages": [{"from", "at", "text"}]}`; default: a
    /// built-in team chat).
    #[arg(long)]
    chat: Option<PathBuf>,
}

/// The chat `cargo xtask run` summarises when none is given.
const SAMPLE_CHAT: &str = include_str!("../sample-chat.json");

fn print_command(args: &[std::ffi::OsString]) {
    let words: Vec<String> = args
        .iter()
        .map(|a| {
            let s = a.to_string_lossy();
            if s.contains(' ') {
                format!("'{s}'")
            } else {
                s.into_owned()
            }
        })
        .collect();
    println!("qemu-system-x86_64 {}", words.join(" "));
}

pub fn run_cmd(args: &RunArgs) -> Result<ExitCode> {
    let mode = attest_mode(&args.platform)?;
    let clock = Clock::new();
    if mode != AttestMode::Emulated {
        setup::run(&Plan::for_image(&args.model)?, &clock)?;
        let img = image::build_staged(
            &config_for(mode, &args.model),
            args.weights,
            &default_out(&args.platform),
            &clock,
        )?;
        let platform = if mode == AttestMode::Snp {
            LaunchPlatform::Snp
        } else {
            LaunchPlatform::Tdx
        };
        let firmware = if mode == AttestMode::Snp {
            &img.firmware.amdsev
        } else {
            &img.firmware.inteltdx
        };
        let spec = VmSpec {
            platform,
            firmware: firmware.clone(),
            kernel: img.kernel.clone(),
            initrd: img.initrd.clone(),
            disk: img.weights_disk.as_ref().map(|d| d.path.clone()),
            cmdline: img.cmdline.clone(),
            hashes_page: None,
            memory_mib: args
                .memory_mib
                .unwrap_or_else(|| LaunchOptions::for_image(&img).memory_mib),
            vcpus: args.vcpus,
            cpu: if mode == AttestMode::Snp {
                "EPYC-v4".into()
            } else {
                "host".into()
            },
            vhost_socket: PathBuf::from("/tmp/cloister-vhost.sock"),
            scratch: img.dir.clone(),
        };
        print_command(&qemu_args(&spec)?);
        if !args.dry_run {
            bail!(
                "--platform {}: this machine has no {} hardware; the command above is for a host that has",
                args.platform,
                args.platform
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    let chat = match &args.chat {
        Some(p) => std::fs::read(p).with_context(|| format!("reading {}", p.display()))?,
        None => SAMPLE_CHAT.as_bytes().to_vec(),
    };
    setup::run(&Plan::for_run(&args.model)?, &clock)?;
    let img = image::build_staged(
        &config_for(AttestMode::Emulated, &args.model),
        args.weights,
        &default_out("emulated"),
        &clock,
    )?;
    let sized = LaunchOptions::for_image(&img);
    let opts = LaunchOptions {
        vcpus: args.vcpus,
        memory_mib: args.memory_mib.unwrap_or(sized.memory_mib),
        ..sized
    };
    if args.dry_run {
        let (digest, gpa, _) = expected(&img, &img.initrd, args.vcpus)?;
        println!("expected snp_launch_digest {}", hex::encode(digest));
        let spec = VmSpec {
            platform: LaunchPlatform::Emulated,
            firmware: img.firmware.amdsev.clone(),
            kernel: img.kernel.clone(),
            initrd: img.initrd.clone(),
            disk: img.weights_disk.as_ref().map(|d| d.path.clone()),
            cmdline: img.cmdline.clone(),
            hashes_page: Some((gpa, img.dir.join("hashes-page.bin"))),
            memory_mib: opts.memory_mib,
            vcpus: args.vcpus,
            cpu: cloister_xtask::launch::TCG_CPU.into(),
            vhost_socket: PathBuf::from("VHOST_SOCKET"),
            scratch: img.dir.clone(),
        };
        print_command(&qemu_args(&spec)?);
        return Ok(ExitCode::SUCCESS);
    }
    let stage = clock.watched(
        "boot",
        "booting the guest under QEMU (TCG; the AmdSev firmware checks the measured boot inputs)",
    );
    let guest = RunningGuest::start(&img, &opts).map_err(|e| anyhow::anyhow!("{e}"))?;
    stage.done("READY on the console");
    println!(
        "booted in {:.1} s: {}",
        guest.boot_time.as_secs_f64(),
        guest.ready_line.trim()
    );
    // The runtime's own boot lines (weights disk, model load): they never carry request data.
    for line in guest.console().iter().filter(|l| {
        l.contains("cloister: weights")
            || l.contains("cloister: model")
            || l.contains("Freeing initrd")
    }) {
        println!("  guest: {}", line.trim());
    }
    let stage = clock.watched("evidence", "fetching the guest's evidence over vsock");
    let bundle = match guest.evidence(b"") {
        Ok(b) => {
            stage.done(&format!("{} bytes", b.len()));
            b
        }
        Err(e) => {
            eprintln!(
                "guest console (last lines):\n{}",
                guest
                    .console()
                    .iter()
                    .rev()
                    .take(20)
                    .rev()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join("\n")
            );
            return Err(e.into());
        }
    };
    println!(
        "WARNING: verifying under the INSECURE emulated trust anchor (ARK sha256 {}): CI and research only",
        guest.root.fingerprint()
    );
    // The operator's part: the release is in the transparency log, cosigned by a witness, and
    // the log proof rides with the evidence. The device's part: the verifier accepts the
    // measurement only as found in that log (no allow-list).
    let (digest, gpa, _) = expected(&img, &img.initrd, args.vcpus)?;
    let record = release::record_from(&release::measurement_json(&img, &digest, gpa, args.vcpus)?)?;
    let log_dir = image::workspace_root().join("target/cloister-log");
    let stage = clock.stage(
        "publish",
        "appending the release to target/cloister-log, cosigned by a local witness",
    );
    let (log_proof, trusted) = release::witnessed_release(&log_dir, &record)?;
    stage.done(&format!("entry {}", log_proof.leaf_index));
    println!(
        "published         release entry {} in target/cloister-log, cosigned by a local witness",
        log_proof.leaf_index
    );
    let stage = clock.stage("verify", "checking the evidence and its log proof");
    let mut bundle = cloister_protocol::EvidenceBundle::from_json(&bundle)
        .context("the guest's evidence does not parse")?;
    bundle.log_proof = Some(log_proof.clone());
    let verified = guest
        .verifier(&[])
        .with_log(trusted)
        .verify(&bundle, b"")
        .context("the guest's evidence was refused")?;
    if verified.measurement
        != cloister_measurement::Measurement::Snp(cloister_measurement::Digest48(guest.measurement))
    {
        bail!("the attested measurement is not the expected launch digest");
    }
    for c in &verified.checks {
        if let Ok(d) = &c.result {
            println!("ok  {:<12} {d}", c.step.name());
        }
    }
    println!(
        "measurement equals the expected launch digest {}",
        hex::encode(guest.measurement)
    );
    stage.done("accepted, and the measurement is the expected one");
    let path = if img.config.model == "none" {
        ECHO_PATH
    } else {
        SUMMARIZE_PATH
    };
    let stage = clock.watched(
        "request",
        &format!(
            "POST {path} ({} bytes; model {}) as a device: a Privacy Pass token, inner OHTTP \
             to the attested key inside outer OHTTP to the gateway, through the relay; waiting \
             for the guest's answer",
            chat.len(),
            img.config.model
        ),
    );
    let asked = std::time::Instant::now();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let reply = rt.block_on(cloister_xtask::way_in::ask(
        &guest.endpoint,
        cloister_xtask::way_in::Release {
            proof: log_proof,
            log_dir: &log_dir,
            root: guest.root.clone(),
        },
        &img.dir,
        path,
        &chat,
        Duration::from_secs(900),
    ))?;
    drop(rt);
    stage.done(&format!("{} from node {}", reply.status, reply.node));
    let status = reply.status;
    let answer = reply.body.expose().to_vec();
    println!(
        "POST {path} -> {status} from node {} in {:.1} s (verification {:.0} ms, token {:.0} ms, \
         exchange {:.1} s; boot to answer {:.1} s)",
        reply.node,
        asked.elapsed().as_secs_f64(),
        reply.timings.session.as_secs_f64() * 1000.0,
        reply.timings.token.as_secs_f64() * 1000.0,
        reply.timings.exchange.as_secs_f64(),
        (guest.boot_time + asked.elapsed()).as_secs_f64()
    );
    match serde_json::from_slice::<serde_json::Value>(&answer) {
        Ok(v) if status == 200 && path == SUMMARIZE_PATH => {
            println!(
                "model {} · {} messages used · {} tokens in · {} out · stop {}",
                v["model"], v["messages_used"], v["tokens_in"], v["tokens_out"], v["stop"]
            );
            println!(
                "---- summary ----\n{}\n-----------------",
                v["summary"].as_str().unwrap_or("")
            );
            if v["stop"] == "extractive" && v["model"] != img.config.model.as_str() {
                println!(
                    "note: {} could not finish within the {} s deadline on this CPU (QEMU \
                     emulates it under TCG), so the extractive summariser answered; on SEV-SNP \
                     or TDX hardware the language model answers in seconds",
                    img.config.model,
                    img.config.deadline.as_secs()
                );
            }
        }
        _ => println!("{}", String::from_utf8_lossy(&answer)),
    }
    if status != 200 {
        bail!("the guest answered {status}");
    }
    if args.keep_running {
        println!(
            "serving; vhost-device-vsock socket {} port {}; Ctrl-C to stop",
            guest.endpoint.uds.display(),
            guest.endpoint.port
        );
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async {
            let _ = tokio::signal::ctrl_c().await;
        });
    }
    drop(guest);
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::Args, Debug)]
pub struct ReproArgs {}

pub fn verify_repro(_args: &ReproArgs) -> Result<ExitCode> {
    setup::run(&Plan::for_image(REPRO_MODEL)?, &Clock::new())?;
    let exe = std::env::current_exe()?;
    let a = tempfile::tempdir()?;
    let b = tempfile::tempdir()?;
    let build = |dir: &Path, umask: &str, tz: &str| -> Result<()> {
        let status = Command::new("bash")
            .arg("-c")
            .arg(format!(
                "umask {umask} && exec \"$0\" image --model {REPRO_MODEL} --out \"$1\""
            ))
            .arg(&exe)
            .arg(dir)
            .env("TZ", tz)
            .status()
            .context("running the image build")?;
        if !status.success() {
            bail!("image build in {} failed", dir.display());
        }
        Ok(())
    };
    build(a.path(), "022", "UTC")?;
    // A different wall-clock second, umask and time zone.
    std::thread::sleep(Duration::from_millis(1100));
    build(b.path(), "077", "Pacific/Kiritimati")?;
    let mut differ = Vec::new();
    for f in [
        "vmlinuz",
        "initrd.cpio.gz",
        image::WEIGHTS_DISK,
        "cmdline",
        "manifest.json",
        "measurement.json",
        "hashes-page.bin",
    ] {
        let (x, y) = (
            std::fs::read(a.path().join(f))?,
            std::fs::read(b.path().join(f))?,
        );
        let same = x == y;
        println!(
            "{} {f} ({} bytes)",
            if same { "same   " } else { "DIFFERS" },
            x.len()
        );
        if !same {
            differ.push(f);
        }
    }
    if !differ.is_empty() {
        bail!(
            "the image is not reproducible: {} differ",
            differ.join(", ")
        );
    }
    println!(
        "reproducible: two builds (with {REPRO_MODEL} on the weights disk) at different times, \
         umasks and time zones are identical"
    );
    Ok(ExitCode::SUCCESS)
}
