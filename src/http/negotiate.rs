//! Content negotiation and conditional requests (RFC 9110 §12.5, §13.1.2), without allocating.
//!
//! These parsers see untrusted header bytes: they never panic, treat anything malformed as
//! absent or as not matching, and bound their work by the header length.

/// Picks the best of `offers` (media types, most preferred first) for an `Accept` header value.
/// `None` header means anything is acceptable (the first offer). Returns the index of the chosen
/// offer, or `None` when nothing offered is acceptable (406).
///
/// Precedence follows RFC 9110: the most specific matching range sets an offer's quality
/// (`type/subtype` over `type/*` over `*/*`); among offers of equal quality the server's order
/// wins; `q=0` excludes.
pub fn choose_media(accept: Option<&[u8]>, offers: &[&str]) -> Option<usize> {
    let Some(accept) = accept else {
        return Some(0);
    };
    let Ok(accept) = std::str::from_utf8(accept) else {
        return None;
    };
    if accept.trim().is_empty() {
        return Some(0);
    }
    let mut best: Option<(usize, u16)> = None;
    for (i, offer) in offers.iter().enumerate() {
        let (otype, osub) = offer.split_once('/').unwrap_or((offer, ""));
        // (specificity, quality) of the most specific range matching this offer.
        let mut found: Option<(u8, u16)> = None;
        for range in accept.split(',') {
            let mut parts = range.split(';');
            let media = parts.next().unwrap_or("").trim();
            let (rtype, rsub) = match media.split_once('/') {
                Some((t, s)) => (t.trim(), s.trim()),
                None => continue,
            };
            let specificity = if rtype == "*" && rsub == "*" {
                0
            } else if rsub == "*" && rtype.eq_ignore_ascii_case(otype) {
                1
            } else if rtype.eq_ignore_ascii_case(otype) && rsub.eq_ignore_ascii_case(osub) {
                2
            } else {
                continue;
            };
            let q = parts.find_map(parse_q).unwrap_or(1000);
            if found.is_none_or(|(s, _)| specificity > s) {
                found = Some((specificity, q));
            }
        }
        if let Some((_, q)) = found {
            if q > 0 && best.is_none_or(|(_, bq)| q > bq) {
                best = Some((i, q));
            }
        }
    }
    best.map(|(i, _)| i)
}

/// Parses a `q=` parameter into thousandths; malformed values count as 0 (not acceptable).
fn parse_q(param: &str) -> Option<u16> {
    let (k, v) = param.split_once('=')?;
    if !k.trim().eq_ignore_ascii_case("q") {
        return None;
    }
    let v = v.trim();
    let (int, frac) = v.split_once('.').unwrap_or((v, ""));
    let q = match int {
        "0" => 0,
        "1" => 1000,
        _ => return Some(0),
    };
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return Some(0);
    }
    let mut thousandths = 0u16;
    for (i, b) in frac.bytes().enumerate() {
        thousandths += u16::from(b - b'0') * [100, 10, 1][i];
    }
    if q == 1000 && thousandths > 0 {
        return Some(0);
    }
    Some(q + thousandths)
}

/// Whether an `Accept-Encoding` header accepts gzip (explicitly, or via `*`), with q > 0.
pub fn accepts_gzip(accept_encoding: Option<&[u8]>) -> bool {
    let Some(Ok(v)) = accept_encoding.map(std::str::from_utf8) else {
        return false;
    };
    let mut gzip: Option<u16> = None;
    let mut star: Option<u16> = None;
    for coding in v.split(',') {
        let mut parts = coding.split(';');
        let name = parts.next().unwrap_or("").trim();
        let q = parts.find_map(parse_q).unwrap_or(1000);
        if name.eq_ignore_ascii_case("gzip") || name.eq_ignore_ascii_case("x-gzip") {
            gzip = Some(q);
        } else if name == "*" {
            star = Some(q);
        }
    }
    gzip.or(star).is_some_and(|q| q > 0)
}

/// Whether `If-None-Match` matches `etag` (weak comparison, as RFC 9110 §13.1.2 requires), so the
/// answer is 304.
pub fn none_match(if_none_match: &[u8], etag: &[u8]) -> bool {
    fn strip(t: &[u8]) -> Option<&[u8]> {
        let t = t.trim_ascii();
        let t = t.strip_prefix(b"W/").unwrap_or(t);
        (t.len() >= 2 && t[0] == b'"' && t[t.len() - 1] == b'"').then_some(t)
    }
    let Some(ours) = strip(etag) else {
        return false;
    };
    // What a cache sends back is the ETag it stored, byte for byte: answered without a split.
    if if_none_match == etag || if_none_match.trim_ascii() == b"*" {
        return true;
    }
    if_none_match
        .split(|&b| b == b',')
        .filter_map(strip)
        .any(|t| t == ours)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OFFERS: [&str; 2] = ["application/statuslist+jwt", "application/statuslist+cwt"];

    fn pick(h: &str) -> Option<usize> {
        choose_media(Some(h.as_bytes()), &OFFERS)
    }

    #[test]
    fn accept_negotiation() {
        assert_eq!(choose_media(None, &OFFERS), Some(0));
        assert_eq!(pick(""), Some(0));
        assert_eq!(pick("*/*"), Some(0));
        assert_eq!(pick("application/statuslist+cwt"), Some(1));
        assert_eq!(
            pick("application/statuslist+jwt;q=0.5, application/statuslist+cwt"),
            Some(1)
        );
        assert_eq!(pick("application/statuslist+cwt;q=0.4, */*;q=0.5"), Some(0));
        assert_eq!(
            pick("application/*;q=0.2, application/statuslist+cwt;q=0.3"),
            Some(1)
        );
        assert_eq!(pick("APPLICATION/StatusList+CWT"), Some(1));
        assert_eq!(pick("text/html"), None);
        assert_eq!(pick("application/statuslist+jwt;q=0"), None);
        assert_eq!(pick("*/*;q=0"), None);
        // A specific q=0 excludes even when */* would accept.
        assert_eq!(pick("application/statuslist+jwt;q=0, */*"), Some(1));
        assert_eq!(pick("application/json, text/plain;q=0.9"), None);
        // Malformed q counts as unacceptable, malformed ranges are skipped.
        assert_eq!(
            pick("application/statuslist+cwt;q=2, application/statuslist+jwt;q=0.1"),
            Some(0)
        );
        assert_eq!(pick("garbage, application/statuslist+cwt"), Some(1));
        assert_eq!(choose_media(Some(&[0xff, 0xfe]), &OFFERS), None);
    }

    #[test]
    fn q_values() {
        assert_eq!(parse_q("q=0.5"), Some(500));
        assert_eq!(parse_q(" Q = 1.000"), Some(1000));
        assert_eq!(parse_q("q=1.5"), Some(0));
        assert_eq!(parse_q("q=0.1234"), Some(0));
        assert_eq!(parse_q("q=abc"), Some(0));
        assert_eq!(parse_q("level=1"), None);
    }

    #[test]
    fn gzip_acceptance() {
        assert!(accepts_gzip(Some(b"gzip, deflate, br")));
        assert!(accepts_gzip(Some(b"*")));
        assert!(!accepts_gzip(Some(b"gzip;q=0, *")));
        assert!(!accepts_gzip(Some(b"br")));
        assert!(!accepts_gzip(Some(b"*;q=0")));
        assert!(!accepts_gzip(None));
        assert!(accepts_gzip(Some(b"identity;q=0.5, GZIP;q=0.1")));
    }

    #[test]
    fn etag_matching() {
        assert!(none_match(b"\"abc\"", b"\"abc\""));
        assert!(none_match(b"W/\"abc\"", b"\"abc\""));
        assert!(none_match(b"\"x\", \"abc\"", b"\"abc\""));
        assert!(none_match(b"*", b"\"abc\""));
        assert!(!none_match(b"\"abcd\"", b"\"abc\""));
        assert!(!none_match(b"abc", b"\"abc\""));
        assert!(!none_match(b"", b"\"abc\""));
        assert!(!none_match(b"\"", b"\"abc\""));
    }
}
