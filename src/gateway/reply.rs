//! What the `/v1` handler answers with: an upstream's response body carried as it is (no box
//! per request on the hot path), or any other body (errors, streams that wait for a load),
//! boxed as axum's.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Frame, SizeHint};

use super::proxy::InFlightBody;
use crate::http_client::PooledBody;

/// The handler's answer.
pub type Reply = http::Response<ReplyBody>;

pub enum ReplyBody {
    /// A proxied upstream response, holding its request's in-flight count until it ends.
    Upstream(InFlightBody<PooledBody>),
    Other(axum::body::Body),
}

impl ReplyBody {
    /// As axum's body: boxed, unless it is one already.
    pub fn into_axum(self) -> axum::body::Body {
        match self {
            ReplyBody::Other(b) => b,
            upstream => axum::body::Body::new(upstream),
        }
    }
}

/// axum's response as a [`Reply`].
pub fn of(resp: axum::response::Response) -> Reply {
    resp.map(ReplyBody::Other)
}

impl hyper::body::Body for ReplyBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        match self.get_mut() {
            ReplyBody::Upstream(b) => Pin::new(b).poll_frame(cx).map_err(axum::Error::new),
            ReplyBody::Other(b) => Pin::new(b).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ReplyBody::Upstream(b) => b.is_end_stream(),
            ReplyBody::Other(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ReplyBody::Upstream(b) => b.size_hint(),
            ReplyBody::Other(b) => b.size_hint(),
        }
    }
}
