//! A request body read up to a limit. A body over it is still read to its end and thrown away
//! (up to a bound), so that the client, still writing, gets its answer and keeps its connection.

use http_body_util::BodyExt;
use hyper::body::{Body, Bytes};

/// A request body as read.
pub(super) enum ReadBody {
    /// The whole body, within the limit.
    Complete(Bytes),
    /// Over the limit; `drained` when it was read to its end (else the connection must close).
    TooLarge { drained: bool },
}

/// Reads `body`, keeping at most `limit` bytes and throwing away at most `drain` more.
pub(super) async fn read_limited<B>(mut body: B, limit: usize, drain: usize) -> Result<ReadBody, B::Error>
where
    B: Body<Data = Bytes> + Unpin,
{
    let declared = body.size_hint().exact().and_then(|length| usize::try_from(length).ok());
    let mut over = declared.is_some_and(|length| length > limit);
    let mut kept: Vec<u8> = Vec::new();
    let mut seen: usize = 0;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame?.into_data() else {
            continue;
        };
        seen = seen.saturating_add(data.len());
        if over || seen > limit {
            if !over {
                over = true;
                kept = Vec::new();
            }
            if seen > limit.saturating_add(drain) {
                return Ok(ReadBody::TooLarge { drained: false });
            }
        } else {
            kept.extend_from_slice(&data);
        }
    }
    Ok(if over {
        ReadBody::TooLarge { drained: true }
    } else {
        ReadBody::Complete(kept.into())
    })
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::convert::Infallible;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use http_body_util::Full;
    use hyper::body::{Body, Bytes, Frame};

    use super::{read_limited, ReadBody};

    /// A body of chunks without a declared length, as `Transfer-Encoding: chunked` sends.
    struct Chunks(VecDeque<Bytes>);

    fn chunked(chunks: &[&'static [u8]]) -> Chunks {
        Chunks(chunks.iter().map(|chunk| Bytes::from_static(chunk)).collect())
    }

    impl Body for Chunks {
        type Data = Bytes;
        type Error = Infallible;

        fn poll_frame(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
            Poll::Ready(self.0.pop_front().map(|chunk| Ok(Frame::data(chunk))))
        }
    }

    fn run<T>(future: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(future)
    }

    #[test]
    fn a_body_within_the_limit_is_kept_whole() {
        let read = run(read_limited(chunked(&[b"ab", b"cd"]), 4, 0)).unwrap();
        assert!(matches!(read, ReadBody::Complete(bytes) if bytes == Bytes::from_static(b"abcd")));
    }

    #[test]
    fn a_body_over_the_limit_is_drained_up_to_a_bound() {
        let read = run(read_limited(chunked(&[b"ab", b"cd", b"e"]), 4, 1)).unwrap();
        assert!(matches!(read, ReadBody::TooLarge { drained: true }));
        let read = run(read_limited(chunked(&[b"ab", b"cd", b"ef"]), 4, 1)).unwrap();
        assert!(matches!(read, ReadBody::TooLarge { drained: false }));
    }

    #[test]
    fn a_declared_length_over_the_limit_keeps_nothing() {
        let read = run(read_limited(Full::new(Bytes::from_static(b"abcde")), 4, 10)).unwrap();
        assert!(matches!(read, ReadBody::TooLarge { drained: true }));
    }
}
