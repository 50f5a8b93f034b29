//! The client's request body on its way to a backend, cut off past `--max-request-body`.
//!
//! A declared `Content-Length` over the limit is refused before anything runs (413). A body
//! without one (chunked) is counted as it streams; past the limit the stream ends in an error,
//! the backend call fails, and the client gets 413 as well ([`exceeded`] tells that failure
//! apart from a backend's).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

/// Why the client's body stream ended early.
#[derive(Debug, thiserror::Error)]
pub enum ClientBodyError {
    #[error("reading the client's body failed: {0}")]
    Client(#[source] hyper::Error),
    #[error("the request body is larger than {0} bytes, the most this gateway forwards")]
    TooLarge(u64),
}

/// The client's body, with how many more bytes it may carry.
#[derive(Debug)]
pub struct ClientBody {
    inner: Incoming,
    limit: u64,
    left: u64,
}

impl ClientBody {
    /// `limit` of `u64::MAX` means no limit.
    pub fn new(inner: Incoming, limit: u64) -> Self {
        Self {
            inner,
            limit,
            left: limit,
        }
    }
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = ClientBodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let frame = match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => frame,
            Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(ClientBodyError::Client(e)))),
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Pending => return Poll::Pending,
        };
        if let Some(data) = frame.data_ref() {
            let n = data.len() as u64;
            if n > self.left {
                self.left = 0;
                return Poll::Ready(Some(Err(ClientBodyError::TooLarge(self.limit))));
            }
            self.left -= n;
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Whether `error` (a failed backend call) came from a client body over the limit.
pub fn exceeded(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(e) = cause {
        if matches!(
            e.downcast_ref::<ClientBodyError>(),
            Some(ClientBodyError::TooLarge(_))
        ) {
            return true;
        }
        cause = e.source();
    }
    false
}
