//! Request bodies read under a cap, a deadline and a minimum rate.
//!
//! A server that takes a slot for a request and then waits for its body hands a slow client
//! (or one that sends a byte a minute) that slot for as long as it likes: a few hundred such
//! clients lock everyone else out without spending a token. [`read_body_paced`] ends the read
//! when the whole body has not arrived by [`BodyPace::deadline`], or when, after
//! [`BodyPace::grace`], fewer than [`BodyPace::min_rate`] bytes a second have come on average;
//! servers read the body this way *before* they take a slot.

use std::time::Duration;

use bytes::{Buf as _, Bytes, BytesMut};
use http_body_util::BodyExt as _;
use tokio::time::Instant;

/// How fast a request body must arrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyPace {
    /// The whole body arrives within this time of the read's start.
    pub deadline: Duration,
    /// Time the rate is not checked (a slow start: a TLS handshake just ended, a phone woke).
    pub grace: Duration,
    /// Bytes a second, on average since the start, once the grace has passed.
    pub min_rate: u64,
}

impl Default for BodyPace {
    /// 10 s for the whole body; after the first 2 s, at least 4 KiB/s on average. A phone on
    /// a poor link still sends a 64 KiB request in 10 s; a client that trickles is gone in 2 s.
    fn default() -> Self {
        BodyPace {
            deadline: Duration::from_secs(10),
            grace: Duration::from_secs(2),
            min_rate: 4096,
        }
    }
}

/// Why a body was not read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// Larger than the cap.
    #[error("the body exceeds {0} bytes")]
    TooLarge(usize),
    /// Not all there by the deadline, or arriving slower than the minimum rate.
    #[error("the body arrived too slowly ({received} bytes in {elapsed_ms} ms)")]
    TooSlow {
        /// Bytes received before the read was ended.
        received: usize,
        /// Time spent.
        elapsed_ms: u64,
    },
    /// The connection failed or the body was cut short.
    #[error("the body was cut short")]
    Cut,
}

impl BodyError {
    /// The status and problem kind a server answers with.
    pub fn status_kind(&self) -> (u16, &'static str) {
        match self {
            BodyError::TooLarge(_) => (413, "too-large"),
            BodyError::TooSlow { .. } => (408, "body-too-slow"),
            BodyError::Cut => (400, "body-cut"),
        }
    }

    /// The problem document for this refusal.
    pub fn problem(&self) -> crate::Reply {
        let (status, kind) = self.status_kind();
        crate::problem(status, kind, &self.to_string())
    }
}

/// When the read must have received `received` bytes by, at the latest, under `pace`.
fn next_check(pace: &BodyPace, start: Instant, received: usize) -> Instant {
    let end = start + pace.deadline;
    if pace.min_rate == 0 {
        return end;
    }
    // The body is too slow at the first moment t > grace with received < min_rate * t, i.e.
    // at t = max(grace, received / min_rate) (plus a millisecond, so that an exact rate
    // passes).
    let due = Duration::from_millis((received as u64).saturating_mul(1000) / pace.min_rate)
        .max(pace.grace)
        + Duration::from_millis(1);
    (start + due).min(end)
}

/// Reads `body` whole, refusing it when it exceeds `max` bytes or arrives slower than `pace`.
pub async fn read_body_paced<B>(body: B, max: usize, pace: BodyPace) -> Result<Bytes, BodyError>
where
    B: hyper::body::Body + Unpin,
{
    let start = Instant::now();
    let mut body = body;
    let mut out = BytesMut::new();
    loop {
        let check = next_check(&pace, start, out.len());
        let frame = match tokio::time::timeout_at(check, body.frame()).await {
            Ok(Some(Ok(frame))) => frame,
            Ok(Some(Err(_))) => return Err(BodyError::Cut),
            Ok(None) => return Ok(out.freeze()),
            Err(_) => {
                // The check's moment came first: the body is late only if it still is.
                if Instant::now() >= start + pace.deadline
                    || next_check(&pace, start, out.len()) <= Instant::now()
                {
                    return Err(BodyError::TooSlow {
                        received: out.len(),
                        elapsed_ms: start.elapsed().as_millis() as u64,
                    });
                }
                continue;
            }
        };
        if let Ok(mut data) = frame.into_data() {
            if out.len() + data.remaining() > max {
                return Err(BodyError::TooLarge(max));
            }
            while data.has_remaining() {
                let chunk = data.chunk();
                let n = chunk.len();
                out.extend_from_slice(chunk);
                data.advance(n);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::Full;
    use hyper::body::Frame;

    fn pace() -> BodyPace {
        BodyPace {
            deadline: Duration::from_secs(4),
            grace: Duration::from_millis(500),
            min_rate: 1000,
        }
    }

    /// A body fed by a channel.
    struct Trickle(tokio::sync::mpsc::Receiver<Bytes>);

    impl hyper::body::Body for Trickle {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            self.0
                .poll_recv(cx)
                .map(|chunk| chunk.map(|c| Ok(Frame::data(c))))
        }
    }

    /// A body that sends `chunk` bytes every `every`, `count` times.
    fn trickle(chunk: usize, every: Duration, count: usize) -> Trickle {
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        tokio::spawn(async move {
            for _ in 0..count {
                tokio::time::sleep(every).await;
                if tx.send(Bytes::from(vec![b'x'; chunk])).await.is_err() {
                    return;
                }
            }
        });
        Trickle(rx)
    }

    #[tokio::test(start_paused = true)]
    async fn a_prompt_body_is_read_whole_and_a_large_one_refused() {
        let ok = read_body_paced(Full::new(Bytes::from_static(b"abc")), 3, pace()).await;
        assert_eq!(ok, Ok(Bytes::from_static(b"abc")));
        let big = read_body_paced(Full::new(Bytes::from_static(b"abcd")), 3, pace()).await;
        assert_eq!(big, Err(BodyError::TooLarge(3)));
        // 2,000 bytes a second for 3 s: above the minimum rate, inside the deadline.
        let steady = read_body_paced(
            trickle(200, Duration::from_millis(100), 30),
            1 << 20,
            pace(),
        );
        assert_eq!(steady.await.map(|b| b.len()), Ok(6000));
    }

    #[tokio::test(start_paused = true)]
    async fn a_trickle_is_ended_after_the_grace() {
        let started = Instant::now();
        // One byte every 100 ms: 10 B/s against a floor of 1,000.
        let r = read_body_paced(
            trickle(1, Duration::from_millis(100), 1000),
            1 << 20,
            pace(),
        )
        .await;
        assert!(matches!(r, Err(BodyError::TooSlow { .. })), "{r:?}");
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(500) && took < Duration::from_millis(700),
            "{took:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_body_and_a_fast_but_endless_one_meet_the_deadline() {
        let r = read_body_paced(trickle(1, Duration::from_secs(3600), 1), 1 << 20, pace()).await;
        assert!(
            matches!(r, Err(BodyError::TooSlow { received: 0, .. })),
            "{r:?}"
        );
        let started = Instant::now();
        // 10 kB/s forever (above the rate), never ending: the deadline ends it.
        let r = read_body_paced(
            trickle(100, Duration::from_millis(10), usize::MAX),
            1 << 30,
            pace(),
        );
        assert!(matches!(r.await, Err(BodyError::TooSlow { .. })));
        assert_eq!(started.elapsed().as_secs(), 4);
    }

    #[test]
    fn each_refusal_has_its_status() {
        assert_eq!(BodyError::TooLarge(1).status_kind().0, 413);
        assert_eq!(
            BodyError::TooSlow {
                received: 0,
                elapsed_ms: 0
            }
            .status_kind(),
            (408, "body-too-slow")
        );
    }
}
