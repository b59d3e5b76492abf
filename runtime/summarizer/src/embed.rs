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

/// Names the word-embedding table may have in a BERT checkpoint.
const WORD_EMBEDDINGS: [&str; 2] = [
    "embeddings.word_embeddings.weight",
    "bert.embeddings.word_embeddings.weight",
];

/// A loaded sentence-embedding model.
///
/// Its word-embedding lookup does not show the host which tokens a message has: the model's
/// own table is a table of *slots*, and for each batch the rows of its tokens are copied from
/// the real table by [`crate::oblivious::gather`] into slots 0, 1, 2, … in order; the model then
/// looks up slot ids, which say nothing, and the slots are cleared after the pass.
pub struct Embedder {
    id: String,
    model: BertModel,
    tokenizer: Tokenizer,
    device: Device,
    /// The real word-embedding table, f32 little-endian, row after row.
    table: Vec<u8>,
    /// Width of a row.
    hidden: usize,
    /// The model's table of slots (shares its storage with the model's word embeddings);
    /// locked for a whole pass, so two requests never share slots.
    slots: std::sync::Mutex<Tensor>,
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
        let weights = dir.join("model.safetensors");
        let mut tensors = candle_core::safetensors::load_buffer(&read(&weights)?, &device)?;
        let unsupported = |reason: String| SummarizeError::UnsupportedModel {
            path: weights.display().to_string(),
            reason,
        };
        let name = WORD_EMBEDDINGS
            .iter()
            .find(|n| tensors.contains_key(**n))
            .ok_or_else(|| unsupported("no word-embedding table".to_owned()))?;
        let real = tensors
            .remove(*name)
            .ok_or_else(|| unsupported("no word-embedding table".to_owned()))?;
        let (vocab, hidden) = real.dims2()?;
        let table: Vec<u8> = real
            .to_dtype(DType::F32)?
            .flatten_all()?
            .to_vec1::<f32>()?
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        drop(real);
        let slots = Tensor::zeros((vocab, hidden), DType::F32, &device)?;
        tensors.insert((*name).to_owned(), slots.clone());
        let vb = VarBuilder::from_tensors(tensors, DTYPE, &device);
        let model = BertModel::load(vb, &config)?;
        Ok(Embedder {
            id: id.to_string(),
            model,
            tokenizer,
            device,
            table,
            hidden,
            slots: std::sync::Mutex::new(slots),
        })
    }

    /// The model's last hidden states for `ids` (`rows` x `cols` token ids, row-major), its
    /// word embeddings read obliviously into the slots.
    fn forward_oblivious(
        &self,
        ids: &[u32],
        rows: usize,
        cols: usize,
        mask: &Tensor,
    ) -> Result<Tensor, SummarizeError> {
        let n = ids.len();
        let bad = |reason: String| SummarizeError::UnsupportedModel {
            path: String::new(),
            reason,
        };
        let slots = self
            .slots
            .lock()
            .map_err(|_| bad("the embedder's slots are poisoned".to_owned()))?;
        let (vocab, _) = slots.dims2()?;
        if n > vocab || n != rows * cols {
            return Err(bad(format!("{n} tokens for {vocab} slots")));
        }
        let gathered = crate::oblivious::gather(&self.table, self.hidden * 4, ids)
            .map_err(|e| bad(e.to_string()))?;
        let values: zeroize::Zeroizing<Vec<f32>> = zeroize::Zeroizing::new(
            gathered
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
        );
        let rows_t = Tensor::from_slice(&values[..], (n, self.hidden), &self.device)?;
        slots.slice_set(&rows_t, 0, 0)?;
        let zeros = Tensor::zeros((n, self.hidden), DType::F32, &self.device)?;
        rows_t.slice_set(&zeros, 0, 0)?;
        let slot_ids: Vec<u32> = (0..n as u32).collect();
        let slot_ids = Tensor::from_vec(slot_ids, (rows, cols), &self.device)?;
        let hidden = self
            .model
            .forward(&slot_ids, &slot_ids.zeros_like()?, Some(mask));
        // The slots are cleared whatever the pass did.
        slots.slice_set(&zeros, 0, 0)?;
        Ok(hidden?)
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
            let ids: zeroize::Zeroizing<Vec<u32>> = zeroize::Zeroizing::new(
                encs.iter()
                    .flat_map(|e| e.get_ids().iter().copied())
                    .collect(),
            );
            let cols = encs.first().map_or(0, |e| e.get_ids().len());
            let masks = encs
                .iter()
                .map(|e| Tensor::new(e.get_attention_mask(), &self.device))
                .collect::<candle_core::Result<Vec<_>>>()?;
            let mask = Tensor::stack(&masks, 0)?;
            let hidden = self.forward_oblivious(&ids, encs.len(), cols, &mask)?;
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
