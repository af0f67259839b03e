//! A small client of the admin API for the command line (`statusd credentials …`,
//! `statusd lists …`): JSON over HTTP/1.1 (or HTTPS, with a private CA and a client certificate
//! for mutual TLS) with a bearer token, problem+json surfaced as errors.

use anyhow::{bail, Context as _};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use serde_json::Value as Json;
use std::time::Duration;

/// Where the admin API is and how to authenticate.
pub struct Client {
    base: String,
    token: Option<String>,
    /// Trust and identity for an https:// admin listener.
    tls: crate::tls::ClientTls,
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
        }
    }

    /// Reaches an https:// admin listener with `tls` (a private CA, a client certificate).
    pub fn with_tls(mut self, tls: crate::tls::ClientTls) -> Self {
        self.tls = tls;
        self
    }

    /// Sends one request; returns the JSON body of a 2xx answer, or fails with the problem's
    /// status, title and detail.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Json>,
    ) -> anyhow::Result<Json> {
        let url = format!("{}{path}", self.base);
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            bail!("{url}: the admin API is reached over http:// or https://");
        }
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http::<Full<Bytes>>();
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(&url)
            .header(hyper::header::ACCEPT, "application/json");
        if let Some(t) = &self.token {
            req = req.header(hyper::header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let body = match body {
            Some(b) => {
                req = req.header(hyper::header::CONTENT_TYPE, "application/json");
                Full::new(Bytes::from(serde_json::to_vec(b)?))
            }
            None => Full::new(Bytes::new()),
        };
        let req = req
            .body(body)
            .with_context(|| format!("{url} is not a valid URL"))?;
        let sent = async {
            if url.starts_with("https://") {
                self.tls.send(req).await.map_err(anyhow::Error::from)
            } else {
                client.request(req).await.map_err(anyhow::Error::from)
            }
        };
        let resp = tokio::time::timeout(Duration::from_secs(60), sent)
            .await
            .with_context(|| format!("{method} {url}: timed out"))?
            .with_context(|| {
                format!(
                    "{method} {url}: no answer; is `statusd serve` running with its admin \
                     listener there? (set --admin-url or STATUSD_ADMIN_URL)"
                )
            })?;
        let status = resp.status();
        let bytes = Limited::new(resp.into_body(), 64 << 20)
            .collect()
            .await
            .map_err(|e| anyhow::anyhow!("reading the answer of {url}: {e}"))?
            .to_bytes();
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
                msg.push_str(match self.token {
                    None => {
                        "\n  no admin token was given: pass --token-file FILE (with `serve \
                         --demo`: statusd-data/demo-admin-tokens) or set STATUSD_ADMIN_TOKEN"
                    }
                    Some(_) => {
                        "\n  the server refused the admin token: use one from the file its \
                         STATUSD_ADMIN_TOKENS names (with `serve --demo`: \
                         statusd-data/demo-admin-tokens)"
                    }
                });
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
