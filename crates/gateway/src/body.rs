//! The bodies the gateway sends: an instance's response streamed through, or an answer the
//! gateway wrote itself.
//!
//! Owns [`ProxyBody`]. An instance's body carries the request's in-flight guard until its last
//! byte has been passed on, so `least_request` counts a request as in flight for as long as the
//! instance is actually busy with it, not only until its headers arrive. An enum rather than a
//! boxed body: no allocation per response on the hot path.

use crate::upstream::LeanBody;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use std::pin::Pin;
use std::task::{Context, Poll};
use wayfinder_balance::InFlight;

/// A response body from the gateway.
#[derive(Debug)]
pub enum ProxyBody {
    /// An instance's response, streamed.
    Upstream {
        /// The instance's body.
        body: Incoming,
        /// Counts the request in flight until the body ends or is dropped.
        in_flight: Option<InFlight>,
    },
    /// An instance's response through the lean client ([`crate::upstream`]).
    Lean {
        /// The instance's body.
        body: LeanBody,
        /// Counts the request in flight until the body ends or is dropped.
        in_flight: Option<InFlight>,
    },
    /// An answer the gateway made (errors), or a buffered one.
    Full(Full<Bytes>),
}

/// Why a body could not be passed on.
pub type BodyError = Box<dyn std::error::Error + Send + Sync>;

impl ProxyBody {
    /// A complete body.
    pub fn full(bytes: impl Into<Bytes>) -> Self {
        ProxyBody::Full(Full::new(bytes.into()))
    }

    /// No body.
    pub fn empty() -> Self {
        ProxyBody::Full(Full::new(Bytes::new()))
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match self.get_mut() {
            ProxyBody::Upstream { body, in_flight } => {
                let polled = Pin::new(body).poll_frame(cx);
                if matches!(polled, Poll::Ready(None | Some(Err(_)))) {
                    in_flight.take();
                }
                polled.map_err(Into::into)
            }
            ProxyBody::Lean { body, in_flight } => {
                let polled = Pin::new(body).poll_frame(cx);
                if matches!(polled, Poll::Ready(None | Some(Err(_)))) {
                    in_flight.take();
                }
                polled.map_err(Into::into)
            }
            ProxyBody::Full(full) => Pin::new(full)
                .poll_frame(cx)
                .map_err(|never| match never {}),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Upstream { body, .. } => body.is_end_stream(),
            ProxyBody::Lean { body, .. } => body.is_end_stream(),
            ProxyBody::Full(full) => full.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Upstream { body, .. } => body.size_hint(),
            ProxyBody::Lean { body, .. } => body.size_hint(),
            ProxyBody::Full(full) => full.size_hint(),
        }
    }
}
