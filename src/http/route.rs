//! Routing: a pure function of (method, parsed path, query, headers, snapshot) to a response.
//! The path is parsed once into a [`Target`] (`crate::routes`); each arm checks its arguments
//! (list id, index, purpose), reads the snapshot and the negotiated fields ([`Fields`], found
//! while the head was checked) and hands the representation to
//! `respond.rs`. No I/O, no allocation but the response's own.

use super::respond::preflight;
use super::{negotiate, Inner, Resp};
use crate::metrics::Route;
use crate::problem::Problem;
use crate::routes::{Target, DELTA_OFFERS, DI_OFFERED_FROM, LIST_OFFERS, VC11_OFFERS, VC_OFFERS};
use crate::snapshot::{Aging, ListSnapshot, Snapshot};
use crate::status::w3c::Purpose;
use crate::store::MAX_ID_LEN;
use crate::wire::head::{self, Fields};
use hyper::Method;
use std::sync::Arc;

impl Inner {
    /// Answers a request for `target` that needs no body (every route but the batch lookup),
    /// with the route it counts under.
    pub(super) fn route(
        &self,
        snap: &Snapshot,
        method: &Method,
        target: Target<'_>,
        query: Option<&str>,
        fields: Fields<'_>,
    ) -> (Route, Resp) {
        let route = metric_route(target);
        let resp = if *method == Method::OPTIONS && route != Route::Unmatched {
            return (Route::Preflight, preflight(route));
        } else {
            self.dispatch(snap, target, method, query, fields)
        };
        (route, resp.unwrap_or_else(|p| p.response()))
    }

    fn dispatch(
        &self,
        snap: &Snapshot,
        target: Target<'_>,
        method: &Method,
        query: Option<&str>,
        fields: Fields<'_>,
    ) -> Result<Resp, Problem> {
        let read_only = |allow| {
            if *method == Method::GET || *method == Method::HEAD {
                Ok(())
            } else {
                Err(Problem::MethodNotAllowed { allow })
            }
        };
        match target {
            Target::Unmatched => Err(Problem::NoRoute),
            Target::Aggregation => {
                read_only("GET, HEAD, OPTIONS")?;
                ready(snap)?;
                Ok(self.simple(&snap.aggregation, fields))
            }
            Target::Jwks => {
                read_only("GET, HEAD, OPTIONS")?;
                ready(snap)?;
                Ok(self.simple(&snap.jwks, fields))
            }
            // The issuer URL (statusd's own by default) dereferences to its controller document.
            Target::Controller => {
                read_only("GET, HEAD, OPTIONS")?;
                ready(snap)?;
                Ok(self.simple(&snap.controller, fields))
            }
            Target::StatusList(id) => {
                read_only("GET, HEAD, OPTIONS")?;
                self.status_list(snap, id, query, fields)
            }
            // statusd's extension: the prebuilt signed delta from the version in the path.
            Target::Delta(id, from) => {
                read_only("GET, HEAD, OPTIONS")?;
                let id = list_id(id)?;
                let from = parse_version(from)?;
                let list = lookup_list(snap, id, false)?;
                signed(list)?;
                let chosen = negotiate::choose_media(fields.accept().as_deref(), DELTA_OFFERS)
                    .ok_or(Problem::NotAcceptable {
                        offered: DELTA_OFFERS,
                    })?;
                let (jwt, cwt) = list.artefacts.deltas.find(from).map_err(|reason| {
                    Problem::DeltaUnavailable {
                        reason,
                        list: id.to_owned(),
                    }
                })?;
                Ok(self.delta_response(list, [jwt, cwt][chosen], fields))
            }
            // The two W3C views differ only in which artefact and which media types they offer.
            Target::Bitstring(id, purpose) | Target::StatusList2021(id, purpose) => {
                read_only("GET, HEAD, OPTIONS")?;
                let id = list_id(id)?;
                let list = lookup_list(snap, id, true)?;
                let purpose: Purpose = purpose.parse().map_err(|_| Problem::UnknownPurpose)?;
                signed(list)?;
                let a = &list.artefacts;
                let (rep, di, offered) = if matches!(target, Target::Bitstring(..)) {
                    (a.w3c(purpose), a.w3c_di(purpose), VC_OFFERS)
                } else {
                    (a.sl2021(purpose), a.sl2021_di(purpose), VC11_OFFERS)
                };
                let rep = rep
                    .filter(|r| !r.body.is_empty())
                    .ok_or(Problem::UnknownPurpose)?;
                let chosen = negotiate::choose_media(fields.accept().as_deref(), offered)
                    .ok_or(Problem::NotAcceptable { offered })?;
                if chosen < DI_OFFERED_FROM {
                    return Ok(self.list_response(list, rep, fields));
                }
                // No proof when the signing key has no Data Integrity cryptosuite.
                let offered = &offered[..DI_OFFERED_FROM];
                let di = di
                    .filter(|r| !r.body.is_empty())
                    .ok_or(Problem::NotAcceptable { offered })?;
                Ok(self.list_response(list, di, fields))
            }
            Target::Lookup(id, idx) => {
                read_only("GET, HEAD, OPTIONS")?;
                self.lookup(snap, id, idx, fields)
            }
            Target::Batch(_) => Err(Problem::MethodNotAllowed {
                allow: "POST, OPTIONS",
            }),
        }
    }

    // The two routes that carry the load (a lookup; a list, mostly answered 304 by caches that
    // revalidate) are functions of their own, never inlined into `dispatch`, with their error
    // branches marked cold: a small answer pays mostly for the instruction cache lines its code
    // runs through, and the lookup's own code went from 63 lines to 57 (issue #18,
    // `loadtest/profile`'s code lines).

    /// `GET /statuslists/{id}`: the list's token in the negotiated format.
    #[inline(never)]
    fn status_list(
        &self,
        snap: &Snapshot,
        id: &str,
        query: Option<&str>,
        fields: Fields<'_>,
    ) -> Result<Resp, Problem> {
        let id = list_id(id)?;
        if head::has_query_param(query, "time") {
            std::hint::cold_path();
            return Err(Problem::HistoryNotSupported);
        }
        let list = lookup_list(snap, id, false)?;
        signed(list)?;
        let Some(chosen) = negotiate::choose_media(fields.accept().as_deref(), LIST_OFFERS) else {
            std::hint::cold_path();
            return Err(Problem::NotAcceptable {
                offered: LIST_OFFERS,
            });
        };
        let a = &list.artefacts;
        let rep = [&a.jwt, &a.cwt, &a.roaring][chosen];
        Ok(self.list_response(list, rep, fields))
    }

    /// `GET /statuses/{id}/{idx}`: one credential's status.
    #[inline(never)]
    fn lookup(
        &self,
        snap: &Snapshot,
        id: &str,
        idx: &str,
        fields: Fields<'_>,
    ) -> Result<Resp, Problem> {
        let id = list_id(id)?;
        let idx = parse_index(idx)?;
        let list = lookup_list(snap, id, false)?;
        let status = match list.list.get(idx) {
            Ok(status) => status,
            Err(_) => {
                std::hint::cold_path();
                return Err(Problem::IndexOutOfRange {
                    size: list.list.size(),
                });
            }
        };
        Ok(self.lookup_response(id, idx, status, fields))
    }
}

/// The metrics label of a request for `target`.
pub(super) fn metric_route(target: Target<'_>) -> Route {
    match target {
        Target::Aggregation => Route::Aggregation,
        Target::StatusList(_) => Route::StatusList,
        Target::Delta(..) => Route::StatusListDelta,
        Target::Bitstring(..) => Route::Bitstring,
        Target::StatusList2021(..) => Route::StatusList2021,
        Target::Lookup(..) => Route::Lookup,
        Target::Batch(_) => Route::BatchLookup,
        Target::Jwks => Route::Jwks,
        Target::Controller => Route::Controller,
        Target::Unmatched => Route::Unmatched,
    }
}

/// A path segment that is a valid list id.
pub(super) fn list_id(seg: &str) -> Result<&str, Problem> {
    let ok = !seg.is_empty()
        && seg.len() <= MAX_ID_LEN
        && seg
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(seg)
    } else {
        std::hint::cold_path();
        Err(Problem::BadListId)
    }
}

/// A canonical decimal index: digits only, no leading zeros, at most 10 digits (u32 range is
/// checked against the list size afterwards).
pub fn parse_index(seg: &str) -> Result<u64, Problem> {
    // A match, not `ok_or`: the eager error value costs a drop on every good index.
    match canonical_decimal(seg, 10) {
        Some(n) => Ok(n),
        None => Err(Problem::BadIndex),
    }
}

/// A list version in a delta's path: canonical decimal, at most 19 digits (below 2^63).
fn parse_version(seg: &str) -> Result<u64, Problem> {
    match canonical_decimal(seg, 19) {
        Some(n) => Ok(n),
        None => Err(Problem::BadVersion),
    }
}

/// `seg` as a canonical decimal of at most `max_digits` (≤ 19) digits: no sign, no leading
/// zero. One pass that checks and accumulates each digit.
#[inline]
fn canonical_decimal(seg: &str, max_digits: usize) -> Option<u64> {
    let b = seg.as_bytes();
    if b.is_empty() || b.len() > max_digits || (b.len() > 1 && b[0] == b'0') {
        std::hint::cold_path();
        return None;
    }
    let mut n = 0u64;
    for &c in b {
        let d = c.wrapping_sub(b'0');
        if d > 9 {
            std::hint::cold_path();
            return None;
        }
        n = n * 10 + u64::from(d);
    }
    Some(n)
}

pub(super) fn ready(snap: &Snapshot) -> Result<(), Problem> {
    if snap.generation == 0 {
        std::hint::cold_path();
        Err(Problem::NotReady)
    } else {
        Ok(())
    }
}

pub(super) fn lookup_list<'a>(
    snap: &'a Snapshot,
    id: &str,
    w3c: bool,
) -> Result<&'a Arc<ListSnapshot>, Problem> {
    ready(snap)?;
    snap.list(id).ok_or_else(|| {
        std::hint::cold_path();
        if snap.retired.contains(id) {
            Problem::ListRetired
        } else {
            Problem::UnknownList { w3c }
        }
    })
}

/// The list's signed artefacts may be served: not withheld while signing is paused.
fn signed(list: &ListSnapshot) -> Result<(), Problem> {
    if list.artefacts.aging == Aging::Withheld {
        std::hint::cold_path();
        return Err(Problem::SigningUnavailable);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_parsing_is_canonical() {
        assert_eq!(parse_index("0"), Ok(0));
        assert_eq!(parse_index("1048575"), Ok(1_048_575));
        assert_eq!(parse_index("9999999999"), Ok(9_999_999_999));
        for bad in [
            "",
            "01",
            "-1",
            "+1",
            "1e3",
            "12345678901",
            "0x10",
            " 1",
            "１",
        ] {
            assert_eq!(parse_index(bad), Err(Problem::BadIndex), "{bad:?}");
        }
        assert_eq!(parse_version("9223372036854775807"), Ok(i64::MAX as u64));
        for bad in ["", "00", "12345678901234567890", "1/", ":"] {
            assert_eq!(parse_version(bad), Err(Problem::BadVersion), "{bad:?}");
        }
    }
}
