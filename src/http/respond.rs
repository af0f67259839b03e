//! Responses of the public plane: the prebuilt representation with its caching headers, gzip
//! when accepted, and 304 when revalidated (the `If-None-Match` logic is written once, in
//! [`conditional`]); lookup answers written without a JSON tree; CORS and preflights.
//! Everything here is refcount bumps of prebuilt `Bytes` and `HeaderValue`s, and one header
//! map sized per route.

use super::{negotiate, Inner, Resp};
use crate::metrics::Route;
use crate::snapshot::{ListSnapshot, Representation};
use crate::status::Status;
use crate::wire::head::Fields;
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Response, StatusCode};

static SURROGATE_KEY: HeaderName = HeaderName::from_static("surrogate-key");
static CACHE_TAG: HeaderName = HeaderName::from_static("cache-tag");
const VARY_LIST: HeaderValue = HeaderValue::from_static("Accept, Accept-Encoding");
const VARY_ACCEPT: HeaderValue = HeaderValue::from_static("Accept");
const ANY_ORIGIN: HeaderValue = HeaderValue::from_static("*");
const EXPOSE: HeaderValue =
    HeaderValue::from_static("ETag, Last-Modified, Cache-Control, Statusd-List-Version");
static LIST_VERSION: HeaderName = HeaderName::from_static(crate::routes::LIST_VERSION_HEADER);
const GZIP: HeaderValue = HeaderValue::from_static("gzip");
pub(super) const JSON: HeaderValue = HeaderValue::from_static(crate::routes::JSON);
pub(super) const NO_STORE: HeaderValue = HeaderValue::from_static("no-store");

/// Appends `n` in decimal without allocating beyond `out`.
fn push_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

/// One lookup result as JSON: `{"list_id":…,"idx":…,"status":…,"value":…}`.
pub(super) fn push_lookup(out: &mut Vec<u8>, id: &str, idx: u64, status: Status) {
    out.extend_from_slice(b"{\"list_id\":\"");
    out.extend_from_slice(id.as_bytes()); // ids are [A-Za-z0-9_-]: nothing to escape
    out.extend_from_slice(b"\",\"idx\":");
    push_u64(out, idx);
    out.extend_from_slice(b",\"status\":\"");
    out.extend_from_slice(status.name().as_bytes());
    out.extend_from_slice(b"\",\"value\":");
    push_u64(out, status.0.into());
    out.push(b'}');
}

/// A 200 response with room for `headers` header fields, so inserting them never reallocates.
/// Sized per route: a map for 16 fields is a 2.7 KB allocation, past the allocator's per-thread
/// cache, where a lookup's 4 fields fit in 700 bytes.
pub(super) fn response(body: Bytes, headers: usize) -> Resp {
    let mut r = Response::new(Full::new(body));
    *r.headers_mut() = HeaderMap::with_capacity(headers);
    r
}

/// Exact length of [`push_lookup`]'s output, so the body is allocated once at its final size
/// (a `Vec` whose length equals its capacity becomes `Bytes` without another allocation).
fn lookup_len(id: &str, idx: u64, status: Status) -> usize {
    let digits = |n: u64| n.checked_ilog10().map_or(1, |l| l as usize + 1);
    r#"{"list_id":"","idx":,"status":"","value":}"#.len()
        + id.len()
        + digits(idx)
        + status.name().len()
        + digits(status.0.into())
}

pub(super) fn cors(h: &mut HeaderMap) {
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, ANY_ORIGIN);
    h.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, EXPOSE);
}

/// The start of every answer a cache may revalidate: 304 when `If-None-Match` matches `etag`
/// (weak comparison, RFC 9110 §13.1.2), with room for `room[0]` header fields; otherwise 200
/// with `body()` (built only then) and room for `room[1]`. The `ETag` is set; the caller adds
/// the rest, by whether the answer is a 304 (the flag returned).
fn conditional(
    fields: Fields<'_>,
    etag: &HeaderValue,
    room: [usize; 2],
    body: impl FnOnce() -> Bytes,
) -> (Resp, bool) {
    let not_modified = fields
        .if_none_match()
        .as_deref()
        .is_some_and(|inm| negotiate::none_match(inm, etag.as_bytes()));
    let mut r = if not_modified {
        let mut r = response(Bytes::new(), room[0]);
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        r
    } else {
        response(body(), room[1])
    };
    r.headers_mut().insert(header::ETAG, etag.clone());
    (r, not_modified)
}

impl Inner {
    /// One lookup's answer; its ETag is the status value (the URL fixes the rest).
    pub(super) fn lookup_response(
        &self,
        id: &str,
        idx: u64,
        status: Status,
        fields: Fields<'_>,
    ) -> Resp {
        let etag = &self.lookup_etags[usize::from(status.0)];
        let (mut r, not_modified) = conditional(fields, etag, [3, 4], || {
            let mut body = Vec::with_capacity(lookup_len(id, idx, status));
            push_lookup(&mut body, id, idx, status);
            debug_assert_eq!(body.len(), body.capacity());
            Bytes::from(body)
        });
        let h = r.headers_mut();
        if !not_modified {
            h.insert(header::CONTENT_TYPE, JSON);
        }
        h.insert(
            header::CACHE_CONTROL,
            self.settings.lookup_cache_control.clone(),
        );
        // The lookup's ETag only matters to caches, so no Expose-Headers: fewer bytes per answer.
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, ANY_ORIGIN);
        r
    }

    /// A list representation with caching headers, gzip when accepted, 304 when revalidated.
    pub(super) fn list_response(
        &self,
        list: &ListSnapshot,
        rep: &Representation,
        fields: Fields<'_>,
    ) -> Resp {
        let gz = rep
            .gzip
            .as_ref()
            .filter(|_| negotiate::accepts_gzip(fields.accept_encoding().as_deref()));
        let (body, etag) = match gz {
            Some((b, e)) => (b, e),
            None => (&rep.body, &rep.etag),
        };
        // A 304 carries 4 fields, a 200 up to 11.
        let (mut r, not_modified) = conditional(fields, etag, [4, 11], || body.clone());
        let h = r.headers_mut();
        let a = &list.artefacts;
        h.insert(header::CACHE_CONTROL, a.cache_control.clone());
        h.insert(
            header::VARY,
            if rep.gzip.is_some() {
                VARY_LIST
            } else {
                VARY_ACCEPT
            },
        );
        // A 304 carries what RFC 9110 §15.4.5 requires for cache updates (ETag, Cache-Control,
        // Vary) and the CORS grant a browser checks; the rest stays with the stored 200.
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, ANY_ORIGIN);
        if !not_modified {
            h.insert(header::CONTENT_TYPE, rep.content_type.clone());
            if gz.is_some() {
                h.insert(header::CONTENT_ENCODING, GZIP);
            }
            h.insert(header::LAST_MODIFIED, a.last_modified.clone());
            h.insert(SURROGATE_KEY.clone(), a.surrogate_key.clone());
            h.insert(CACHE_TAG.clone(), a.surrogate_key.clone());
            h.insert(LIST_VERSION.clone(), a.deltas.version_header.clone());
            h.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, EXPOSE);
        }
        r
    }

    /// A signed delta: the list's caching headers, and nothing a mirroring verifier does not
    /// need on every poll (the version and the dates are in the token; browsers revalidate
    /// without reading the ETag), as these answers are what deltas save bandwidth on.
    pub(super) fn delta_response(
        &self,
        list: &ListSnapshot,
        rep: &Representation,
        fields: Fields<'_>,
    ) -> Resp {
        let (mut r, not_modified) = conditional(fields, &rep.etag, [4, 7], || rep.body.clone());
        let h = r.headers_mut();
        let a = &list.artefacts;
        h.insert(header::CACHE_CONTROL, a.cache_control.clone());
        h.insert(header::VARY, VARY_ACCEPT);
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, ANY_ORIGIN);
        if !not_modified {
            h.insert(header::CONTENT_TYPE, rep.content_type.clone());
            // Purged with the list: a revocation pushed out by a purge reaches mirrors too.
            h.insert(SURROGATE_KEY.clone(), a.surrogate_key.clone());
            h.insert(CACHE_TAG.clone(), a.surrogate_key.clone());
        }
        r
    }

    /// Aggregation and JWKS: small JSON documents with an ETag.
    pub(super) fn simple(&self, rep: &Representation, fields: Fields<'_>) -> Resp {
        let (mut r, not_modified) = conditional(fields, &rep.etag, [4, 5], || rep.body.clone());
        let h = r.headers_mut();
        if !not_modified {
            h.insert(header::CONTENT_TYPE, rep.content_type.clone());
        }
        h.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=60"),
        );
        cors(h);
        r
    }
}

/// The answer to a CORS preflight (`OPTIONS`) on a route.
pub(super) fn preflight(route: Route) -> Resp {
    let mut r = response(Bytes::new(), 5);
    *r.status_mut() = StatusCode::NO_CONTENT;
    let h = r.headers_mut();
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, ANY_ORIGIN);
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static(if route == Route::BatchLookup {
            "POST, OPTIONS"
        } else {
            "GET, HEAD, OPTIONS"
        }),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static(
            "Accept, Accept-Encoding, If-None-Match, If-Modified-Since, Content-Type",
        ),
    );
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("86400"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=86400"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_len_is_exact() {
        for (id, idx, v) in [
            ("a", 0, 0),
            ("list-1", 9, 1),
            ("x", 10, 2),
            ("y", 1_048_575, 3),
            ("z", u64::from(u32::MAX), 255),
        ] {
            let mut out = Vec::new();
            push_lookup(&mut out, id, idx, Status(v));
            assert_eq!(out.len(), lookup_len(id, idx, Status(v)), "{id} {idx} {v}");
        }
    }

    #[test]
    fn lookup_json_is_exact() {
        let mut out = Vec::new();
        push_lookup(&mut out, "list-1", 1_048_575, Status::SUSPENDED);
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            r#"{"list_id":"list-1","idx":1048575,"status":"SUSPENDED","value":2}"#
        );
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["value"], 2);
    }
}
