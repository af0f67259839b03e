//! The public URL scheme, defined once: every path the public plane serves and every media type
//! it offers. The snapshot builder and the issuer build URLs with [`PublicUrls`] (a token's
//! `sub`, a credential's `id`, a status entry's `statusListCredential`); the router parses a
//! request path with [`Target::parse`] and offers the [`LIST_OFFERS`], [`DELTA_OFFERS`],
//! [`VC_OFFERS`] and [`VC11_OFFERS`] defined here. To add or rename a route, change this file and the router's
//! `match` over [`Target`] (`src/http/route.rs`).
//!
//! Nothing here allocates on the request path: [`Target::parse`] borrows its arguments from the
//! path; only the URL builders, which run off the request path, format strings.

use crate::status::w3c::Purpose;

/// `/statuslists` (the Status List Aggregation) and `/statuslists/{id}` (a Status List Token).
pub const STATUS_LISTS: &str = "statuslists";
/// `/bitstringlists/{id}/{purpose}`: a W3C Bitstring Status List credential.
pub const BITSTRING_LISTS: &str = "bitstringlists";
/// `/statuslist2021/{id}/{purpose}`: a Status List 2021 credential (VC 1.1).
pub const STATUS_LIST_2021: &str = "statuslist2021";
/// `/statuses/{id}/{idx}` (one lookup) and `POST /statuses/{id}` (a batch lookup).
pub const STATUSES: &str = "statuses";
/// `/statuslists/{id}/deltas/{from}`: a signed delta from version `from` (statusd's extension,
/// [`crate::delta`]).
pub const DELTAS: &str = "deltas";
/// The response field carrying the version of the list a response encodes (statusd's
/// extension: where a verifier's deltas start from).
pub const LIST_VERSION_HEADER: &str = "statusd-list-version";
/// `/.well-known/jwks.json`: the keys verifiers check signatures with.
pub const WELL_KNOWN: &str = ".well-known";
pub const JWKS: &str = "jwks.json";

/// IETF Status List Token, JWT form.
pub const STATUSLIST_JWT: &str = "application/statuslist+jwt";
/// IETF Status List Token, CWT form.
pub const STATUSLIST_CWT: &str = "application/statuslist+cwt";
/// A signed delta (statusd's extension), JWT form.
pub const STATUSLIST_DELTA_JWT: &str = "application/statuslist-delta+jwt";
/// A signed delta (statusd's extension), CWT form.
pub const STATUSLIST_DELTA_CWT: &str = "application/statuslist-delta+cwt";
/// statusd's roaring form of a list (`status::sparse`).
pub const ROARING: &str = "application/vnd.statusd.roaring";
/// A W3C credential secured with JOSE (VC 2.0).
pub const VC_JWT: &str = "application/vc+jwt";
/// A VC-JWT 1.1 (Status List 2021 credentials).
pub const VC11_JWT: &str = "application/jwt";
/// The Status List Aggregation and lookup answers.
pub const JSON: &str = "application/json";
/// The JWKS.
pub const JWK_SET: &str = "application/jwk-set+json";
/// The VCDM 2.0 media type of a credential secured with an embedded (Data Integrity) proof.
pub const DI_MEDIA_TYPE: &str = "application/vc";
/// The VC 1.1 media type of a JSON-LD credential with an embedded proof (Status List 2021).
pub const DI_MEDIA_TYPE_1_1: &str = "application/vc+ld+json";

/// Representations of `/statuslists/{id}`, in order of preference.
pub const LIST_OFFERS: &[&str] = &[STATUSLIST_JWT, STATUSLIST_CWT, ROARING];
/// Representations of `/statuslists/{id}/deltas/{from}`, in order of preference.
pub const DELTA_OFFERS: &[&str] = &[STATUSLIST_DELTA_JWT, STATUSLIST_DELTA_CWT];
/// Representations of `/bitstringlists/{id}/{purpose}`: the `vc+jwt`, then (from index
/// [`DI_OFFERED_FROM`]) the credential with a Data Integrity proof.
pub const VC_OFFERS: &[&str] = &[VC_JWT, VC11_JWT, DI_MEDIA_TYPE];
/// Representations of `/statuslist2021/{id}/{purpose}`: VC-JWT 1.1, then Data Integrity.
pub const VC11_OFFERS: &[&str] = &[VC11_JWT, VC_JWT, DI_MEDIA_TYPE_1_1, DI_MEDIA_TYPE];
/// Index in [`VC_OFFERS`] and [`VC11_OFFERS`] of the first Data Integrity media type.
pub const DI_OFFERED_FROM: usize = 2;

/// The absolute URLs of what the public plane publishes, under one base URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicUrls {
    /// Base URL without a trailing slash (`--public-url`, checked by `config`).
    base: String,
}

impl PublicUrls {
    /// URLs under `base`, an absolute http(s) URL without a trailing slash.
    pub fn new(base: impl Into<String>) -> Self {
        PublicUrls { base: base.into() }
    }

    /// The base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// A list's Status List Token: its `sub`, and the `uri` of referenced tokens.
    pub fn list(&self, id: &str) -> String {
        format!("{}/{STATUS_LISTS}/{id}", self.base)
    }

    /// A list's W3C credential for `purpose`.
    pub fn credential(&self, id: &str, purpose: Purpose) -> String {
        format!("{}/{BITSTRING_LISTS}/{id}/{purpose}", self.base)
    }

    /// A list's Status List 2021 credential (VC 1.1) for `purpose`.
    pub fn sl2021(&self, id: &str, purpose: Purpose) -> String {
        format!("{}/{STATUS_LIST_2021}/{id}/{purpose}", self.base)
    }

    /// The signed delta of a list from version `from`.
    pub fn delta(&self, id: &str, from: u64) -> String {
        format!("{}/{STATUS_LISTS}/{id}/{DELTAS}/{from}", self.base)
    }

    /// The Status List Aggregation.
    pub fn aggregation(&self) -> String {
        format!("{}/{STATUS_LISTS}", self.base)
    }
}

/// What a request path names: the route and its arguments, borrowed from the path (unchecked:
/// the router validates ids, indices and purposes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target<'p> {
    /// `/statuslists`
    Aggregation,
    /// `/statuslists/{id}`
    StatusList(&'p str),
    /// `/statuslists/{id}/deltas/{from}`
    Delta(&'p str, &'p str),
    /// `/bitstringlists/{id}/{purpose}`
    Bitstring(&'p str, &'p str),
    /// `/statuslist2021/{id}/{purpose}`
    StatusList2021(&'p str, &'p str),
    /// `/statuses/{id}/{idx}`
    Lookup(&'p str, &'p str),
    /// `/statuses/{id}`: the batch lookup (`POST`).
    Batch(&'p str),
    /// `/.well-known/jwks.json`
    Jwks,
    /// `/`: the issuer's controller document (Data Integrity verification methods).
    Controller,
    /// Any other path.
    Unmatched,
}

impl<'p> Target<'p> {
    /// Parses a request path (leading `/` optional): the first segment picks the route, and
    /// only the segments that route takes are split off (one byte search each).
    pub fn parse(path: &'p str) -> Self {
        let path = path.strip_prefix('/').unwrap_or(path);
        let (first, rest) = split(path);
        match first {
            STATUSES => match rest.map(split) {
                Some((id, None)) => Target::Batch(id),
                Some((id, Some(idx))) if !has_slash(idx) => Target::Lookup(id, idx),
                _ => Target::Unmatched,
            },
            STATUS_LISTS => match rest.map(split) {
                None => Target::Aggregation,
                Some((id, None)) => Target::StatusList(id),
                Some((id, Some(tail))) => match split(tail) {
                    (DELTAS, Some(from)) if !has_slash(from) => Target::Delta(id, from),
                    _ => Target::Unmatched,
                },
            },
            BITSTRING_LISTS | STATUS_LIST_2021 => match rest.map(split) {
                Some((id, Some(purpose))) if !has_slash(purpose) => {
                    if first == BITSTRING_LISTS {
                        Target::Bitstring(id, purpose)
                    } else {
                        Target::StatusList2021(id, purpose)
                    }
                }
                _ => Target::Unmatched,
            },
            WELL_KNOWN if rest == Some(JWKS) => Target::Jwks,
            "" if rest.is_none() => Target::Controller,
            _ => Target::Unmatched,
        }
    }
}

/// The first segment of `path` and what follows its `/`, if any. Segments are short: a plain
/// loop beats `memchr`'s set-up (and `str::contains`' searcher) on them.
#[inline]
fn split(path: &str) -> (&str, Option<&str>) {
    match path.bytes().position(|b| b == b'/') {
        Some(i) => (&path[..i], Some(&path[i + 1..])),
        None => (path, None),
    }
}

#[inline]
fn has_slash(segment: &str) -> bool {
    segment.bytes().any(|b| b == b'/')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_urls_parse_back_to_their_target() {
        let urls = PublicUrls::new("https://status.example");
        let path = |url: String| url["https://status.example".len()..].to_owned();
        assert_eq!(urls.list("7"), "https://status.example/statuslists/7");
        assert_eq!(
            Target::parse(&path(urls.list("7"))),
            Target::StatusList("7")
        );
        assert_eq!(
            Target::parse(&path(urls.aggregation())),
            Target::Aggregation
        );
        assert_eq!(
            Target::parse(&path(urls.delta("7", 12))),
            Target::Delta("7", "12")
        );
        assert_eq!(
            Target::parse(&path(urls.credential("7", Purpose::Revocation))),
            Target::Bitstring("7", "revocation")
        );
        assert_eq!(
            Target::parse(&path(urls.sl2021("7", Purpose::Suspension))),
            Target::StatusList2021("7", "suspension")
        );
    }

    #[test]
    fn paths_parse_once_into_targets() {
        assert_eq!(Target::parse("/statuses/a/12"), Target::Lookup("a", "12"));
        assert_eq!(Target::parse("/statuses/a"), Target::Batch("a"));
        assert_eq!(Target::parse("/statuses/"), Target::Batch(""));
        assert_eq!(Target::parse("/statuslists/"), Target::StatusList(""));
        assert_eq!(Target::parse("/.well-known/jwks.json"), Target::Jwks);
        assert_eq!(Target::parse("/"), Target::Controller);
        for unmatched in [
            "*",
            "//statuses/a",
            "/statuses",
            "/statuses/a/1/2",
            "/statuslists/a/b",
            "/statuslists/a/deltas",
            "/statuslists/a/deltas/1/x",
            "/statuslists/a/delta/1",
            "/bitstringlists/a",
            "/.well-known/jwks.json/x",
        ] {
            assert_eq!(Target::parse(unmatched), Target::Unmatched, "{unmatched:?}");
        }
    }
}
