//! A small client of the admin API for the command line (`statusd credentials …`,
//! `statusd lists …`): JSON over HTTP/1.1 (or HTTPS, with a private CA and a client certificate
//! for mutual TLS) with a bearer token, problem+json surfaced as errors.

use anyhow::bail;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use serde_json::Value as Json;
use std::time::Duration;

/// How long one request may take, answer included (a batch of 10,000 items takes well under
/// a second on a healthy store).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Where the admin API is and how to authenticate.
pub struct Client {
    base: String,
    token: Option<String>,
    /// Trust and identity for an https:// admin listener.
    tls: crate::tls::ClientTls,
    /// Plain http:// requests, keeping connections alive between the requests of one command.
    http: hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        Full<Bytes>,
    >,
}

/// An answer of any status.
pub struct Answer {
    pub status: hyper::StatusCode,
    /// `Retry-After` in seconds, when the answer has one.
    pub retry_after: Option<Duration>,
    pub body: Bytes,
}

/// Why no answer came.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// Connection refused or reset, a timeout, a TLS connection cut: worth retrying.
    #[error("{0:#}")]
    Transport(anyhow::Error),
    /// A bad URL, unreadable TLS files, a certificate the CA does not vouch for: a retry would
    /// fail the same way.
    #[error("{0:#}")]
    Fatal(anyhow::Error),
}

impl SendError {
    fn context(self, c: String) -> Self {
        match self {
            SendError::Transport(e) => SendError::Transport(e.context(c)),
            SendError::Fatal(e) => SendError::Fatal(e.context(c)),
        }
    }
}

/// Escapes a path segment (credential ids may hold `/`, `%`, `?`, `#`).
pub fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~:@".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Client {
    pub fn new(base: &str, token: Option<String>) -> Self {
        Client {
            base: base.trim_end_matches('/').to_owned(),
            token,
            tls: crate::tls::ClientTls::default(),
            http: hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http(),
        }
    }

    /// Reaches an https:// admin listener with `tls` (a private CA, a client certificate).
    pub fn with_tls(mut self, tls: crate::tls::ClientTls) -> Self {
        self.tls = tls;
        self
    }

    /// Sends one request and returns the answer whatever its status; fails only when no
    /// answer came (see [`SendError`]). `body` is JSON, sent as is.
    pub async fn exchange(
        &self,
        method: &str,
        path: &str,
        body: Option<Bytes>,
    ) -> Result<Answer, SendError> {
        self.exchange_with(method, path, body, None).await
    }

    /// [`Self::exchange`] with a `Prefer` field (RFC 7240), e.g. `return=minimal`.
    pub async fn exchange_with(
        &self,
        method: &str,
        path: &str,
        body: Option<Bytes>,
        prefer: Option<&'static str>,
    ) -> Result<Answer, SendError> {
        let url = format!("{}{path}", self.base);
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(SendError::Fatal(anyhow::anyhow!(
                "{url}: the admin API is reached over http:// or https://"
            )));
        }
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(&url)
            .header(hyper::header::ACCEPT, "application/json");
        if let Some(p) = prefer {
            req = req.header("prefer", p);
        }
        if let Some(t) = &self.token {
            req = req.header(hyper::header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let body = match body {
            Some(b) => {
                req = req.header(hyper::header::CONTENT_TYPE, "application/json");
                Full::new(b)
            }
            None => Full::new(Bytes::new()),
        };
        let req = req.body(body).map_err(|e| {
            SendError::Fatal(anyhow::Error::new(e).context(format!("{url} is not a valid URL")))
        })?;
        let answer = async {
            let resp = if url.starts_with("https://") {
                self.tls.send(req).await.map_err(|e| match e {
                    // Unreadable CA or client files, a bad URL, a certificate the CA does not
                    // vouch for: no retry mends them.
                    crate::tls::ClientError::Files(_) | crate::tls::ClientError::Url(_) => {
                        SendError::Fatal(e.into())
                    }
                    crate::tls::ClientError::Handshake { ref source, .. }
                        if source.kind() == std::io::ErrorKind::InvalidData =>
                    {
                        SendError::Fatal(e.into())
                    }
                    e => SendError::Transport(e.into()),
                })?
            } else {
                self.http
                    .request(req)
                    .await
                    .map_err(|e| SendError::Transport(e.into()))?
            };
            let status = resp.status();
            let retry_after = resp
                .headers()
                .get(hyper::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            let bytes = Limited::new(resp.into_body(), 64 << 20)
                .collect()
                .await
                .map_err(|e| SendError::Transport(anyhow::anyhow!("reading the answer: {e}")))?
                .to_bytes();
            Ok(Answer {
                status,
                retry_after,
                body: bytes,
            })
        };
        tokio::time::timeout(REQUEST_TIMEOUT, answer)
            .await
            .map_err(|_| {
                SendError::Transport(anyhow::anyhow!(
                    "no complete answer within {} s",
                    REQUEST_TIMEOUT.as_secs()
                ))
            })?
            .map_err(|e: SendError| e.context(format!("{method} {url}")))
    }

    /// What to do about a 401: give a token, or a token the server knows.
    pub fn unauthorized_hint(&self) -> &'static str {
        match self.token {
            None => {
                "no admin token was given: pass --token-file FILE (with `serve --demo`: \
                 statusd-data/demo-admin-tokens) or set STATUSD_ADMIN_TOKEN"
            }
            Some(_) => {
                "the server refused the admin token: use one from the file its \
                 STATUSD_ADMIN_TOKENS names (with `serve --demo`: statusd-data/demo-admin-tokens)"
            }
        }
    }

    /// Sends one request; returns the JSON body of a 2xx answer, or fails with the problem's
    /// status, title and detail.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Json>,
    ) -> anyhow::Result<Json> {
        let body = body.map(serde_json::to_vec).transpose()?.map(Bytes::from);
        let answer =
            match self.exchange(method, path, body).await {
                Ok(a) => a,
                Err(SendError::Fatal(e)) => return Err(e),
                Err(SendError::Transport(e)) => return Err(e.context(
                    "no answer; is `statusd serve` running with its admin listener there? (set \
                     --admin-url or STATUSD_ADMIN_URL)",
                )),
            };
        let (status, bytes) = (answer.status, answer.body);
        let json: Json = serde_json::from_slice(&bytes).unwrap_or_else(|_| {
            Json::String(String::from_utf8_lossy(&bytes[..bytes.len().min(500)]).into_owned())
        });
        if !status.is_success() {
            let detail = json
                .get("detail")
                .and_then(Json::as_str)
                .unwrap_or("")
                .to_owned();
            let title = json.get("title").and_then(Json::as_str).unwrap_or("");
            let mut msg = format!(
                "{method} {path}: HTTP {}: {title}: {detail}",
                status.as_u16()
            );
            if status == hyper::StatusCode::UNAUTHORIZED {
                msg.push_str("\n  ");
                msg.push_str(self.unauthorized_hint());
            }
            if let Some(errors) = json.get("errors").and_then(Json::as_array) {
                for e in errors.iter().take(20) {
                    msg.push_str(&format!(
                        "\n  item {}: {}",
                        e.get("index").unwrap_or(&Json::Null),
                        e.get("detail").and_then(Json::as_str).unwrap_or("")
                    ));
                }
            }
            bail!(msg);
        }
        Ok(json)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_escape_what_paths_reserve() {
        assert_eq!(segment("urn:uuid:1-2"), "urn:uuid:1-2");
        assert_eq!(segment("a/b?c#d%e f"), "a%2Fb%3Fc%23d%25e%20f");
    }
}
