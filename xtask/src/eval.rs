//! `cargo xtask eval`: the summariser's quality on the evaluation set in
//! `runtime/summarizer/eval/` — fact recall, owner accuracy and invented names/dates, per model.
//! Each model runs in a child process (its own memory, and the environment candle needs).

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use cloister_guest_image::model::{self, MINILM_L6_V2};
use cloister_summarizer::{
    Embedder, FromBody as _, LanguageModel, SummarizeRequest, Summarizer, SummarizerConfig,
};
use cloister_xtask::score::{Score, Thread, score};
use serde::{Deserialize, Serialize};

/// The models evaluated by default: the default language model, the smallest one, and the
/// embedder alone (extractive).
const DEFAULT_MODELS: &[&str] = &[
    "qwen2.5-coder-1.5b-instruct-q4_k_m",
    "smollm2-135m-instruct-q4_1",
    "all-minilm-l6-v2",
];

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Models to evaluate (default: the Qwen 1.5B, SmolLM2 135M, and MiniLM alone).
    #[arg(long, value_delimiter = ',')]
    models: Vec<String>,
    /// Directory of thread files (default: runtime/summarizer/eval).
    #[arg(long)]
    threads: Option<PathBuf>,
    /// Evaluate only the first N threads.
    #[arg(long)]
    limit: Option<usize>,
    /// Print each summary.
    #[arg(long)]
    show: bool,
    /// End with one JSON object.
    #[arg(long)]
    json: bool,
}

/// One summary, as the child reports it.
#[derive(Debug, Serialize, Deserialize)]
struct Answer {
    id: String,
    summary: String,
    model: String,
    truncated: bool,
    tokens_in: usize,
    tokens_out: usize,
    seconds: f64,
}

pub(crate) fn default_threads() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("runtime")
        .join("summarizer")
        .join("eval")
}

pub(crate) fn load_threads(dir: &Path, limit: Option<usize>) -> Result<Vec<Thread>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    files.truncate(limit.unwrap_or(usize::MAX));
    files
        .iter()
        .map(|p| {
            let bytes = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
            serde_json::from_slice(&bytes).with_context(|| format!("parsing {}", p.display()))
        })
        .collect()
}

#[derive(Debug, Default, Serialize)]
struct Totals {
    model: String,
    threads: usize,
    facts: usize,
    facts_found: usize,
    owners: usize,
    owners_right: usize,
    owners_wrong: usize,
    invented_names: usize,
    invented_dates: usize,
    summaries_with_invention: usize,
    seconds_mean: f64,
    seconds_max: f64,
    tokens_in_mean: f64,
    tokens_out_mean: f64,
}

impl Totals {
    fn add(&mut self, s: &Score, a: &Answer) {
        self.threads += 1;
        self.facts += s.facts;
        self.facts_found += s.facts_found;
        self.owners += s.owners;
        self.owners_right += s.owners_right;
        self.owners_wrong += s.owners_wrong;
        self.invented_names += s.invented_names.len();
        self.invented_dates += s.invented_dates.len();
        self.summaries_with_invention +=
            usize::from(!s.invented_names.is_empty() || !s.invented_dates.is_empty());
        self.seconds_mean += a.seconds;
        self.seconds_max = self.seconds_max.max(a.seconds);
        self.tokens_in_mean += a.tokens_in as f64;
        self.tokens_out_mean += a.tokens_out as f64;
    }

    fn finish(&mut self) {
        let n = self.threads.max(1) as f64;
        self.seconds_mean /= n;
        self.tokens_in_mean /= n;
        self.tokens_out_mean /= n;
    }

    fn pct(a: usize, b: usize) -> f64 {
        if b == 0 {
            0.0
        } else {
            100.0 * a as f64 / b as f64
        }
    }

    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "model": self.model,
            "threads": self.threads,
            "fact_recall_pct": Self::pct(self.facts_found, self.facts),
            "owner_accuracy_pct": Self::pct(self.owners_right, self.owners),
            "owners_wrong": self.owners_wrong,
            "invented_names": self.invented_names,
            "invented_dates": self.invented_dates,
            "invention_rate_pct": Self::pct(self.summaries_with_invention, self.threads),
            "seconds_mean": self.seconds_mean,
            "seconds_max": self.seconds_max,
            "tokens_in_mean": self.tokens_in_mean,
            "tokens_out_mean": self.tokens_out_mean,
        })
    }
}

pub fn run(args: &Args) -> Result<ExitCode> {
    let dir = args.threads.clone().unwrap_or_else(default_threads);
    let threads = load_threads(&dir, args.limit)?;
    if threads.is_empty() {
        bail!("no thread files in {}", dir.display());
    }
    let models: Vec<String> = if args.models.is_empty() {
        DEFAULT_MODELS.iter().map(|s| (*s).to_owned()).collect()
    } else {
        args.models.clone()
    };
    let cache = cloister_guest_image::cache_root();
    let mut all = Vec::new();
    for name in &models {
        let m = model::by_name(name).with_context(|| format!("{name} is not a pinned model"))?;
        model::require(&cache, &m)?;
        model::require(&cache, &MINILM_L6_V2)?;
        eprintln!("[eval] {name}: {} threads", threads.len());
        let mut child = Command::new(std::env::current_exe()?)
            .args(["eval-child", "--model", name, "--threads"])
            .arg(&dir)
            .args(args.limit.map(|l| format!("--limit={l}")))
            .env("CANDLE_BARRIER_POOL_SPIN_LIMIT", "0")
            .stdout(Stdio::piped())
            .spawn()
            .context("starting the evaluation child")?;
        let out = child.stdout.take().context("child stdout")?;
        let mut totals = Totals {
            model: name.clone(),
            ..Totals::default()
        };
        for line in BufReader::new(out).lines() {
            let a: Answer = serde_json::from_str(&line?).context("child output")?;
            let t = threads
                .iter()
                .find(|t| t.id == a.id)
                .context("child answered an unknown thread")?;
            let s = score(t, &a.summary);
            eprintln!(
                "  {:<32} facts {}/{} owners {}/{} (wrong {}) invented {:?} {:?} {:.1} s",
                a.id,
                s.facts_found,
                s.facts,
                s.owners_right,
                s.owners,
                s.owners_wrong,
                s.invented_names,
                s.invented_dates,
                a.seconds
            );
            if args.show {
                eprintln!("{}\n", a.summary);
            }
            totals.add(&s, &a);
        }
        if !child.wait()?.success() {
            bail!("the evaluation of {name} failed");
        }
        totals.finish();
        all.push(totals);
    }
    println!(
        "{:<36} {:>7} {:>8} {:>6} {:>9} {:>8} {:>8}",
        "model", "facts%", "owners%", "wrong", "invented%", "mean s", "max s"
    );
    for t in &all {
        println!(
            "{:<36} {:>7.1} {:>8.1} {:>6} {:>9.1} {:>8.1} {:>8.1}",
            t.model,
            Totals::pct(t.facts_found, t.facts),
            Totals::pct(t.owners_right, t.owners),
            t.owners_wrong,
            Totals::pct(t.summaries_with_invention, t.threads),
            t.seconds_mean,
            t.seconds_max
        );
    }
    if args.json {
        let v: Vec<_> = all.iter().map(Totals::json).collect();
        println!("{}", serde_json::json!({ "eval": v }));
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::Args, Debug)]
pub struct ChildArgs {
    #[arg(long)]
    model: String,
    #[arg(long)]
    threads: PathBuf,
    #[arg(long)]
    limit: Option<usize>,
}

/// The child: loads one model and prints one JSON line per thread.
pub fn child(args: &ChildArgs) -> Result<ExitCode> {
    let cache = cloister_guest_image::cache_root();
    let m = model::by_name(&args.model).context("unknown model")?;
    let dir = model::require(&cache, &m)?;
    let embedder = Embedder::load(&model::require(&cache, &MINILM_L6_V2)?, MINILM_L6_V2.name)?;
    let engine = if m.name == MINILM_L6_V2.name {
        Summarizer::new(None, Some(embedder), SummarizerConfig::default())?
    } else {
        let llm = LanguageModel::load(&dir.join("model.gguf"), m.name, None)?;
        Summarizer::new(Some(llm), Some(embedder), SummarizerConfig::default())?
    };
    for t in load_threads(&args.threads, args.limit)? {
        let body = serde_json::to_vec(&serde_json::json!({ "messages": t.messages }))?;
        let req = SummarizeRequest::from_json(&body)?;
        let started = Instant::now();
        let r = engine.summarize(&req, None)?;
        let a = Answer {
            id: t.id.clone(),
            summary: r.summary.clone(),
            model: r.model.clone(),
            truncated: r.truncated,
            tokens_in: r.tokens_in,
            tokens_out: r.tokens_out,
            seconds: started.elapsed().as_secs_f64(),
        };
        println!("{}", serde_json::to_string(&a)?);
    }
    Ok(ExitCode::SUCCESS)
}
