//! The summariser: a thread in, a summary out. The language model writes it from the messages
//! that fit its budget (the most central ones when an embedder is loaded, otherwise the
//! newest); the embedder alone extracts one when there is no language model, or when the
//! deadline is too near for the model to finish.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use zeroize::Zeroizing;

use crate::api::{
    ChatMessage, RewriteRequest, RewriteResponse, Stop, SummarizeRequest, SummarizeResponse,
};
use crate::embed::{Embedder, select};
use crate::error::SummarizeError;
use crate::llm::{Decoding, GenerateParams, Generation, LanguageModel};
use crate::template::Turn;

/// The system turn of a summary prompt.
pub const SUMMARY_SYSTEM: &str = "You are a helpful assistant that summarises group chat messages.";
/// The system turn of a rewrite prompt.
pub const REWRITE_SYSTEM: &str = "You rewrite the user's draft message. Reply with the rewritten \
message only, in the draft's language, without quotes or commentary.";

/// Settings of a [`Summarizer`].
#[derive(Debug, Clone, Copy)]
pub struct SummarizerConfig {
    /// Transcript tokens the prompt may carry; longer threads are cut down to this.
    pub prompt_budget: usize,
    /// Most tokens generated for one answer.
    pub max_new_tokens: usize,
    /// Token choice (greedy by default: the same thread gives the same summary).
    pub decoding: Decoding,
    /// Repeat penalty over the last 64 generated tokens.
    pub repeat_penalty: f32,
}

impl Default for SummarizerConfig {
    fn default() -> Self {
        SummarizerConfig {
            prompt_budget: 1536,
            max_new_tokens: 320,
            decoding: Decoding::Greedy,
            repeat_penalty: 1.1,
        }
    }
}

/// Throughput of the last generation, to judge whether the next one can meet its deadline.
#[derive(Debug, Clone, Copy)]
struct Rates {
    prompt_tok_s: f64,
    gen_tok_s: f64,
}

/// The summarise and rewrite workloads' engine.
#[derive(Debug)]
pub struct Summarizer {
    llm: Option<LanguageModel>,
    embedder: Option<Embedder>,
    cfg: SummarizerConfig,
    rates: Mutex<Option<Rates>>,
}

/// One message as the prompt shows it, and its cost.
struct Line {
    text: Zeroizing<String>,
    cost: usize,
    words: usize,
}

/// The chat turns of a summary request: the system prompt, then the user turn.
pub fn summary_turns(user: &str) -> [Turn<'_>; 2] {
    [
        Turn {
            role: "system",
            content: SUMMARY_SYSTEM,
        },
        Turn {
            role: "user",
            content: user,
        },
    ]
}

/// One message as the model sees it: `[at] from: text`, each field's whitespace flattened.
pub fn transcript_line(m: &ChatMessage) -> Zeroizing<String> {
    let flat = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    Zeroizing::new(format!(
        "[{}] {}: {}",
        flat(&m.at),
        flat(&m.from),
        flat(&m.text)
    ))
}

/// The user turn of a summary request: the instruction, then the transcript (one line per
/// message, already sanitised).
pub fn summary_instruction(max_words: usize, transcript: &str) -> Zeroizing<String> {
    Zeroizing::new(format!(
        "Summarise the unread chat messages below in 3 to 5 short bullet points, {max_words} \
words at most. Cover decisions, open questions and who will do what. Do not invent facts.\n\n{}",
        transcript.trim_end()
    ))
}

impl Summarizer {
    /// A summariser with a language model, an embedder, or both.
    pub fn new(
        llm: Option<LanguageModel>,
        embedder: Option<Embedder>,
        cfg: SummarizerConfig,
    ) -> Result<Self, SummarizeError> {
        if llm.is_none() && embedder.is_none() {
            return Err(SummarizeError::NoLanguageModel);
        }
        let s = Summarizer {
            llm,
            embedder,
            cfg,
            rates: Mutex::new(None),
        };
        s.calibrate()?;
        Ok(s)
    }

    /// Measures the language model's speed once, on a short prompt, so that the first request
    /// can already judge its deadline (under an emulated CPU a 1.5B model is a thousand times
    /// slower than on hardware). A short prompt runs slower per token than a long one, so the
    /// estimate errs towards the extractive answer.
    fn calibrate(&self) -> Result<(), SummarizeError> {
        let Some(llm) = &self.llm else { return Ok(()) };
        let prompt = llm.prompt(&[Turn {
            role: "user",
            content: "Say hello to the team.",
        }])?;
        self.generate(llm, &prompt, 4, None).map(drop)
    }

    /// The model that writes summaries (the language model's pinned name, else the embedder's).
    pub fn model(&self) -> &str {
        match (&self.llm, &self.embedder) {
            (Some(l), _) => l.id(),
            (None, Some(e)) => e.id(),
            (None, None) => "none",
        }
    }

    /// The language model, if loaded.
    pub fn language_model(&self) -> Option<&LanguageModel> {
        self.llm.as_ref()
    }

    fn lines(&self, messages: &[ChatMessage]) -> Result<Vec<Line>, SummarizeError> {
        messages
            .iter()
            .map(|m| {
                let raw = transcript_line(m);
                let words = m.text.split_whitespace().count();
                // Cost in the model's tokens (plus the newline); in words without a model.
                let (text, cost) = match &self.llm {
                    Some(l) => {
                        let t = Zeroizing::new(l.sanitise(&raw));
                        let c = l.count_tokens(&t)? + 1;
                        (t, c)
                    }
                    None => (raw, words),
                };
                Ok(Line { text, cost, words })
            })
            .collect()
    }

    /// Indices of the messages that fit `budget`: all of them, else the most central (with an
    /// embedder), else the newest.
    fn fit(&self, lines: &[Line], budget: usize) -> Result<Vec<usize>, SummarizeError> {
        let total: usize = lines.iter().map(|l| l.cost).sum();
        if total <= budget {
            return Ok((0..lines.len()).collect());
        }
        if let Some(e) = &self.embedder {
            let texts =
                Zeroizing::new(lines.iter().map(|l| l.text.to_string()).collect::<Vec<_>>());
            let emb = e.embed(&texts)?;
            let costs: Vec<usize> = lines.iter().map(|l| l.cost).collect();
            let substantive: Vec<bool> = lines.iter().map(|l| l.words >= 3).collect();
            let eligible = if substantive.iter().any(|&s| s) {
                substantive
            } else {
                vec![true; lines.len()]
            };
            return Ok(select(&emb, &costs, &eligible, budget));
        }
        let mut kept = Vec::new();
        let mut spent = 0;
        for (i, l) in lines.iter().enumerate().rev() {
            if spent + l.cost > budget {
                break;
            }
            spent += l.cost;
            kept.push(i);
        }
        kept.reverse();
        Ok(kept)
    }

    /// Summarises a (validated) thread, answering by `deadline`.
    pub fn summarize(
        &self,
        req: &SummarizeRequest,
        deadline: Option<Instant>,
    ) -> Result<SummarizeResponse, SummarizeError> {
        req.validate()?;
        let max_words = req.max_words() as usize;
        let lines = self.lines(&req.messages)?;
        let Some(llm) = &self.llm else {
            return self.extract(&req.messages, &lines, max_words);
        };
        let budget = self.cfg.prompt_budget.min(
            llm.context_length()
                .saturating_sub(self.cfg.max_new_tokens + 256),
        );
        let kept = self.fit(&lines, budget)?;
        let truncated = kept.len() < lines.len();
        let mut transcript = Zeroizing::new(String::new());
        for &i in &kept {
            transcript.push_str(&lines[i].text);
            transcript.push('\n');
        }
        let user = summary_instruction(max_words, &transcript);
        let prompt = Zeroizing::new(llm.prompt(&summary_turns(&user))?);
        let max_new = self.cfg.max_new_tokens.min(max_words * 2 + 32);
        if self.embedder.is_some() && !self.can_finish(prompt.len(), max_new, deadline) {
            return self.extract(&req.messages, &lines, max_words);
        }
        let g = match self.generate(llm, &prompt, max_new, deadline) {
            // The model could not even start in time: the extractive answer still can.
            Err(SummarizeError::DeadlineExceeded) if self.embedder.is_some() => {
                return self.extract(&req.messages, &lines, max_words);
            }
            r => r?,
        };
        Ok(SummarizeResponse {
            summary: g.text.clone(),
            model: llm.id().to_string(),
            truncated,
            messages_used: kept.len(),
            tokens_in: g.prompt_tokens,
            tokens_out: g.generated_tokens,
            stop: g.stop,
        })
    }

    /// The extractive summary: the most central messages within `max_words`, as bullets.
    fn extract(
        &self,
        messages: &[ChatMessage],
        lines: &[Line],
        max_words: usize,
    ) -> Result<SummarizeResponse, SummarizeError> {
        let e = self
            .embedder
            .as_ref()
            .ok_or(SummarizeError::NoLanguageModel)?;
        let texts = Zeroizing::new(messages.iter().map(|m| m.text.clone()).collect::<Vec<_>>());
        let emb = e.embed(&texts)?;
        let costs: Vec<usize> = messages
            .iter()
            .map(|m| m.text.split_whitespace().count() + m.from.split_whitespace().count())
            .collect();
        let substantive: Vec<bool> = lines.iter().map(|l| l.words >= 4).collect();
        let eligible = if substantive.iter().any(|&s| s) {
            substantive
        } else {
            vec![true; lines.len()]
        };
        let mut picked = select(&emb, &costs, &eligible, max_words);
        if picked.is_empty() {
            // Even the shortest message is longer than max_words: take the most central one.
            picked = select(&emb, &vec![0; costs.len()], &eligible, 0)
                .into_iter()
                .take(1)
                .collect();
        }
        let summary = picked
            .iter()
            .map(|&i| format!("- {}: {}", messages[i].from.trim(), messages[i].text.trim()))
            .collect::<Vec<_>>()
            .join("\n");
        Ok(SummarizeResponse {
            summary,
            model: e.id().to_string(),
            truncated: picked.len() < messages.len(),
            messages_used: picked.len(),
            tokens_in: 0,
            tokens_out: 0,
            stop: Stop::Extractive,
        })
    }

    /// Rewrites a draft in the requested tone.
    pub fn rewrite(
        &self,
        req: &RewriteRequest,
        deadline: Option<Instant>,
    ) -> Result<RewriteResponse, SummarizeError> {
        let llm = self.llm.as_ref().ok_or(SummarizeError::NoLanguageModel)?;
        let draft = Zeroizing::new(llm.sanitise(req.text.trim()));
        let user = Zeroizing::new(format!(
            "Rewrite this draft so that it sounds {}. Keep its meaning.\n\n{}",
            crate::api::describe(req.tone),
            draft.as_str()
        ));
        let prompt = Zeroizing::new(llm.prompt(&[
            Turn {
                role: "system",
                content: REWRITE_SYSTEM,
            },
            Turn {
                role: "user",
                content: &user,
            },
        ])?);
        let max_new = self
            .cfg
            .max_new_tokens
            .min(llm.count_tokens(&draft)? * 2 + 32);
        let g = self.generate(llm, &prompt, max_new, deadline)?;
        Ok(RewriteResponse {
            text: g.text.clone(),
        })
    }

    /// Generates with the configured decoding and records the speed.
    fn generate(
        &self,
        llm: &LanguageModel,
        prompt: &[u32],
        max_new: usize,
        deadline: Option<Instant>,
    ) -> Result<Generation, SummarizeError> {
        let params = GenerateParams {
            decoding: self.cfg.decoding,
            max_new_tokens: max_new,
            repeat_penalty: self.cfg.repeat_penalty,
            deadline,
            ..GenerateParams::default()
        };
        let g = llm.generate(prompt, &params)?;
        self.record(
            g.prompt_tokens,
            g.prompt_time,
            g.generated_tokens,
            g.generate_time,
        );
        Ok(g)
    }

    fn record(&self, prompt: usize, pt: Duration, generated: usize, gt: Duration) {
        if pt.is_zero() || gt.is_zero() || generated == 0 {
            return;
        }
        if let Ok(mut r) = self.rates.lock() {
            *r = Some(Rates {
                prompt_tok_s: prompt as f64 / pt.as_secs_f64(),
                gen_tok_s: generated as f64 / gt.as_secs_f64(),
            });
        }
    }

    /// Whether the last measured throughput lets `prompt` + `max_new` tokens finish by the
    /// deadline (unknown throughput: assume yes).
    fn can_finish(&self, prompt: usize, max_new: usize, deadline: Option<Instant>) -> bool {
        let (Some(deadline), Ok(rates)) = (deadline, self.rates.lock()) else {
            return true;
        };
        let Some(r) = *rates else { return true };
        let need = prompt as f64 / r.prompt_tok_s + max_new as f64 / r.gen_tok_s;
        Instant::now() + Duration::from_secs_f64(need.min(86_400.0)) <= deadline
    }
}
