//! Bodies between the client and the upstream, streamed both ways with bounded memory.
//!
//! An upload is checked as it passes (length, `Content-MD5`, the client's `x-amz-checksum-*`)
//! and its last chunk is held back until the whole body has been checked: a body that fails a
//! check never reaches the upstream whole, so the upstream, which waits for `Content-Length`
//! bytes, stores nothing.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::Stream;
use http_body::Body as _;
use hyper::body::Incoming;
use keyless_s3::store::{BodyVerifier, ByteStream, StoreError};
use md5::{Digest as _, Md5};

/// What a checked upload saw: why it failed (for the store to answer instead of the
/// transport's error) and how long it was.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    failure: Mutex<Option<StoreError>>,
    length: AtomicU64,
    /// Told once the body has been checked whole, or has failed.
    pub(crate) sent: Arc<tokio::sync::Notify>,
}

impl Outcome {
    /// Why the body failed, once.
    pub(crate) fn failure(&self) -> Option<StoreError> {
        self.failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }

    /// The bytes the client sent.
    pub(crate) fn length(&self) -> u64 {
        self.length.load(Ordering::Relaxed)
    }
}

/// [`Outcome`], shared by the stream and the store.
pub(crate) type Failure = Arc<Outcome>;

/// An upload body, checked as it streams.
pub(crate) struct Checked {
    inner: ByteStream,
    held: Option<Bytes>,
    /// Only when the client sent a `Content-MD5` (the upstream computes the ETag itself).
    md5: Option<Md5>,
    length: u64,
    expected_length: Option<u64>,
    content_md5: Option<[u8; 16]>,
    verifier: Option<Box<dyn BodyVerifier>>,
    failure: Failure,
    finished: bool,
}

impl Checked {
    pub(crate) fn new(
        inner: ByteStream,
        expected_length: Option<u64>,
        content_md5: Option<[u8; 16]>,
        verifier: Option<Box<dyn BodyVerifier>>,
    ) -> (Self, Failure) {
        let failure = Failure::default();
        let checked = Self {
            inner,
            held: None,
            md5: content_md5.map(|_| Md5::new()),
            length: 0,
            expected_length,
            content_md5,
            verifier,
            failure: Arc::clone(&failure),
            finished: false,
        };
        (checked, failure)
    }

    /// Records why the body failed and ends it with an error.
    fn fail(&mut self, why: StoreError) -> Poll<Option<io::Result<Bytes>>> {
        let text = why.to_string();
        *self
            .failure
            .failure
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(why);
        self.failure.sent.notify_one();
        self.finished = true;
        self.held = None;
        Poll::Ready(Some(Err(io::Error::other(text))))
    }

    /// The checks once the client's body has ended.
    fn finish(&mut self) -> Result<(), StoreError> {
        self.failure.length.store(self.length, Ordering::Relaxed);
        if let Some(expected) = self.expected_length
            && expected != self.length
        {
            return Err(StoreError::IncompleteBody {
                expected,
                got: self.length,
            });
        }
        if let (Some(want), Some(md5)) = (self.content_md5, self.md5.take()) {
            let digest: [u8; 16] = md5.finalize().into();
            if want != digest {
                return Err(StoreError::BadDigest);
            }
        }
        if let Some(verifier) = self.verifier.take() {
            verifier.verify()?;
        }
        Ok(())
    }
}

impl Stream for Checked {
    type Item = io::Result<Bytes>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.finished {
            return Poll::Ready(this.held.take().map(Ok));
        }
        loop {
            match this.inner.as_mut().poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Err(e))) => return this.fail(StoreError::Body(e)),
                Poll::Ready(Some(Ok(chunk))) => {
                    this.length += chunk.len() as u64;
                    if let Some(expected) = this.expected_length
                        && this.length > expected
                    {
                        let got = this.length;
                        return this.fail(StoreError::IncompleteBody { expected, got });
                    }
                    if let Some(md5) = this.md5.as_mut() {
                        md5.update(&chunk);
                    }
                    if let Some(verifier) = this.verifier.as_mut() {
                        verifier.update(&chunk);
                    }
                    if chunk.is_empty() {
                        continue;
                    }
                    if let Some(previous) = this.held.replace(chunk) {
                        return Poll::Ready(Some(Ok(previous)));
                    }
                }
                Poll::Ready(None) => {
                    return match this.finish() {
                        Ok(()) => {
                            this.finished = true;
                            this.failure.sent.notify_one();
                            Poll::Ready(this.held.take().map(Ok))
                        }
                        Err(why) => this.fail(why),
                    };
                }
            }
        }
    }
}

/// An upstream's answer body as object data. The lock is never contended (only the stream's
/// owner polls it); it makes the body `Sync`, as [`ByteStream`] asks.
pub(crate) struct Download(Mutex<Incoming>);

impl Download {
    pub(crate) fn stream(body: Incoming) -> ByteStream {
        Box::pin(Self(Mutex::new(body)))
    }
}

impl Stream for Download {
    type Item = io::Result<Bytes>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let body = self
            .get_mut()
            .0
            .get_mut()
            .unwrap_or_else(|e| e.into_inner());
        loop {
            return match Pin::new(&mut *body).poll_frame(cx) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(None) => Poll::Ready(None),
                Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(io::Error::other(e)))),
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => Poll::Ready(Some(Ok(data))),
                    Err(_trailers) => continue,
                },
            };
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use futures_util::StreamExt as _;

    fn stream(parts: &[&'static [u8]]) -> ByteStream {
        let chunks: Vec<io::Result<Bytes>> =
            parts.iter().map(|p| Ok(Bytes::from_static(p))).collect();
        Box::pin(futures_util::stream::iter(chunks))
    }

    async fn drain(checked: Checked) -> (Vec<u8>, bool) {
        let mut out = Vec::new();
        let mut failed = false;
        let mut checked = Box::pin(checked);
        while let Some(item) = checked.next().await {
            match item {
                Ok(chunk) => out.extend_from_slice(&chunk),
                Err(_) => failed = true,
            }
        }
        (out, failed)
    }

    #[tokio::test]
    async fn a_good_body_passes_whole() {
        let md5: [u8; 16] = Md5::digest(b"hello world").into();
        let (checked, failure) = Checked::new(
            stream(&[b"hello", b" ", b"world"]),
            Some(11),
            Some(md5),
            None,
        );
        assert_eq!(drain(checked).await, (b"hello world".to_vec(), false));
        assert!(failure.failure().is_none());
        assert_eq!(failure.length(), 11);
    }

    #[tokio::test]
    async fn a_bad_digest_holds_back_the_last_chunk() {
        let (checked, failure) = Checked::new(
            stream(&[b"hello", b" ", b"world"]),
            Some(11),
            Some([0; 16]),
            None,
        );
        let (passed, failed) = drain(checked).await;
        assert!(failed);
        assert_eq!(passed, b"hello ", "the last chunk never left");
        assert!(matches!(failure.failure(), Some(StoreError::BadDigest)));
    }

    #[tokio::test]
    async fn short_and_long_bodies_are_refused() {
        let (checked, failure) = Checked::new(stream(&[b"abc"]), Some(4), None, None);
        let (passed, failed) = drain(checked).await;
        assert!(failed && passed.is_empty());
        assert!(matches!(
            failure.failure(),
            Some(StoreError::IncompleteBody {
                expected: 4,
                got: 3
            })
        ));
        let (checked, failure) = Checked::new(stream(&[b"ab", b"cd"]), Some(3), None, None);
        let (passed, failed) = drain(checked).await;
        assert!(failed && passed.is_empty(), "the held chunk is dropped too");
        assert!(matches!(
            failure.failure(),
            Some(StoreError::IncompleteBody {
                expected: 3,
                got: 4
            })
        ));
    }

    struct Refuse;
    impl BodyVerifier for Refuse {
        fn update(&mut self, _: &[u8]) {}
        fn verify(self: Box<Self>) -> Result<(), StoreError> {
            Err(StoreError::ChecksumMismatch("CRC32"))
        }
    }

    #[tokio::test]
    async fn a_failed_checksum_ends_the_body_with_its_error() {
        let (checked, failure) =
            Checked::new(stream(&[b"x"]), Some(1), None, Some(Box::new(Refuse)));
        let (passed, failed) = drain(checked).await;
        assert!(failed && passed.is_empty());
        assert!(matches!(
            failure.failure(),
            Some(StoreError::ChecksumMismatch("CRC32"))
        ));
    }
}
