//! The HTTP plumbing both planes share, below either of them: the checks every request head
//! passes ([`head`]: header size, `Host`, transfer codings, repeated fields), the one way a
//! request body is read ([`head::read_body`]: size limit before `100 Continue`, content coding,
//! read timeout) and parsed ([`strict_json`]), and the limits they enforce.
//!
//! It knows neither plane's routes nor the issuer: the public plane ([`crate::http`]), the
//! admin plane ([`crate::admin`]) and the listeners ([`crate::server`]) use it, never the other
//! way round.

pub mod head;
pub mod strict_json;

pub use head::{check_header_size, MAX_HEADER_BYTES};

use bytes::Bytes;
use http_body_util::Full;
use std::task::{Context, Poll};

/// The bytes of a prebuilt body (a [`Full`] yields its one frame at once).
pub fn body_bytes(body: Full<Bytes>) -> Bytes {
    use hyper::body::Body as _;
    let mut body = std::pin::pin!(body);
    let waker = std::task::Waker::noop();
    match body.as_mut().poll_frame(&mut Context::from_waker(waker)) {
        Poll::Ready(Some(Ok(frame))) => frame.into_data().unwrap_or_default(),
        _ => Bytes::new(),
    }
}
