//! `cargo xtask bench model`: Cloister's candle path and llama.cpp (llama-cpp-python 0.3.36,
//! built from its pinned source) on the same GGUF and the same rendered prompt, with the same
//! greedy loop, alternately; every run is a fresh process (its own peak RSS, a cold model load
//! from a warm page cache). Medians per side and the ratios Cloister ÷ llama.cpp.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use cloister_guest_image::{cache_root, model, peers};
use cloister_summarizer::api::DEFAULT_MAX_WORDS;
use cloister_summarizer::service::{summary_instruction, summary_turns, transcript_line};
use cloister_summarizer::{Decoding, GenerateParams, LanguageModel, api::ChatMessage};
use serde::{Deserialize, Serialize};

use crate::eval::{default_threads, load_threads};

/// The peer's side of the loop (kept beside this file, run by the peer's virtualenv).
const PEER_SCRIPT: &str = include_str!("../peers/llama_cpp_bench.py");

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The pinned language model (both sides read the same GGUF).
    #[arg(long, default_value = "qwen2.5-coder-1.5b-instruct-q4_k_m")]
    model: String,
    /// Prompt sizes in tokens: messages of the evaluation set until each is reached.
    #[arg(long, value_delimiter = ',', default_value = "640")]
    prompt_tokens: Vec<usize>,
    /// Tokens generated per run (greedy, past end-of-turn).
    #[arg(long, default_value_t = 64)]
    max_new: usize,
    /// Rounds per prompt size (each round runs both sides; who goes first alternates).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Threads for both sides (default: every core).
    #[arg(long)]
    threads: Option<usize>,
    /// End with one JSON object.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args, Debug)]
pub struct ChildArgs {
    #[arg(long)]
    model: String,
    #[arg(long)]
    prompt_tokens: usize,
    #[arg(long)]
    max_new: usize,
    /// Write the rendered prompt here (the peer is given exactly this text).
    #[arg(long)]
    prompt_out: Option<PathBuf>,
}

/// One run of one side, as its child process reports it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Run {
    runtime: String,
    load_s: f64,
    prompt_tokens: usize,
    prompt_s: f64,
    decode_steps: usize,
    decode_s: f64,
    peak_rss_mib: f64,
    tokens: Vec<u32>,
    prompt_ids: Vec<u32>,
}

impl Run {
    fn prompt_tok_s(&self) -> f64 {
        self.prompt_tokens as f64 / self.prompt_s
    }
    fn gen_tok_s(&self) -> f64 {
        self.decode_steps as f64 / self.decode_s
    }
}

/// Medians of one side's runs.
#[derive(Debug, Clone, Copy, Serialize)]
struct Side {
    prompt_tok_s: f64,
    gen_tok_s: f64,
    load_s: f64,
    peak_rss_mib: f64,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn side(runs: &[Run]) -> Side {
    Side {
        prompt_tok_s: median(runs.iter().map(Run::prompt_tok_s).collect()),
        gen_tok_s: median(runs.iter().map(Run::gen_tok_s).collect()),
        load_s: median(runs.iter().map(|r| r.load_s).collect()),
        peak_rss_mib: median(runs.iter().map(|r| r.peak_rss_mib).collect()),
    }
}

/// The figures for one prompt size.
#[derive(Debug, Serialize)]
struct SizeResult {
    prompt_tokens: usize,
    cloister: Side,
    peer: Side,
    prompt_ratio: f64,
    gen_ratio: f64,
    /// Generated tokens both sides agree on before the first difference.
    same_tokens: usize,
}

fn last_json_line(out: &[u8], who: &str) -> Result<Run> {
    let text = String::from_utf8_lossy(out);
    let line = text
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .with_context(|| format!("{who} printed no result"))?;
    serde_json::from_str(line).with_context(|| format!("{who}'s result"))
}

fn run_child(mut cmd: Command, who: &str) -> Result<Run> {
    let out = cmd
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("starting {who}"))?;
    if !out.status.success() {
        bail!("{who} failed ({})", out.status);
    }
    last_json_line(&out.stdout, who)
}

pub fn run(args: &Args) -> Result<ExitCode> {
    if args.rounds == 0 || args.max_new < 2 || args.prompt_tokens.is_empty() {
        bail!("need at least one round, one prompt size and two new tokens");
    }
    let cache = cache_root();
    let pinned = model::by_name(&args.model)
        .with_context(|| format!("{} is not a pinned model", args.model))?;
    let gguf = model::require(&cache, &pinned)?.join("model.gguf");
    if !gguf.is_file() {
        bail!("{} is not a language model (no model.gguf)", args.model);
    }
    let python = peers::ensure_llama_cpp_python(&cache)?;
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let tmp = tempfile::tempdir()?;
    let script = tmp.path().join("llama_cpp_bench.py");
    std::fs::write(&script, PEER_SCRIPT)?;

    let mut results = Vec::new();
    for &size in &args.prompt_tokens {
        let prompt = tmp.path().join(format!("prompt-{size}.txt"));
        let cloister = |write_prompt: bool| -> Result<Run> {
            let mut cmd = Command::new(std::env::current_exe()?);
            cmd.args(["bench-model-child", "--model", &args.model])
                .arg(format!("--prompt-tokens={size}"))
                .arg(format!("--max-new={}", args.max_new))
                .env("RAYON_NUM_THREADS", threads.to_string())
                .env("CANDLE_BARRIER_POOL_SPIN_LIMIT", "0");
            if write_prompt {
                cmd.arg("--prompt-out").arg(&prompt);
            }
            run_child(cmd, "Cloister's run")
        };
        let peer = || -> Result<Run> {
            let mut cmd = Command::new(&python);
            cmd.arg(&script)
                .arg(&gguf)
                .arg(&prompt)
                .arg(args.max_new.to_string())
                .arg(threads.to_string());
            run_child(cmd, "llama.cpp's run")
        };
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        for round in 0..args.rounds {
            // Round 0 renders the prompt, so Cloister goes first; then the order alternates.
            if round % 2 == 0 {
                ours.push(cloister(round == 0)?);
                theirs.push(peer()?);
            } else {
                theirs.push(peer()?);
                ours.push(cloister(false)?);
            }
            let (a, b) = (&ours[ours.len() - 1], &theirs[theirs.len() - 1]);
            if a.prompt_ids != b.prompt_ids {
                let at = a
                    .prompt_ids
                    .iter()
                    .zip(&b.prompt_ids)
                    .take_while(|(x, y)| x == y);
                bail!(
                    "the tokenizers disagree on the same prompt: Cloister {} tokens, llama.cpp {}, \
first difference at token {}",
                    a.prompt_ids.len(),
                    b.prompt_ids.len(),
                    at.count()
                );
            }
            eprintln!(
                "[bench] {} prompt tokens, round {}: cloister {:.1}/{:.1} tok/s, llama.cpp {:.1}/{:.1} tok/s",
                a.prompt_tokens,
                round + 1,
                a.prompt_tok_s(),
                a.gen_tok_s(),
                b.prompt_tok_s(),
                b.gen_tok_s()
            );
        }
        let same_tokens = ours[0]
            .tokens
            .iter()
            .zip(&theirs[0].tokens)
            .take_while(|(a, b)| a == b)
            .count();
        let (c, p) = (side(&ours), side(&theirs));
        results.push(SizeResult {
            prompt_tokens: ours[0].prompt_tokens,
            cloister: c,
            peer: p,
            prompt_ratio: c.prompt_tok_s / p.prompt_tok_s,
            gen_ratio: c.gen_tok_s / p.gen_tok_s,
            same_tokens,
        });
    }
    print_table(args, threads, &results);
    if args.json {
        let head = &results[0];
        println!(
            "{}",
            serde_json::json!({
                "model": args.model,
                "threads": threads,
                "rounds": args.rounds,
                "max_new": args.max_new,
                "prompt_tokens": head.prompt_tokens,
                "prompt_tok_s": head.cloister.prompt_tok_s,
                "gen_tok_s": head.cloister.gen_tok_s,
                "peer_prompt_tok_s": head.peer.prompt_tok_s,
                "peer_gen_tok_s": head.peer.gen_tok_s,
                "prompt_ratio": head.prompt_ratio,
                "gen_ratio": head.gen_ratio,
                "load_s": head.cloister.load_s,
                "peer_load_s": head.peer.load_s,
                "peak_rss_mib": head.cloister.peak_rss_mib,
                "peer_peak_rss_mib": head.peer.peak_rss_mib,
                "sizes": results,
            })
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn print_table(args: &Args, threads: usize, results: &[SizeResult]) {
    println!(
        "{} · {} threads · greedy · {} new tokens · median of {} rounds (fresh processes)",
        args.model, threads, args.max_new, args.rounds
    );
    println!(
        "{:>7} {:<10} {:>12} {:>10} {:>8} {:>9}",
        "prompt", "runtime", "prompt tok/s", "gen tok/s", "load s", "peak RSS"
    );
    for r in results {
        for (name, s) in [("cloister", r.cloister), ("llama.cpp", r.peer)] {
            println!(
                "{:>7} {:<10} {:>12.1} {:>10.2} {:>8.2} {:>6.0} MiB",
                r.prompt_tokens, name, s.prompt_tok_s, s.gen_tok_s, s.load_s, s.peak_rss_mib
            );
        }
        println!(
            "{:>7} {:<10} {:>11.2}x {:>9.2}x {:>8} {:>6.2}x   same first {} of {} tokens",
            r.prompt_tokens,
            "ratio",
            r.prompt_ratio,
            r.gen_ratio,
            "",
            r.cloister.peak_rss_mib / r.peer.peak_rss_mib,
            r.same_tokens,
            args.max_new
        );
    }
}

/// Messages of the evaluation set, in file order, until the rendered prompt holds about
/// `target` tokens; returns the rendered prompt text.
fn prompt_of_size(llm: &LanguageModel, target: usize) -> Result<String> {
    let threads = load_threads(&default_threads(), None)?;
    let render = |transcript: &str| -> Result<String> {
        let user = summary_instruction(DEFAULT_MAX_WORDS as usize, transcript);
        Ok(llm.render(&summary_turns(&user))?.to_string())
    };
    let mut used = llm.count_tokens(&render("")?)?;
    let mut transcript = String::new();
    'outer: for t in &threads {
        for m in &t.messages {
            let msg = ChatMessage {
                from: m.from.clone(),
                at: m.at.clone(),
                text: m.text.clone(),
            };
            let line = llm.sanitise(&transcript_line(&msg));
            let cost = llm.count_tokens(&line)? + 1;
            if used + cost > target {
                break 'outer;
            }
            used += cost;
            transcript.push_str(&line);
            transcript.push('\n');
        }
    }
    render(&transcript)
}

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

/// The child: loads the model, renders the prompt, runs the loop once, prints one JSON line.
pub fn child(args: &ChildArgs) -> Result<ExitCode> {
    let pinned = model::by_name(&args.model).context("unknown model")?;
    let gguf: &Path = &model::require(&cache_root(), &pinned)?.join("model.gguf");
    let t0 = Instant::now();
    let llm = LanguageModel::load(gguf, pinned.name, None)?;
    let load_s = t0.elapsed().as_secs_f64();
    let prompt = prompt_of_size(&llm, args.prompt_tokens)?;
    if let Some(p) = &args.prompt_out {
        std::fs::write(p, &prompt).with_context(|| format!("writing {}", p.display()))?;
    }
    let turns_ids = llm.encode_rendered(&prompt)?;
    let g = llm.generate(
        &turns_ids,
        &GenerateParams {
            decoding: Decoding::Greedy,
            max_new_tokens: args.max_new,
            repeat_penalty: 1.0,
            ignore_stop_tokens: true,
            ..GenerateParams::default()
        },
    )?;
    let run = Run {
        runtime: "cloister".into(),
        load_s,
        prompt_tokens: g.prompt_tokens,
        prompt_s: g.prompt_time.as_secs_f64(),
        decode_steps: g.generated_tokens.saturating_sub(1),
        decode_s: g.generate_time.as_secs_f64(),
        peak_rss_mib: peak_rss_mib(),
        tokens: g.tokens.clone(),
        prompt_ids: turns_ids,
    };
    println!("{}", serde_json::to_string(&run)?);
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_are_read_from_the_last_json_line() {
        let out = b"warming up\n{\"runtime\":\"llama.cpp\",\"load_s\":0.5,\"prompt_tokens\":640,\
\"prompt_s\":6.4,\"decode_steps\":63,\"decode_s\":2.1,\"peak_rss_mib\":2000.0,\
\"tokens\":[1,2],\"prompt_ids\":[3]}\n";
        let r = last_json_line(out, "peer").expect("parsed");
        assert_eq!(r.prompt_tokens, 640);
        assert!((r.prompt_tok_s() - 100.0).abs() < 1e-9);
        assert!((r.gen_tok_s() - 30.0).abs() < 1e-9);
        assert!(last_json_line(b"Traceback ...\n", "peer").is_err());
        assert!(last_json_line(b"{\"runtime\":1}\n", "peer").is_err());
    }

    #[test]
    fn median_takes_the_middle_run() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert!(median(vec![]).is_nan());
    }
}
