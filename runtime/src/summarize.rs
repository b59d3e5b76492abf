//! The summariser's workloads: `POST /v1/summarize` and `POST /v1/rewrite`, JSON in and out,
//! over one shared [`Summarizer`] (the model is loaded once, at boot).

use std::path::Path;
use std::sync::Arc;

use cloister_summarizer::{
    Embedder, FromBody as _, LanguageModel, RewriteRequest, SummarizeError, SummarizeRequest,
    Summarizer, SummarizerConfig,
};

use cloister_protocol::media;
use cloister_protocol::workload::{REWRITE_PATH, SUMMARIZE_PATH};

use crate::workload::{Request, Response, Router, Workload};

/// Where the image keeps model weights: one directory per pinned model.
pub use cloister_protocol::guest_config::MODELS_DIR;
/// The embedder's pinned name (its directory under [`MODELS_DIR`]).
pub const EMBEDDER: &str = "all-minilm-l6-v2";

/// The language models this runtime knows, by pinned name, with the `general.basename` their
/// GGUF metadata must carry.
const LANGUAGE_MODELS: &[(&str, &str)] = &[
    ("qwen2.5-coder-1.5b-instruct-q4_k_m", "Qwen2.5-Coder"),
    ("smollm2-135m-instruct-q4_1", "smollm2"),
];

/// Why the configured model could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// `cloister.model` names no model this runtime knows.
    #[error("cloister.model={0}: not a known model (known: {known})", known = known())]
    Unknown(String),
    /// The model is known but its files are not in the image.
    #[error("cloister.model={model}: {path} is not in this image")]
    NotInImage {
        /// The model.
        model: String,
        /// The missing file or directory.
        path: String,
    },
    /// Loading failed.
    #[error("cloister.model={model}: {source}")]
    Load {
        /// The model.
        model: String,
        /// Why.
        source: SummarizeError,
    },
}

fn known() -> String {
    let mut names: Vec<&str> = LANGUAGE_MODELS.iter().map(|(n, _)| *n).collect();
    names.push(EMBEDDER);
    names.join(", ")
}

/// Loads the summariser named by `cloister.model` from `models` (a directory holding one
/// directory per pinned model). A language model is paired with the embedder when the image
/// has it; the embedder alone is the extractive summariser.
pub fn load(models: &Path, model: &str, cfg: SummarizerConfig) -> Result<Summarizer, ModelError> {
    let present = |p: &Path| {
        if p.exists() {
            Ok(())
        } else {
            Err(ModelError::NotInImage {
                model: model.to_string(),
                path: p.display().to_string(),
            })
        }
    };
    let failed = |source| ModelError::Load {
        model: model.to_string(),
        source,
    };
    let embedder_dir = models.join(EMBEDDER);
    if model == EMBEDDER {
        present(&embedder_dir)?;
        let e = Embedder::load(&embedder_dir, EMBEDDER).map_err(failed)?;
        return Summarizer::new(None, Some(e), cfg).map_err(failed);
    }
    let (_, basename) = LANGUAGE_MODELS
        .iter()
        .find(|(n, _)| *n == model)
        .ok_or_else(|| ModelError::Unknown(model.to_string()))?;
    let gguf = models.join(model).join("model.gguf");
    present(&gguf)?;
    let llm = LanguageModel::load(&gguf, model, Some(basename)).map_err(failed)?;
    let embedder = if embedder_dir.exists() {
        Some(Embedder::load(&embedder_dir, EMBEDDER).map_err(failed)?)
    } else {
        None
    };
    Summarizer::new(Some(llm), embedder, cfg).map_err(failed)
}

/// The routes of a guest with a summariser: echo, summarise, rewrite.
pub fn router(engine: Arc<Summarizer>) -> Router {
    Router::with_echo()
        .route(
            "POST",
            SUMMARIZE_PATH,
            Arc::new(Summarize(Arc::clone(&engine))),
        )
        .route("POST", REWRITE_PATH, Arc::new(Rewrite(engine)))
}

/// `POST /v1/summarize`.
#[derive(Debug)]
pub struct Summarize(pub Arc<Summarizer>);

/// `POST /v1/rewrite`.
#[derive(Debug)]
pub struct Rewrite(pub Arc<Summarizer>);

fn json_only(request: &Request) -> Option<Response> {
    if media::is(request.content_type.as_deref().unwrap_or(""), media::JSON) {
        None
    } else {
        Some(Response::problem(
            415,
            "unsupported-media-type",
            "send the request as application/json",
        ))
    }
}

fn refused(e: &SummarizeError) -> Response {
    let (status, kind) = match e {
        SummarizeError::BadJson(_) => (400, "bad-request"),
        SummarizeError::TooManyMessages { .. } | SummarizeError::FieldTooLong { .. } => {
            (413, "too-large")
        }
        SummarizeError::EmptyThread
        | SummarizeError::EmptyMessage { .. }
        | SummarizeError::MaxWordsOutOfRange { .. } => (422, "unprocessable"),
        SummarizeError::NoLanguageModel => (501, "not-implemented"),
        SummarizeError::DeadlineExceeded => (504, "deadline"),
        _ => (500, "inference-failed"),
    };
    Response::problem(status, kind, &e.to_string())
}

fn json<T: serde::Serialize>(value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => Response {
            status: 200,
            content_type: media::JSON,
            body,
        },
        Err(_) => Response::problem(500, "internal", "could not encode the answer"),
    }
}

/// Checks the media type, parses the body with `parse`, answers with `run`'s JSON or the
/// refusal's problem.
fn answer<Q, A: serde::Serialize>(
    request: &Request,
    parse: impl FnOnce(&[u8]) -> Result<Q, SummarizeError>,
    run: impl FnOnce(&Q) -> Result<A, SummarizeError>,
) -> Response {
    if let Some(r) = json_only(request) {
        return r;
    }
    match parse(&request.body).and_then(|q| run(&q)) {
        Ok(a) => json(&a),
        Err(e) => refused(&e),
    }
}

impl Workload for Summarize {
    fn handle(&self, request: &Request) -> Response {
        answer(request, SummarizeRequest::from_json, |q| {
            self.0.summarize(q, request.deadline)
        })
    }
}

impl Workload for Rewrite {
    fn handle(&self, request: &Request) -> Response {
        answer(request, RewriteRequest::from_json, |q| {
            self.0.rewrite(q, request.deadline)
        })
    }
}
