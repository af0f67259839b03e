//! One GET for the verifier: `Accept`, an optional `If-None-Match`, redirects followed with a
//! loop guard (RFC 9110 §15.4, draft §11), a time limit and a size limit.
//!
//! https goes through [`crate::tls::ClientTls`] (system roots, or `--ca`), the same client
//! `statusd inspect` uses. Owns HTTP only; what the body means is the verifier's business.

use crate::tls::ClientTls;
use http_body_util::{BodyExt as _, Empty, Limited};
use hyper::header;
use std::time::Duration;

/// Most redirects followed before giving up.
pub const MAX_REDIRECTS: usize = 5;
/// Largest body accepted: twice the largest list statusd decodes.
pub const MAX_BODY: usize = 256 << 20;

/// Why a fetch failed.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum FetchError {
    #[error("{url}: {reason}")]
    Transport { url: String, reason: String },
    #[error("{url}: no complete answer within {secs} s")]
    Timeout { url: String, secs: u64 },
    #[error("{url}: more than {MAX_REDIRECTS} redirects (or a redirect loop)")]
    Redirects { url: String },
    #[error("{url}: HTTP {status}: {body}")]
    Status {
        url: String,
        status: u16,
        body: String,
    },
}

/// A 200 or a 304 ([`get`]), or any final answer ([`get_any`]).
#[derive(Clone, Debug)]
pub struct Answer {
    /// The final status (after redirects).
    pub status: u16,
    pub not_modified: bool,
    pub etag: Option<String>,
    pub cache_control: Option<String>,
    pub content_type: Option<String>,
    /// `Statusd-List-Version`: the list version the answer encodes (statusd's extension, for
    /// signed deltas), when the server says.
    pub list_version: Option<u64>,
    /// Bytes of the final answer as HTTP/1.1 frames it: status line, header fields and body
    /// (what a verifier's bandwidth is measured in).
    pub wire_bytes: usize,
    pub body: Vec<u8>,
}

/// GETs `url`, following redirects; `tls` authenticates https servers.
pub async fn get(
    url: &str,
    accept: &str,
    if_none_match: Option<&str>,
    timeout: Duration,
    tls: &ClientTls,
) -> Result<Answer, FetchError> {
    let a = get_any(url, accept, if_none_match, timeout, tls).await?;
    if a.not_modified || (200..300).contains(&a.status) {
        return Ok(a);
    }
    Err(FetchError::Status {
        url: url.to_owned(),
        status: a.status,
        body: String::from_utf8_lossy(&a.body[..a.body.len().min(300)]).into_owned(),
    })
}

/// [`get`], with any final status as an answer rather than an error.
pub async fn get_any(
    url: &str,
    accept: &str,
    if_none_match: Option<&str>,
    timeout: Duration,
    tls: &ClientTls,
) -> Result<Answer, FetchError> {
    tokio::time::timeout(timeout, get_inner(url, accept, if_none_match, tls))
        .await
        .map_err(|_| FetchError::Timeout {
            url: url.to_owned(),
            secs: timeout.as_secs(),
        })?
}

async fn get_inner(
    url: &str,
    accept: &str,
    if_none_match: Option<&str>,
    tls: &ClientTls,
) -> Result<Answer, FetchError> {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Empty<bytes::Bytes>>();
    let mut current = url.to_owned();
    let mut seen = vec![current.clone()];
    loop {
        let transport = |reason: String| FetchError::Transport {
            url: current.clone(),
            reason,
        };
        let mut req = hyper::Request::get(current.as_str()).header(header::ACCEPT, accept);
        if let Some(inm) = if_none_match {
            req = req.header(header::IF_NONE_MATCH, inm);
        }
        let req = req
            .body(Empty::new())
            .map_err(|e| transport(format!("not a valid URL: {e}")))?;
        let resp = if current.starts_with("https://") {
            tls.send(req)
                .await
                .map_err(|e| transport(error_chain(&e)))?
        } else {
            client
                .request(req)
                .await
                .map_err(|e| transport(error_chain(&e)))?
        };
        let status = resp.status();
        let text = |name: header::HeaderName| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        if status.is_redirection() && status != hyper::StatusCode::NOT_MODIFIED {
            let location = text(header::LOCATION)
                .ok_or_else(|| transport(format!("HTTP {status} without Location")))?;
            let next = resolve(&current, &location);
            if seen.contains(&next) || seen.len() > MAX_REDIRECTS {
                return Err(FetchError::Redirects {
                    url: url.to_owned(),
                });
            }
            seen.push(next.clone());
            current = next;
            continue;
        }
        let (etag, cache_control, content_type) = (
            text(header::ETAG),
            text(header::CACHE_CONTROL),
            text(header::CONTENT_TYPE),
        );
        let list_version = text(header::HeaderName::from_static(
            crate::routes::LIST_VERSION_HEADER,
        ))
        .and_then(|v| v.parse().ok());
        let head_bytes = head_bytes(status, resp.headers());
        let body = Limited::new(resp.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|e| transport(format!("reading the body: {e}")))?
            .to_bytes()
            .to_vec();
        return Ok(Answer {
            status: status.as_u16(),
            not_modified: status == hyper::StatusCode::NOT_MODIFIED,
            etag,
            cache_control,
            content_type,
            list_version,
            wire_bytes: head_bytes + body.len(),
            body,
        });
    }
}

/// `location` resolved against `base` (absolute URLs, absolute paths).
fn resolve(base: &str, location: &str) -> String {
    if location.contains("://") {
        return location.to_owned();
    }
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let origin_end = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    if location.starts_with('/') {
        format!("{}{location}", &base[..origin_end])
    } else {
        let dir_end = base
            .rfind('/')
            .filter(|&i| i >= origin_end)
            .unwrap_or(origin_end);
        format!("{}/{location}", &base[..dir_end])
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

/// The origin (`scheme://authority`) of `url`.
pub fn origin(url: &str) -> &str {
    let scheme_end = url.find("://").map_or(0, |i| i + 3);
    url[scheme_end..]
        .find(['/', '?', '#'])
        .map_or(url, |i| &url[..scheme_end + i])
}

/// Bytes of an HTTP/1.1 response head as sent: status line, each field with its `: ` and CRLF,
/// and the blank line (what a verifier pays per answer besides the body).
pub fn head_bytes(status: hyper::StatusCode, headers: &hyper::HeaderMap) -> usize {
    "HTTP/1.1 200 OK\r\n\r\n".len()
        + status
            .canonical_reason()
            .map_or(0, |r| r.len().saturating_sub(2))
        + headers
            .iter()
            .map(|(n, v)| n.as_str().len() + v.len() + 4)
            .sum::<usize>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirects_resolve() {
        assert_eq!(resolve("http://a:1/x/y", "/z"), "http://a:1/z");
        assert_eq!(resolve("http://a:1/x/y", "z"), "http://a:1/x/z");
        assert_eq!(resolve("http://a:1/x", "http://b/c"), "http://b/c");
        assert_eq!(origin("http://a:1/x/y?q"), "http://a:1");
        assert_eq!(origin("https://a"), "https://a");
    }
}
