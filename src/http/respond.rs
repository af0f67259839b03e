//! Responses of the public plane: the prebuilt representation with its caching headers, gzip
//! when accepted, and 304 when revalidated (the `If-None-Match` logic is written once, in
//! [`conditional`]); lookup answers written without a JSON tree; CORS and preflights.
//! Everything here is refcount bumps of prebuilt `Bytes` and `HeaderValue`s, and one header
//! map sized per route.

use super::{negotiate, Inner, Resp};
use crate::metrics::Route;
use crate::snapshot::{Artefacts, ListSnapshot, Representation};
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

/// What a lookup answer for one status value is built from, prebuilt for every value
/// ([`lookup_answers`]): the body's end after the index (`,"status":"SUSPENDED","value":2}`),
/// so a body is three constant pieces and two copies from the request, and the whole header map
/// of the 200 and of the 304. A lookup clones its map (two allocations and four refcount-free
/// copies) instead of inserting four fields into a new one, which hashed each name: about 500
/// instructions per lookup (issue #18's profile).
pub(super) struct LookupAnswer {
    /// `"s<value>"`: the ETag is the status value (the URL fixes the rest).
    etag: HeaderValue,
    tail: Box<[u8]>,
    /// ETag, Content-Type, Cache-Control, Access-Control-Allow-Origin.
    ok: HeaderMap,
    /// ETag, Cache-Control, Access-Control-Allow-Origin.
    not_modified: HeaderMap,
}

/// The [`LookupAnswer`] of every status value, `Cache-Control` being `cache_control`.
pub(super) fn lookup_answers(cache_control: &HeaderValue) -> Vec<LookupAnswer> {
    (0..=255u8)
        .map(|v| {
            let s = Status(v);
            let etag = super::static_value(format!("\"s{v}\""));
            let mut ok = HeaderMap::with_capacity(4);
            ok.insert(header::ETAG, etag.clone());
            ok.insert(header::CONTENT_TYPE, JSON);
            ok.insert(header::CACHE_CONTROL, cache_control.clone());
            // Only caches read a lookup's ETag, so no Expose-Headers: fewer bytes per answer.
            ok.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, ANY_ORIGIN);
            let mut not_modified = ok.clone();
            not_modified.remove(header::CONTENT_TYPE);
            LookupAnswer {
                etag,
                tail: format!(r#","status":"{}","value":{}}}"#, s.name(), s.0)
                    .into_bytes()
                    .into(),
                ok,
                not_modified,
            }
        })
        .collect()
}

const LOOKUP_HEAD: &[u8] = br#"{"list_id":""#;
const LOOKUP_IDX: &[u8] = br#"","idx":"#;

/// The length of a lookup's JSON answer ([`put_lookup`]).
fn lookup_len(id: &str, digits: &[u8], tail: &[u8]) -> usize {
    LOOKUP_HEAD.len() + id.len() + LOOKUP_IDX.len() + digits.len() + tail.len()
}

/// Appends a lookup's JSON answer: the list id, the index's decimal digits and the status
/// value's [`LookupAnswer::tail`]. The caller makes room for [`lookup_len`] bytes first.
fn put_lookup(out: &mut Vec<u8>, id: &str, digits: &[u8], tail: &[u8]) {
    out.extend_from_slice(LOOKUP_HEAD);
    out.extend_from_slice(id.as_bytes()); // ids are [A-Za-z0-9_-]: nothing to escape
    out.extend_from_slice(LOOKUP_IDX);
    out.extend_from_slice(digits);
    out.extend_from_slice(tail);
}

/// A 200 response with room for `headers` header fields, so inserting them never reallocates.
/// Sized per route: a map for 16 fields is a 2.7 KB allocation, past the allocator's per-thread
/// cache, where a lookup's 4 fields fit in 700 bytes.
pub(super) fn response(body: Bytes, headers: usize) -> Resp {
    let mut r = Response::new(Full::new(body));
    *r.headers_mut() = HeaderMap::with_capacity(headers);
    r
}

pub(super) fn cors(h: &mut HeaderMap) {
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, ANY_ORIGIN);
    h.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, EXPOSE);
}

/// Whether `If-None-Match` matches `etag` (weak comparison, RFC 9110 §13.1.2): the request is
/// answered 304.
fn revalidated(fields: Fields<'_>, etag: &HeaderValue) -> bool {
    fields
        .if_none_match()
        .as_deref()
        .is_some_and(|inm| negotiate::none_match(inm, etag.as_bytes()))
}

/// A 304 whose header map the caller sets.
fn not_modified_answer() -> Resp {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::NOT_MODIFIED;
    r
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
    let not_modified = revalidated(fields, etag);
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
    /// Appends one lookup result as JSON: `{"list_id":…,"idx":…,"status":…,"value":…}`, with
    /// room reserved once for all of it.
    pub(super) fn push_lookup(&self, out: &mut Vec<u8>, id: &str, idx: u64, status: Status) {
        let mut digits = itoa::Buffer::new();
        let digits = digits.format(idx).as_bytes();
        let tail = &self.lookup_answers[usize::from(status.0)].tail;
        out.reserve(lookup_len(id, digits, tail));
        put_lookup(out, id, digits, tail);
    }

    /// One lookup's answer, from its status value's prebuilt [`LookupAnswer`].
    pub(super) fn lookup_response(
        &self,
        id: &str,
        idx: u64,
        status: Status,
        fields: Fields<'_>,
    ) -> Resp {
        let answer = &self.lookup_answers[usize::from(status.0)];
        if revalidated(fields, &answer.etag) {
            let mut r = not_modified_answer();
            *r.headers_mut() = answer.not_modified.clone();
            return r;
        }
        // Allocated at its exact size: a `Vec` whose length equals its capacity becomes `Bytes`
        // without another allocation.
        let mut digits = itoa::Buffer::new();
        let digits = digits.format(idx).as_bytes();
        let mut body = Vec::with_capacity(lookup_len(id, digits, &answer.tail));
        put_lookup(&mut body, id, digits, &answer.tail);
        debug_assert_eq!(body.len(), body.capacity());
        let mut r = Response::new(Full::new(Bytes::from(body)));
        *r.headers_mut() = answer.ok.clone();
        r
    }

    /// A list representation with caching headers, gzip when accepted, 304 when revalidated:
    /// `rep` is one of `list`'s artefacts, and its head is cloned from the one built for it on
    /// first use ([`list_head`]).
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
        let not_modified = revalidated(fields, etag);
        let slot = 2 * usize::from(gz.is_some()) + usize::from(not_modified);
        let head = rep.heads.get_or_build(slot, || {
            list_head(&list.artefacts, rep, etag, gz.is_some(), not_modified)
        });
        let mut r = if not_modified {
            not_modified_answer()
        } else {
            Response::new(Full::new(body.clone()))
        };
        *r.headers_mut() = head.clone();
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

/// The head of a list representation's answer: `etag` is `rep`'s, or its gzip variant's when
/// `gz`; a 304 carries what RFC 9110 §15.4.5 requires for cache updates (ETag, Cache-Control,
/// Vary) and the CORS grant a browser checks, the rest stays with the stored 200.
fn list_head(
    a: &Artefacts,
    rep: &Representation,
    etag: &HeaderValue,
    gz: bool,
    not_modified: bool,
) -> HeaderMap {
    let mut h = HeaderMap::with_capacity(if not_modified { 4 } else { 11 });
    h.insert(header::ETAG, etag.clone());
    h.insert(header::CACHE_CONTROL, a.cache_control.clone());
    h.insert(
        header::VARY,
        if rep.gzip.is_some() {
            VARY_LIST
        } else {
            VARY_ACCEPT
        },
    );
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, ANY_ORIGIN);
    if !not_modified {
        h.insert(header::CONTENT_TYPE, rep.content_type.clone());
        if gz {
            h.insert(header::CONTENT_ENCODING, GZIP);
        }
        h.insert(header::LAST_MODIFIED, a.last_modified.clone());
        h.insert(SURROGATE_KEY.clone(), a.surrogate_key.clone());
        h.insert(CACHE_TAG.clone(), a.surrogate_key.clone());
        h.insert(LIST_VERSION.clone(), a.deltas.version_header.clone());
        h.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, EXPOSE);
    }
    h
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
    fn lookup_json_is_exact() {
        let public = super::super::Public::new(
            Default::default(),
            Default::default(),
            super::super::PublicSettings::new(std::time::Duration::from_secs(1)),
        );
        let push = |out: &mut Vec<u8>, id: &str, idx: u64, v: u8| {
            let before = out.len();
            public.inner.push_lookup(out, id, idx, Status(v));
            assert!(out.len() > before);
        };
        let mut out = Vec::new();
        push(&mut out, "list-1", 1_048_575, Status::SUSPENDED.0);
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            r#"{"list_id":"list-1","idx":1048575,"status":"SUSPENDED","value":2}"#
        );
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["value"], 2);
        for (id, idx, v) in [
            ("a", 0, 0),
            ("x", 10, 3),
            ("y", 9, 1),
            ("z", u64::from(u32::MAX), 255),
        ] {
            out = Vec::new();
            push(&mut out, id, idx, v);
            assert_eq!(out.len(), out.capacity(), "reserved at its exact size");
            let want = serde_json::json!({
                "list_id": id, "idx": idx, "status": Status(v).name(), "value": v
            });
            assert_eq!(
                serde_json::from_slice::<serde_json::Value>(&out).unwrap(),
                want
            );
        }
    }
}
