//! Sentence embeddings (all-MiniLM-L6-v2, BERT) and the choice of the messages that carry a
//! thread: centrality to the thread's mean embedding, with maximal-marginal-relevance so that
//! near-duplicates are not all picked. Used to fit a long thread into the language model's
//! budget, and alone as the extractive summariser.

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config, DTYPE};
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

use crate::error::SummarizeError;

/// Tokens of one message that the embedder reads (MiniLM was trained on 128–256).
const MAX_EMBED_TOKENS: usize = 128;
/// Messages embedded per forward pass.
const BATCH: usize = 32;
/// Weight of centrality against redundancy in the selection.
const LAMBDA: f32 = 0.7;

/// A loaded sentence-embedding model.
pub struct Embedder {
    id: String,
    model: BertModel,
    tokenizer: Tokenizer,
    device: Device,
}

impl std::fmt::Debug for Embedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Embedder").finish_non_exhaustive()
    }
}

fn read(path: &Path) -> Result<Vec<u8>, SummarizeError> {
    std::fs::read(path).map_err(|source| SummarizeError::Io {
        path: path.display().to_string(),
        source,
    })
}

impl Embedder {
    /// Loads `config.json`, `tokenizer.json` and `model.safetensors` from `dir`, under the
    /// pinned name `id`.
    pub fn load(dir: &Path, id: &str) -> Result<Self, SummarizeError> {
        let device = Device::Cpu;
        let config: Config =
            serde_json::from_slice(&read(&dir.join("config.json"))?).map_err(|e| {
                SummarizeError::UnsupportedModel {
                    path: dir.join("config.json").display().to_string(),
                    reason: e.to_string(),
                }
            })?;
        let mut tokenizer = Tokenizer::from_bytes(read(&dir.join("tokenizer.json"))?)
            .map_err(|e| SummarizeError::Tokenizer(e.to_string()))?;
        tokenizer
            .with_padding(Some(PaddingParams {
                strategy: PaddingStrategy::BatchLongest,
                ..Default::default()
            }))
            .with_truncation(Some(TruncationParams {
                max_length: MAX_EMBED_TOKENS,
                ..Default::default()
            }))
            .map_err(|e| SummarizeError::Tokenizer(e.to_string()))?;
        // Read, not mapped: the crate forbids `unsafe`, and 90 MB read once at boot is cheap.
        let vb = VarBuilder::from_buffered_safetensors(
            read(&dir.join("model.safetensors"))?,
            DTYPE,
            &device,
        )?;
        let model = BertModel::load(vb, &config)?;
        Ok(Embedder {
            id: id.to_string(),
            model,
            tokenizer,
            device,
        })
    }

    /// The pinned name it was loaded under.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Unit-length embeddings of `texts` (mean of token states, as sentence-transformers does).
    pub fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, SummarizeError> {
        let mut out = Vec::with_capacity(texts.len());
        for batch in texts.chunks(BATCH) {
            let encs = self
                .tokenizer
                .encode_batch(batch.to_vec(), true)
                .map_err(|e| SummarizeError::Tokenizer(e.to_string()))?;
            let ids = encs
                .iter()
                .map(|e| Tensor::new(e.get_ids(), &self.device))
                .collect::<candle_core::Result<Vec<_>>>()?;
            let masks = encs
                .iter()
                .map(|e| Tensor::new(e.get_attention_mask(), &self.device))
                .collect::<candle_core::Result<Vec<_>>>()?;
            let ids = Tensor::stack(&ids, 0)?;
            let mask = Tensor::stack(&masks, 0)?;
            let hidden = self.model.forward(&ids, &ids.zeros_like()?, Some(&mask))?;
            let maskf = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
            let summed = hidden.broadcast_mul(&maskf)?.sum(1)?;
            let mean = summed.broadcast_div(&maskf.sum(1)?)?;
            let norm = mean.sqr()?.sum_keepdim(1)?.sqrt()?;
            let unit = mean.broadcast_div(&norm)?;
            out.extend(unit.to_vec2::<f32>()?);
        }
        Ok(out)
    }
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Picks messages by centrality with redundancy control until `budget` (in the caller's unit,
/// e.g. tokens) is spent; `costs[i]` is message `i`'s cost. Ties go to the newer message.
/// Returns indices in chronological order. Messages costing more than the whole budget are
/// skipped; `eligible[i] == false` excludes a message.
pub fn select(
    embeddings: &[Vec<f32>],
    costs: &[usize],
    eligible: &[bool],
    budget: usize,
) -> Vec<usize> {
    let n = embeddings.len();
    if n == 0 {
        return Vec::new();
    }
    let dim = embeddings[0].len();
    let mut centroid = vec![0f32; dim];
    for e in embeddings {
        for (c, x) in centroid.iter_mut().zip(e) {
            *c += x;
        }
    }
    let norm = dot(&centroid, &centroid).sqrt().max(f32::EPSILON);
    centroid.iter_mut().for_each(|c| *c /= norm);
    let centrality: Vec<f32> = embeddings.iter().map(|e| dot(e, &centroid)).collect();

    let mut picked: Vec<usize> = Vec::new();
    let mut spent = 0usize;
    let mut redundancy = vec![0f32; n];
    loop {
        let mut best: Option<(f32, usize)> = None;
        for i in 0..n {
            if picked.contains(&i) || !eligible[i] || spent + costs[i] > budget {
                continue;
            }
            let score = LAMBDA * centrality[i] - (1.0 - LAMBDA) * redundancy[i];
            // `>=` walks oldest to newest, so an equal score goes to the newer message.
            if best.is_none_or(|(s, _)| score >= s) {
                best = Some((score, i));
            }
        }
        let Some((_, i)) = best else { break };
        picked.push(i);
        spent += costs[i];
        for (j, r) in redundancy.iter_mut().enumerate() {
            *r = r.max(dot(&embeddings[i], &embeddings[j]));
        }
    }
    picked.sort_unstable();
    picked
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(v: &[f32]) -> Vec<f32> {
        let n = dot(v, v).sqrt();
        v.iter().map(|x| x / n).collect()
    }

    #[test]
    fn picks_central_messages_within_budget_in_order() {
        // Three on-topic messages around (1,0), one off-topic, one duplicate of the first.
        let e = vec![
            unit(&[1.0, 0.1]),
            unit(&[0.0, 1.0]),
            unit(&[1.0, -0.1]),
            unit(&[1.0, 0.1]),
            unit(&[0.9, 0.0]),
        ];
        let costs = [10, 10, 10, 10, 10];
        let all = [true; 5];
        let p = select(&e, &costs, &all, 20);
        assert_eq!(p.len(), 2);
        assert!(
            !p.contains(&1),
            "the off-topic message is not central: {p:?}"
        );
        assert!(p.windows(2).all(|w| w[0] < w[1]), "chronological: {p:?}");
        // Budget bounds the pick; an oversized message is skipped, not fatal.
        let p = select(&e, &[10, 10, 10, 10, 1000], &all, 25);
        assert_eq!(p.len(), 2);
        assert!(!p.contains(&4));
    }

    #[test]
    fn ties_go_to_the_newest_and_ineligible_are_skipped() {
        let e = vec![unit(&[1.0, 0.0]); 4];
        assert_eq!(select(&e, &[1; 4], &[true; 4], 1), vec![3]);
        assert_eq!(select(&e, &[1; 4], &[true, true, true, false], 1), vec![2]);
        assert!(select(&[], &[], &[], 10).is_empty());
    }
}
