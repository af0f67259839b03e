//! What every request head must pass on both planes before it is routed (header size, `Host`,
//! transfer codings), the reading of list-valued fields that may be repeated, the JSON content
//! type check, and the one way both planes read a request body (size limit checked before
//! `100 Continue`, content coding, read timeout). The same pass that checks a head finds the
//! fields the public plane negotiates on ([`Fields`]).
//!
//! Everything here but [`read_body`] runs on the request path: no allocation unless a list
//! field really is repeated.

use crate::problem::Problem;
use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::Version;
use std::borrow::Cow;
use std::time::Duration;

/// Largest total size of request headers we answer (hyper's own buffer limit is a backstop;
/// hyper also answers more than 100 fields itself, which `server::guard` turns into the same
/// 431 problem).
pub const MAX_HEADER_BYTES: usize = 16 * 1024;

/// Header size as hyper parsed it: names, values and the `: ` and CRLF around each.
fn field_bytes(name: &HeaderName, value: &HeaderValue) -> usize {
    name.as_str().len() + value.len() + 4
}

fn too_large() -> Problem {
    Problem::HeadersTooLarge {
        limit: MAX_HEADER_BYTES,
    }
}

/// One list-valued field as [`check`]'s pass saw it.
#[derive(Clone, Copy, Debug, Default)]
enum Seen<'a> {
    #[default]
    Absent,
    Once(&'a HeaderValue),
    /// More than once: combined on demand ([`list_field`]), which is rare.
    Repeated,
}

impl<'a> Seen<'a> {
    fn add(&mut self, value: &'a HeaderValue) {
        *self = match self {
            Seen::Absent => Seen::Once(value),
            _ => Seen::Repeated,
        };
    }
}

/// The list-valued fields the public plane negotiates on (`Accept`, `Accept-Encoding`,
/// `If-None-Match`), found in [`check`]'s one pass over the head: reading each by a hashed
/// lookup afterwards cost about as much again as the pass (issue #18's profile). Read as
/// [`list_field`] reads them: repeated fields combined, borrowed when a field appears once.
#[derive(Clone, Copy, Debug)]
pub struct Fields<'a> {
    headers: &'a HeaderMap,
    accept: Seen<'a>,
    accept_encoding: Seen<'a>,
    if_none_match: Seen<'a>,
}

impl<'a> Fields<'a> {
    /// Notes `value` when `name` is one of the fields kept; names are compared, not hashed.
    #[inline]
    fn see(&mut self, name: &HeaderName, value: &'a HeaderValue) {
        if name == header::ACCEPT {
            self.accept.add(value);
        } else if name == header::ACCEPT_ENCODING {
            self.accept_encoding.add(value);
        } else if name == header::IF_NONE_MATCH {
            self.if_none_match.add(value);
        }
    }

    fn get(&self, seen: Seen<'a>, name: HeaderName) -> Option<Cow<'a, [u8]>> {
        match seen {
            Seen::Absent => None,
            Seen::Once(v) => Some(Cow::Borrowed(v.as_bytes())),
            Seen::Repeated => list_field(self.headers, name),
        }
    }

    pub fn accept(&self) -> Option<Cow<'a, [u8]>> {
        self.get(self.accept, header::ACCEPT)
    }

    pub fn accept_encoding(&self) -> Option<Cow<'a, [u8]>> {
        self.get(self.accept_encoding, header::ACCEPT_ENCODING)
    }

    pub fn if_none_match(&self) -> Option<Cow<'a, [u8]>> {
        self.get(self.if_none_match, header::IF_NONE_MATCH)
    }

    fn new(headers: &'a HeaderMap) -> Self {
        Fields {
            headers,
            accept: Seen::Absent,
            accept_encoding: Seen::Absent,
            if_none_match: Seen::Absent,
        }
    }
}

/// 431 past [`MAX_HEADER_BYTES`] of request headers. Both planes answer it: hyper's own buffer
/// limit (4 times larger) is only a backstop. [`check`] includes it; this is for callers that
/// hand a header map to the planes without a socket (benches, the fuzz targets), and returns
/// the negotiated fields as [`check`] does.
pub fn check_header_size(headers: &HeaderMap) -> Result<Fields<'_>, Problem> {
    let mut fields = Fields::new(headers);
    let mut bytes = 0;
    for (name, value) in headers {
        bytes += field_bytes(name, value);
        fields.see(name, value);
    }
    if bytes > MAX_HEADER_BYTES {
        Err(too_large())
    } else {
        Ok(fields)
    }
}

/// The protocol checks every request head passes on both planes, before routing, in this
/// order: total header size (431 past [`MAX_HEADER_BYTES`]), `Host` (RFC 9112 §3.2: exactly
/// one in HTTP/1.1, at most one otherwise, and a valid `uri-host[:port]`) and transfer codings
/// (RFC 9112 §6.1: only `chunked` is implemented; hyper itself refuses a request whose last
/// coding is not `chunked`).
///
/// One pass over the fields, comparing names rather than hashing them: a request carries a
/// handful of fields, and two hashed lookups plus a size pass cost several times this on every
/// request (issue #18's profile). The same pass gathers the [`Fields`] the public plane
/// negotiates on.
pub fn check(version: Version, headers: &HeaderMap) -> Result<Fields<'_>, Problem> {
    let mut fields = Fields::new(headers);
    let mut bytes = 0;
    let mut host = None;
    let mut hosts = 0u32;
    let mut te_ok = true;
    for (name, value) in headers {
        bytes += field_bytes(name, value);
        if name == header::HOST {
            hosts += 1;
            host.get_or_insert(value);
        } else if name == header::TRANSFER_ENCODING {
            te_ok &= value
                .as_bytes()
                .split(|&b| b == b',')
                .all(|coding| coding.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        } else {
            fields.see(name, value);
        }
    }
    if bytes > MAX_HEADER_BYTES {
        return Err(too_large());
    }
    let host_ok = match host {
        None => version != Version::HTTP_11,
        Some(h) => hosts == 1 && valid_host(h.as_bytes()),
    };
    if !host_ok || !te_ok {
        return Err(bad_head(version, host, hosts));
    }
    Ok(fields)
}

/// Why a head that [`check`] refused is bad (the Host field first, then the transfer coding):
/// out of line and cold, so that checking a good head runs through few cache lines.
#[cold]
#[inline(never)]
fn bad_head(version: Version, host: Option<&HeaderValue>, hosts: u32) -> Problem {
    match (host, hosts) {
        (None, _) if version == Version::HTTP_11 => {
            Problem::BadHost("an HTTP/1.1 request must carry a Host field (RFC 9112 §3.2)")
        }
        (_, 2..) => Problem::BadHost("a request may carry only one Host field (RFC 9112 §3.2)"),
        (Some(host), _) if !valid_host(host.as_bytes()) => {
            Problem::BadHost("the Host field is not a valid host and optional port (RFC 9110 §7.2)")
        }
        _ => Problem::UnsupportedTransferEncoding,
    }
}

/// 400 when `name` appears more than once (fields that carry one credential, like
/// `Authorization`).
pub fn single(headers: &HeaderMap, name: HeaderName, label: &'static str) -> Result<(), Problem> {
    let mut all = headers.get_all(name).iter();
    if all.next().is_some() && all.next().is_some() {
        return Err(Problem::RepeatedField(label));
    }
    Ok(())
}

/// A list-valued field (`Accept`, `Accept-Encoding`, `If-None-Match`): repeated fields are
/// combined with `", "` as RFC 9110 §5.3 says a recipient may, so that a second `Accept` line
/// is not silently ignored. Borrowed (no allocation) when the field appears once.
pub fn list_field(headers: &HeaderMap, name: HeaderName) -> Option<Cow<'_, [u8]>> {
    let mut all = headers.get_all(name).iter();
    let first = all.next()?;
    let Some(second) = all.next() else {
        return Some(Cow::Borrowed(first.as_bytes()));
    };
    let mut combined = first.as_bytes().to_vec();
    for v in std::iter::once(second).chain(all) {
        combined.extend_from_slice(b", ");
        combined.extend_from_slice(v.as_bytes());
    }
    Some(Cow::Owned(combined))
}

/// The characters of a reg-name or IPv4 address besides percent-encodings (RFC 3986 §3.2.2:
/// unreserved and sub-delims), as a table: one load per byte instead of a scan of the set.
const HOST_CHARS: [bool; 256] = byte_set(b"-._~!$&'()*+,;=");
/// The characters of an IP literal's inside: the same and `:`.
const LITERAL_CHARS: [bool; 256] = byte_set(b":._~-!$&'()*+,;=");

/// ASCII letters and digits and `extra`.
const fn byte_set(extra: &[u8]) -> [bool; 256] {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 256 {
        t[c] = (c as u8).is_ascii_alphanumeric();
        c += 1;
    }
    let mut i = 0;
    while i < extra.len() {
        t[extra[i] as usize] = true;
        i += 1;
    }
    t
}

/// `uri-host [ ":" port ]` (RFC 3986 §3.2.2): an IP literal in brackets, or a reg-name /
/// IPv4 address of unreserved, sub-delim and percent-encoded characters; the port is digits.
/// An empty value is valid (RFC 9112 §3.2: a target without an authority). A reg-name is
/// checked in one pass up to its `:`, which no reg-name contains.
fn valid_host(b: &[u8]) -> bool {
    if b.first() == Some(&b'[') {
        return valid_ip_literal(b);
    }
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        if HOST_CHARS[usize::from(c)] {
            i += 1;
            continue;
        }
        match c {
            b'%' => {
                let hex = b.get(i + 1..i + 3);
                if !hex.is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
                    return false;
                }
                i += 3;
            }
            b':' => return b[i + 1..].iter().all(u8::is_ascii_digit),
            _ => return false,
        }
    }
    true
}

/// `"[" IP-literal "]" [ ":" port ]`.
fn valid_ip_literal(b: &[u8]) -> bool {
    let Some(end) = b.iter().position(|&c| c == b']') else {
        return false;
    };
    let literal = &b[1..end];
    if literal.is_empty() || !literal.iter().all(|&c| LITERAL_CHARS[usize::from(c)]) {
        return false;
    }
    match &b[end + 1..] {
        [] => true,
        [b':', port @ ..] => port.iter().all(u8::is_ascii_digit),
        _ => false,
    }
}

/// Whether the request declares a JSON body: `None` without a `Content-Type`, else whether its
/// essence (parameters dropped, case ignored) is `application/json`.
pub fn declares_json(headers: &HeaderMap) -> Option<bool> {
    let ct = headers.get(header::CONTENT_TYPE)?;
    let essence = ct.to_str().unwrap_or("").split(';').next().unwrap_or("");
    Some(essence.trim().eq_ignore_ascii_case("application/json"))
}

/// Reads a request body of at most `limit` bytes within `timeout`. A body declared larger
/// (`Content-Length`) is refused before a byte is read, so hyper never answers
/// `Expect: 100-continue` with `100 Continue` for it; a content coding is refused (415); a body
/// that does not arrive in time is 408.
pub async fn read_body(
    body: hyper::body::Incoming,
    headers: &HeaderMap,
    limit: usize,
    timeout: Duration,
) -> Result<Bytes, Problem> {
    if let Some(ce) = headers.get(header::CONTENT_ENCODING) {
        let identity = ce
            .as_bytes()
            .split(|&b| b == b',')
            .all(|c| c.trim_ascii().eq_ignore_ascii_case(b"identity"));
        if !identity {
            return Err(Problem::UnsupportedContentEncoding);
        }
    }
    let too_large = Problem::TooLarge {
        what: "the request body",
        limit,
    };
    if hyper::body::Body::size_hint(&body).lower() > limit as u64 {
        return Err(too_large);
    }
    let collected = tokio::time::timeout(timeout, Limited::new(body, limit).collect())
        .await
        .map_err(|_| Problem::BodyTimeout)?;
    match collected {
        Ok(b) => Ok(b.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(too_large),
        Err(_) => Err(Problem::BadBody(
            "the request body could not be read".into(),
        )),
    }
}

/// Whether the query has a parameter named `name`, comparing names after percent-decoding
/// (`?%74ime=` is `?time=`). Allocation-free.
pub fn has_query_param(query: Option<&str>, name: &str) -> bool {
    query.is_some_and(|q| {
        q.split('&')
            .any(|kv| decoded_eq(kv.split_once('=').map_or(kv, |(k, _)| k), name))
    })
}

/// `raw`, percent-decoded (and `+` read as a space, as form encoding writes it), equals `name`.
fn decoded_eq(raw: &str, name: &str) -> bool {
    let raw = raw.as_bytes();
    let mut want = name.bytes();
    let mut i = 0;
    while i < raw.len() {
        let c = match raw[i] {
            b'%' => match raw
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
            {
                Some(h) if h.bytes().all(|b| b.is_ascii_hexdigit()) => {
                    i += 2;
                    u8::from_str_radix(h, 16).unwrap_or(b'%')
                }
                _ => b'%',
            },
            b'+' => b' ',
            c => c,
        };
        if want.next() != Some(c) {
            return false;
        }
        i += 1;
    }
    want.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(fields: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in fields {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn host_is_required_once_and_valid() {
        let ok = |f: &[(&'static str, &'static str)], v| check(v, &headers(f)).is_ok();
        assert!(ok(&[("host", "example.com")], Version::HTTP_11));
        assert!(ok(&[("host", "127.0.0.1:8080")], Version::HTTP_11));
        assert!(ok(&[("host", "[::1]:8080")], Version::HTTP_11));
        assert!(ok(&[("host", "")], Version::HTTP_11));
        assert!(ok(
            &[("host", "xn--bcher-kva.example%2e")],
            Version::HTTP_11
        ));
        assert!(ok(&[], Version::HTTP_10));
        assert!(ok(&[], Version::HTTP_2));
        assert!(!ok(&[], Version::HTTP_11));
        assert!(!ok(&[("host", "a"), ("host", "b")], Version::HTTP_11));
        assert!(!ok(&[("host", "a"), ("host", "a")], Version::HTTP_2));
        for bad in [
            "a b", "a/b", "a@b", "a:80x", "::1", "[::1", "[]", "[::1]x", "a%zz", "a%2", "a\"b",
        ] {
            assert!(!valid_host(bad.as_bytes()), "{bad:?}");
        }
        for good in ["a:", "[::1]:", "%41:80", "a%3a:80", "x.example:0"] {
            assert!(valid_host(good.as_bytes()), "{good:?}");
        }
    }

    /// The reg-name grammar as RFC 3986 §3.2.2 reads, written plainly: split at the last `:`,
    /// then check each part (an IP literal goes to the same function as in `valid_host`).
    fn valid_host_as_written(b: &[u8]) -> bool {
        if b.first() == Some(&b'[') {
            return valid_ip_literal(b);
        }
        let (host, port) = match b.iter().rposition(|&c| c == b':') {
            Some(i) => (&b[..i], &b[i + 1..]),
            None => (b, &b[..0]),
        };
        if !port.iter().all(u8::is_ascii_digit) {
            return false;
        }
        let mut i = 0;
        while i < host.len() {
            if host[i] == b'%' {
                let hex = host.get(i + 1..i + 3);
                if !hex.is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
                    return false;
                }
                i += 3;
            } else if HOST_CHARS[usize::from(host[i])] {
                i += 1;
            } else {
                return false;
            }
        }
        true
    }

    #[test]
    fn the_one_pass_host_check_agrees_with_the_grammar_on_every_short_value() {
        const ALPHABET: &[u8] = b"a1:%[]f./";
        let mut value = Vec::new();
        for len in 0..=5u32 {
            for mut n in 0..ALPHABET.len().pow(len) {
                value.clear();
                for _ in 0..len {
                    value.push(ALPHABET[n % ALPHABET.len()]);
                    n /= ALPHABET.len();
                }
                assert_eq!(
                    valid_host(&value),
                    valid_host_as_written(&value),
                    "{:?}",
                    String::from_utf8_lossy(&value)
                );
            }
        }
    }

    #[test]
    fn only_chunked_is_implemented() {
        let te = |v| {
            check(
                Version::HTTP_11,
                &headers(&[("host", "a"), ("transfer-encoding", v)]),
            )
            .map(|_| ())
        };
        assert!(te("chunked").is_ok());
        assert!(te(" Chunked ").is_ok());
        assert_eq!(
            te("gzip, chunked"),
            Err(Problem::UnsupportedTransferEncoding)
        );
        assert_eq!(te("chunked, chunked"), Ok(()));
    }

    #[test]
    fn repeated_list_fields_are_combined() {
        let h = headers(&[("accept", "application/cwt"), ("accept", "*/*;q=0.1")]);
        assert_eq!(
            list_field(&h, header::ACCEPT).as_deref(),
            Some(&b"application/cwt, */*;q=0.1"[..])
        );
        let h = headers(&[("accept", "application/cwt")]);
        assert!(matches!(
            list_field(&h, header::ACCEPT),
            Some(Cow::Borrowed(_))
        ));
        assert!(list_field(&h, header::IF_NONE_MATCH).is_none());
    }

    #[test]
    fn the_checked_head_reads_negotiated_fields_as_list_field_does() {
        let h = headers(&[
            ("host", "a"),
            ("accept", "application/cwt"),
            ("if-none-match", "\"x\""),
            ("accept", "*/*;q=0.1"),
        ]);
        for f in [
            check(Version::HTTP_11, &h).unwrap(),
            check_header_size(&h).unwrap(),
        ] {
            assert_eq!(f.accept(), list_field(&h, header::ACCEPT));
            assert_eq!(
                f.accept().as_deref(),
                Some(&b"application/cwt, */*;q=0.1"[..])
            );
            assert!(matches!(f.if_none_match(), Some(Cow::Borrowed(b"\"x\""))));
            assert_eq!(f.accept_encoding(), None);
        }
    }

    #[test]
    fn query_names_are_compared_decoded() {
        assert!(has_query_param(Some("time=1"), "time"));
        assert!(has_query_param(Some("a=1&time"), "time"));
        assert!(!has_query_param(Some("timestamp=1"), "time"));
        assert!(has_query_param(Some("a=1&%74ime=1"), "time"));
        assert!(has_query_param(Some("%74%69%6D%65"), "time"));
        assert!(!has_query_param(Some("times=1"), "time"));
        assert!(!has_query_param(Some("tim=1"), "time"));
        assert!(!has_query_param(Some("%7"), "time"));
        assert!(!has_query_param(None, "time"));
    }

    #[test]
    fn a_second_authorization_is_refused() {
        let h = headers(&[("authorization", "Bearer a"), ("authorization", "Bearer b")]);
        assert_eq!(
            single(&h, header::AUTHORIZATION, "Authorization"),
            Err(Problem::RepeatedField("Authorization"))
        );
        let h = headers(&[("authorization", "Bearer a")]);
        assert!(single(&h, header::AUTHORIZATION, "Authorization").is_ok());
    }

    #[test]
    fn header_size_limit_is_16_kib_of_names_and_values() {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
        assert!(check_header_size(&h).is_ok());
        let big = HeaderValue::try_from("t".repeat(MAX_HEADER_BYTES)).unwrap();
        h.insert(header::AUTHORIZATION, big);
        assert_eq!(
            check_header_size(&h).err(),
            Some(Problem::HeadersTooLarge {
                limit: MAX_HEADER_BYTES
            })
        );
    }
}
