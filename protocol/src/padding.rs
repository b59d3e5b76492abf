//! Length hiding in both OHTTP layers. Every Binary HTTP message (RFC 9292) that a Cloister
//! device, gateway or node seals is followed by zero bytes — RFC 9292 §3.8's padding — up to a
//! size that depends only on a bucket, so that the relay, the gateway and anyone on the path
//! see the bucket, not the length of the chat or of the summary.
//!
//! * **Outer layer** (device ↔ gateway): padded to the smallest of [`BUCKETS`] that holds it —
//!   2 KiB, doubling up to 512 KiB.
//! * **Inner layer** (device ↔ node, read only by the node): padded to a bucket less
//!   [`OUTER_RESERVE`] (1 KiB, 3 KiB, 7 KiB, …, 511 KiB). The reserve is the room the outer
//!   layer needs around the inner ciphertext — the inner OHTTP overhead (55 bytes), the token,
//!   the node's path, a content type, framing — so an inner message in bucket *b* travels in
//!   an outer message of exactly *b*, whatever the node id or the token.
//!
//! On the wire a request is then a bucket plus 55 bytes (RFC 9458 header, encapsulated key,
//! tag), an answer a bucket plus 32 (response nonce, tag). What is left visible: the bucket —
//! about the base-2 logarithm of the length, nine values up to 512 KiB — at a cost of less than
//! twice the bytes. Beyond the largest bucket a message is padded to a multiple of it; the
//! device refuses to send such a request ([`fits_one_bucket`]). A reader strips the padding
//! and refuses non-zero padding (RFC 9292 §3.8: such a message is invalid); unpadded messages
//! from other implementations are read as they are.

use std::io::Cursor;

use bhttp::{Message, Mode};
use zeroize::Zeroizing;

/// The sizes an outer message is padded to, smallest first.
pub const BUCKETS: [usize; 9] = [
    2 << 10,
    4 << 10,
    8 << 10,
    16 << 10,
    32 << 10,
    64 << 10,
    128 << 10,
    256 << 10,
    512 << 10,
];

/// The largest bucket.
pub const LARGEST: usize = BUCKETS[BUCKETS.len() - 1];

/// What the outer layer keeps for itself around an inner message: the inner layer's OHTTP
/// overhead (7-byte header, 32-byte encapsulated key, 16-byte tag), the `Authorization` value
/// (a 322-byte token in base64), the node's path, the content type and Binary HTTP framing.
pub const OUTER_RESERVE: usize = 1 << 10;

/// Which layer a message travels in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layer {
    /// Device ↔ node.
    Inner,
    /// Device ↔ gateway.
    Outer,
}

impl Layer {
    /// What this layer's sizes keep below a bucket.
    pub fn reserve(self) -> usize {
        match self {
            Layer::Inner => OUTER_RESERVE,
            Layer::Outer => 0,
        }
    }

    /// The largest message that fits one bucket in this layer.
    pub fn largest(self) -> usize {
        LARGEST - self.reserve()
    }
}

/// Why a padded message could not be written or read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PaddingError {
    /// The message could not be encoded as Binary HTTP.
    #[error("Binary HTTP encoding: {0}")]
    Encode(String),
    /// The bytes are not a Binary HTTP message.
    #[error("Binary HTTP decoding: {0}")]
    Decode(String),
    /// Bytes after the message are not all zero (RFC 9292 §3.8).
    #[error("non-zero padding after the Binary HTTP message")]
    NonZeroPadding,
}

/// The padded size of a `len`-byte message in `layer`.
pub fn padded_len(len: usize, layer: Layer) -> usize {
    let reserve = layer.reserve();
    match BUCKETS.iter().find(|b| **b - reserve >= len) {
        Some(b) => b - reserve,
        None => (len + reserve).next_multiple_of(LARGEST) - reserve,
    }
}

/// Whether a `len`-byte message in `layer` fits the largest bucket.
pub fn fits_one_bucket(len: usize, layer: Layer) -> bool {
    len <= layer.largest()
}

/// `m` in known-length Binary HTTP, padded with zeros for `layer`. The plaintext is zeroized
/// when the returned buffer is dropped (no unzeroized copy is left by growing it).
pub fn write_padded(m: &Message, layer: Layer) -> Result<Zeroizing<Vec<u8>>, PaddingError> {
    let mut plain = Zeroizing::new(Vec::new());
    m.write_bhttp(Mode::KnownLength, &mut *plain)
        .map_err(|e| PaddingError::Encode(e.to_string()))?;
    let target = padded_len(plain.len(), layer);
    let mut out = Zeroizing::new(Vec::with_capacity(target));
    out.extend_from_slice(&plain);
    out.resize(target, 0);
    Ok(out)
}

/// The Binary HTTP message at the start of `plain`, after which only zeros may follow.
pub fn read_padded(plain: &[u8]) -> Result<Message, PaddingError> {
    let mut cursor = Cursor::new(plain);
    let m = Message::read_bhttp(&mut cursor).map_err(|e| PaddingError::Decode(e.to_string()))?;
    let end = usize::try_from(cursor.position()).unwrap_or(plain.len());
    if plain.get(end..).unwrap_or_default().iter().any(|b| *b != 0) {
        return Err(PaddingError::NonZeroPadding);
    }
    Ok(m)
}

#[cfg(test)]
mod tests;
