//! Every reason the client stops, one variant each. Messages name what was expected and what
//! was found, and never carry tokens or request content.

use std::path::PathBuf;
use std::time::Duration;

use cloister_measurement::{Step, VerifyError};
use cloister_protocol::BundleError;
use cloister_protocol::access::NodeId;

/// What the client was doing (for [`ClientError::Timeout`] and transport errors).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Fetching the gateway's outer key configuration through the relay.
    OuterKey,
    /// Fetching the node directory.
    Directory,
    /// Verifying the nodes' evidence.
    Verify,
    /// Fetching a log consistency proof.
    Consistency,
    /// Getting a Privacy Pass token from the issuer.
    Token,
    /// Sending the request to the chosen node and waiting for its answer.
    Exchange,
}

impl Stage {
    /// Every stage, in order.
    pub const ALL: [Stage; 6] = [
        Stage::OuterKey,
        Stage::Directory,
        Stage::Verify,
        Stage::Consistency,
        Stage::Token,
        Stage::Exchange,
    ];

    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Stage::OuterKey => "outer key",
            Stage::Directory => "node directory",
            Stage::Verify => "verification",
            Stage::Consistency => "log consistency proof",
            Stage::Token => "token issuance",
            Stage::Exchange => "exchange with the node",
        }
    }
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Which OHTTP layer an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layer {
    /// Device ⇄ gateway (through the relay).
    Outer,
    /// Device ⇄ node (the attested key).
    Inner,
}

impl std::fmt::Display for Layer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Layer::Outer => "outer (gateway)",
            Layer::Inner => "inner (node)",
        })
    }
}

/// One node that failed verification: which check refused it and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeFailure {
    /// The node.
    pub id: NodeId,
    /// The first check that refused.
    pub step: Step,
    /// Its reason.
    pub error: VerifyError,
}

impl std::fmt::Display for NodeFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} check failed: {}",
            self.id,
            self.step.name(),
            self.error
        )
    }
}

fn list_failures(failures: &[NodeFailure]) -> String {
    if failures.is_empty() {
        return "the directory lists no nodes".to_owned();
    }
    let each: Vec<String> = failures.iter().map(ToString::to_string).collect();
    each.join("; ")
}

fn kind_or_none(kind: &Option<String>) -> &str {
    kind.as_deref().unwrap_or("no problem document")
}

/// Why a client operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// A base URL that is not `http://HOST[:PORT][/PREFIX]`.
    #[error("{url:?} is not a usable URL: {reason}")]
    Url {
        /// The URL (clipped).
        url: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// The TCP connection could not be made.
    #[error("cannot connect to {authority}: {source}")]
    Connect {
        /// `HOST:PORT`.
        authority: String,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// The HTTP exchange failed after connecting.
    #[error("HTTP exchange with {authority} failed: {reason}")]
    Http {
        /// `HOST:PORT`.
        authority: String,
        /// hyper's reason.
        reason: String,
    },
    /// An answer longer than the client reads.
    #[error("the answer from {authority} exceeds {max} bytes")]
    TooLarge {
        /// `HOST:PORT`.
        authority: String,
        /// The cap.
        max: usize,
    },
    /// A request too long for the largest padding bucket: sent, its length would show.
    #[error(
        "the request is {len} bytes; the largest that can be sent with its length hidden is {max}"
    )]
    RequestTooLarge {
        /// The request's encoded length.
        len: usize,
        /// The largest bucket.
        max: usize,
    },
    /// The request's deadline passed.
    #[error("deadline of {} s passed during {stage}", deadline.as_secs())]
    Timeout {
        /// What was under way.
        stage: Stage,
        /// The deadline.
        deadline: Duration,
    },
    /// The TLS handshake with the relay or the issuer failed (an untrusted certificate, another
    /// host's, an old protocol).
    #[error("TLS with {authority}: {reason}")]
    Tls {
        /// `HOST:PORT`.
        authority: String,
        /// Why.
        reason: String,
    },
    /// The TLS roots the device was given are unusable.
    #[error("TLS roots: {0}")]
    TlsRoots(String),
    /// The relay (or the gateway behind it) refused in plaintext.
    #[error("relay answered {status} ({})", kind_or_none(kind))]
    Relay {
        /// HTTP status.
        status: u16,
        /// Problem kind, if the body was a problem document.
        kind: Option<String>,
    },
    /// The gateway refused inside the outer layer.
    #[error("gateway answered {status} ({kind}): {detail}")]
    Gateway {
        /// HTTP status.
        status: u16,
        /// Problem kind (`token-spent`, `node-unknown`, ...; `unknown` without a document).
        kind: String,
        /// The problem's detail.
        detail: String,
    },
    /// The issuer refused.
    #[error("issuer answered {status} ({})", kind_or_none(kind))]
    Issuer {
        /// HTTP status.
        status: u16,
        /// Problem kind, if the body was a problem document.
        kind: Option<String>,
    },
    /// An answer of another media type than the protocol's.
    #[error("{what}: expected {expected}, found {found:?}")]
    MediaType {
        /// Which answer.
        what: &'static str,
        /// The media type wanted.
        expected: &'static str,
        /// The one given.
        found: Option<String>,
    },
    /// The gateway's key configuration list is unusable.
    #[error("the gateway's OHTTP key configuration is unusable: {0}")]
    OuterKey(String),
    /// OHTTP encapsulation or decapsulation failed.
    #[error("{layer} OHTTP {operation} failed: {reason}")]
    Ohttp {
        /// Which layer.
        layer: Layer,
        /// `encapsulation` or `decapsulation`.
        operation: &'static str,
        /// The library's reason.
        reason: String,
    },
    /// A Binary HTTP message could not be written or read.
    #[error("{layer} Binary HTTP message: {reason}")]
    Bhttp {
        /// Which layer.
        layer: Layer,
        /// The library's reason.
        reason: String,
    },
    /// The node directory is malformed.
    #[error("node directory refused: {0}")]
    Directory(BundleError),
    /// No node passed verification; each failure names its node and check.
    #[error("no node passed verification: {}", list_failures(.0))]
    NoVerifiedNode(Vec<NodeFailure>),
    /// Some nodes verified and others did not: a directory the device cannot verify whole is
    /// refused (a gateway could hide the one node it wants among nodes nobody can use).
    #[error(
        "the directory mixes {verified} verified nodes with nodes that fail verification (a \
         broken or hostile operator; report it): {}",
        list_failures(failures)
    )]
    MixedDirectory {
        /// Nodes that verified.
        verified: usize,
        /// The ones that did not, each with its check.
        failures: Vec<NodeFailure>,
    },
    /// Two directory entries carry the same attested key: one node listed twice.
    #[error("nodes {first} and {second} are one node (the same attested key) listed twice")]
    DuplicateNodeKey {
        /// The first entry.
        first: NodeId,
        /// The entry that repeats it.
        second: NodeId,
    },
    /// The directory's verified nodes run on fewer distinct machines than the device's policy
    /// asks for.
    #[error(
        "the directory's nodes run on {found} distinct machine(s); the policy asks for at least \
         {required}"
    )]
    TooFewMachines {
        /// Distinct machines found.
        found: usize,
        /// The policy's minimum.
        required: usize,
    },
    /// Sending needs an issuer and an account, and none is configured.
    #[error("no issuer is configured (a token is needed to send)")]
    NoIssuer,
    /// `send_to` named a node that is not verified (or not listed).
    #[error("node {0} is not a verified node of the directory")]
    UnknownNode(NodeId),
    /// The trust anchor could not be built.
    #[error("trust anchor: {0}")]
    Anchor(VerifyError),
    /// The trusted transparency log's keys are malformed.
    #[error("trusted log: {0}")]
    LogKeys(cloister_transparency::VerifyError),
    /// The log went backwards or forked against the checkpoint seen before.
    #[error("transparency log: {0}")]
    Log(cloister_transparency::VerifyError),
    /// The state file (the seen checkpoint) could not be read or written.
    #[error("state file {}: {reason}", path.display())]
    State {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The issuer directory is malformed.
    #[error("issuer directory refused: {0}")]
    IssuerDirectory(BundleError),
    /// The issuer lists no current key of token type 0x0002.
    #[error("the issuer lists no current token key of type 0x0002")]
    NoIssuerKey,
    /// The issuer's key is not one of its current keys in the log.
    #[error(
        "the issuer's token key is not one of its current keys in the transparency log (a key \
         for this account alone would tie every request to it); refused"
    )]
    IssuerKeyNotLogged,
    /// The gateway's key configuration is not one of its current keys in the log.
    #[error(
        "the gateway's key configuration is not one of its current keys in the transparency log \
         (a relay or a path that substituted it would read the token and the chosen node); \
         refused"
    )]
    OuterKeyNotLogged,
    /// The log's gateway keys cannot be used: none current, or too many open at once.
    #[error("gateway keys in the log: {0}")]
    GatewayKeys(cloister_transparency::GatewayKeysError),
    /// The log's issuer keys cannot be used: none current, or too many open at once.
    #[error("issuer keys in the log: {0}")]
    IssuerKeys(cloister_transparency::IssuerKeysError),
    /// The device checks the operator's keys against a log, and trusts none.
    #[error(
        "no transparency log is trusted, so the operator's keys cannot be checked (give --log-key, \
         or accept unlogged keys by name)"
    )]
    NoLogForIssuerKeys,
    /// The issuer's key is not a valid RSA-PSS SPKI.
    #[error("the issuer's token key is malformed: {0}")]
    IssuerKey(String),
    /// The issuer request URI is neither a path nor an `http://` URL.
    #[error("the issuer request URI {0:?} is neither a path nor an http:// URL")]
    IssuerRequestUri(String),
    /// The directory's token challenge is not an RFC 9577 TokenChallenge.
    #[error("the token challenge is malformed")]
    Challenge,
    /// The challenge asks for another token type than 0x0002.
    #[error("the token challenge asks for token type {found:#06x}, expected 0x0002")]
    TokenType {
        /// Type asked for.
        found: u16,
    },
    /// The challenge names a redemption context: tokens fetched ahead could not be spent, and
    /// each issuance would sit right before its redemption.
    #[error(
        "the token challenge carries a redemption context (a per-request challenge would link \
         each issuance to its redemption); refused"
    )]
    RedemptionContext,
    /// The token request could not be built.
    #[error("token request: {0}")]
    TokenRequest(String),
    /// The issuer's token response could not be finalised into a token.
    #[error("token response: {0}")]
    TokenResponse(String),
    /// The operating system's random source failed.
    #[error("random source: {0}")]
    Random(String),
    /// The chat or request input is not usable.
    #[error(transparent)]
    Input(#[from] crate::chat::InputError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_verified_node_names_each_node_and_check() {
        let e = ClientError::NoVerifiedNode(vec![
            NodeFailure {
                id: NodeId::new("node-a").expect("id"),
                step: Step::Chain,
                error: VerifyError::ReportDataMismatch,
            },
            NodeFailure {
                id: NodeId::new("node-b").expect("id"),
                step: Step::Measurement,
                error: VerifyError::LogProofMissing,
            },
        ]);
        let text = e.to_string();
        assert!(text.contains("node-a: chain check failed"), "{text}");
        assert!(text.contains("node-b: measurement check failed"), "{text}");
        assert!(
            ClientError::NoVerifiedNode(vec![])
                .to_string()
                .contains("lists no nodes")
        );
    }

    #[test]
    fn timeout_names_the_stage() {
        let e = ClientError::Timeout {
            stage: Stage::Token,
            deadline: Duration::from_secs(5),
        };
        assert_eq!(
            e.to_string(),
            "deadline of 5 s passed during token issuance"
        );
    }
}
