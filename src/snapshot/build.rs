//! Building snapshots: a pure function of (list state, signing key, parameters, clock).
//!
//! Everything expensive happens here (compression, signing, hashing), so callers run it on the
//! blocking pool. Nothing here does I/O.

use super::delta::History;
use super::{Aging, Artefacts, ListSnapshot, Lists, Representation, Snapshot};
use crate::routes::{self, PublicUrls};
use crate::status::ietf::IetfList;
use crate::status::w3c::{self, CredentialParams, Purpose};
use crate::status::{sparse, StatusList};
use crate::store::ListMeta;
use crate::token::keys::KeySet;
use crate::token::{statuslist, vc};
use crate::token::{SignError, TokenSigner};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use bytes::Bytes;
use hyper::header::HeaderValue;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Slack between the refresher deciding to re-sign and the new token being published.
const RESIGN_MARGIN: Duration = Duration::from_secs(60);

/// What every published artefact shares.
#[derive(Clone, Debug)]
pub struct BuildParams {
    /// Where the artefacts are published: their `sub`, `id` and aggregation URLs.
    pub urls: PublicUrls,
    pub issuer: String,
    pub ttl: Duration,
    pub lifetime: Duration,
    /// The refresher's tick: the longest wait between two synchronisations when nothing
    /// signals a change, so how late a re-signing due now may start.
    pub tick: Duration,
}

impl BuildParams {
    /// What every cache window keeps clear of `exp`: one [`Self::tick`] (the refresher may
    /// look that late; the request path never reads the clock), a second for caches that count
    /// `Age` in whole seconds, and a second for building and publishing a re-signed token.
    pub fn margin(&self) -> Duration {
        self.tick + Duration::from_secs(2)
    }

    /// Whether a list signed at `iat` must be re-signed at `now`: at half its lifetime, or
    /// earlier when the lifetime is so short that a token served then, cached for its whole
    /// `Cache-Control` window, would not leave every cache [`Self::margin`] before `exp`.
    pub fn needs_resign(&self, iat: u64, now: SystemTime) -> bool {
        let lifetime = self.lifetime.as_secs();
        let window: u64 = self.cache_windows().iter().sum();
        let margin = self.margin().as_secs_f64().ceil() as u64;
        let after = (lifetime / 2).min(lifetime.saturating_sub(window + margin));
        unix(now) >= iat + after
    }

    /// `Cache-Control` of list representations. `max-age` is the token `ttl`; the stale windows
    /// are sized so max-age + stale-while-revalidate + stale-if-error leaves every cache
    /// [`Self::margin`] before `exp` when the token is re-signed ([`Self::needs_resign`]): no
    /// cache serves a token past its `exp`.
    pub fn cache_control(&self) -> HeaderValue {
        cache_control(self.cache_windows())
    }

    /// `max-age`, `stale-while-revalidate` and `stale-if-error` of [`Self::cache_control`], in
    /// seconds. Production values (ttl 300 s, lifetime 24 h) give 300, 60 and about 12 h; at
    /// the shortest lifetime the configuration allows (4 × ttl) the stale windows shrink to fit
    /// the half lifetime, down to none.
    fn cache_windows(&self) -> [u64; 3] {
        let half = self.lifetime / 2;
        let ttl = self.ttl;
        let swr = ttl
            .min(Duration::from_secs(60))
            .min(half.saturating_sub(ttl + self.margin()));
        let sie = half.saturating_sub(ttl + swr + RESIGN_MARGIN.max(self.margin()));
        [ttl.as_secs(), swr.as_secs(), sie.as_secs()]
    }
}

fn cache_control([max_age, swr, sie]: [u64; 3]) -> HeaderValue {
    header(format!(
        "public, max-age={max_age}, stale-while-revalidate={swr}, stale-if-error={sie}"
    ))
}

/// `windows` (`max-age`, `stale-while-revalidate`, `stale-if-error`) cut, last first, so that a
/// response served at `now` leaves every cache at least `margin` before `exp`; `None` when no
/// more than `margin` remains.
pub fn windows_before_exp(
    windows: [u64; 3],
    exp: u64,
    now: SystemTime,
    margin: Duration,
) -> Option<[u64; 3]> {
    let remaining = (UNIX_EPOCH + Duration::from_secs(exp))
        .duration_since(now)
        .ok()?;
    if remaining <= margin {
        return None;
    }
    let mut budget = (remaining - margin).as_secs();
    Some(windows.map(|w| {
        let w = w.min(budget);
        budget -= w;
        w
    }))
}

/// `a` as it may be served from `now` on while signing is paused: with cache windows that end
/// `margin` before `exp` ([`windows_before_exp`]), or withheld once no more than `margin` is left.
/// `margin` covers the time until the refresher next looks (the request path never reads the
/// clock) plus a second for caches counting `Age` in whole seconds. `None` when `a` already
/// is as it should be. Withheld is final until re-signed: a clock stepped back (a replica
/// paused for clock skew, [`crate::clock`]) must not serve again a token it withheld.
pub fn aged(
    a: &Artefacts,
    p: &BuildParams,
    now: SystemTime,
    margin: Duration,
) -> Option<Artefacts> {
    if a.aging == Aging::Withheld {
        return None;
    }
    let normal = p.cache_windows();
    let (aging, cache_control) = match windows_before_exp(normal, a.exp, now, margin) {
        // The common case, checked on every pass for every list: nothing to format.
        Some(w) if w == normal && a.aging == Aging::Fresh => return None,
        Some(w) if w == normal => (Aging::Fresh, self::cache_control(w)),
        Some(w) => (Aging::Shortened, self::cache_control(w)),
        None => (Aging::Withheld, HeaderValue::from_static("no-store")),
    };
    if aging == a.aging && cache_control == a.cache_control {
        return None;
    }
    Some(Artefacts {
        aging,
        cache_control,
        ..a.clone()
    })
}

pub fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn header(s: String) -> HeaderValue {
    HeaderValue::try_from(s).expect("generated header values are visible ASCII")
}

/// Strong ETag: a quoted, truncated SHA-256 of the body (collisions would need 2^64 work).
pub fn etag(body: &[u8], suffix: &str) -> HeaderValue {
    let digest = Sha256::digest(body);
    header(format!(
        "\"{}{suffix}\"",
        URL_SAFE_NO_PAD.encode(&digest[..16])
    ))
}

/// The `Content-Encoding: gzip` copy of a text body. The bodies are base64url of compressed or
/// signed bytes, in which LZ77 finds almost nothing: literals under their own Huffman code are
/// as small as zlib's default level at a fraction of its cost (issue 16: zlib was a fifth of a
/// cold start), and this runs for every text body of every re-encoded list.
fn gzip(body: &[u8]) -> Bytes {
    exact(crate::status::deflate::gzip_literals(body))
}

/// `body` as `Bytes` of exactly its length. A `Vec` or `String` grown while it was written
/// holds up to twice its length in capacity, and `Bytes::from` keeps all of it for as long as
/// the body is published: about 40 % more memory for every list's bodies (issue 16, RSS).
pub fn exact(body: impl Into<Vec<u8>>) -> Bytes {
    Bytes::from(body.into().into_boxed_slice())
}

/// A representation without a gzip variant.
pub fn json_representation(body: Bytes, content_type: &'static str) -> Representation {
    Representation {
        content_type: HeaderValue::from_static(content_type),
        etag: etag(&body, ""),
        body,
        gzip: None,
        heads: Default::default(),
    }
}

/// A representation with a precompressed gzip variant (text bodies: JWS compact, JSON).
fn text_representation(body: Bytes, content_type: &'static str) -> Representation {
    let gz = gzip(&body);
    Representation {
        gzip: Some((gz, etag(&body, "-gz"))),
        ..json_representation(body, content_type)
    }
}

/// A list whose signing failed: its state published [`unsigned`], and why.
pub struct Unsigned {
    pub list: Box<ListSnapshot>,
    pub error: SignError,
}

/// A list's published state with freshly built artefacts; if signing fails, the list unsigned
/// and the error.
pub fn list_snapshot(
    meta: ListMeta,
    list: StatusList,
    key: &(impl TokenSigner + ?Sized),
    p: &BuildParams,
    now: SystemTime,
) -> Result<ListSnapshot, Unsigned> {
    match artefacts(&meta, &list, key, p, now) {
        Ok(a) => Ok(with_artefacts(meta, list, Arc::new(a))),
        Err(error) => Err(Unsigned {
            list: Box::new(unsigned(meta, list, key.kid())),
            error,
        }),
    }
}

/// A list's published state sharing already built artefacts (possibly of an older version).
pub fn with_artefacts(meta: ListMeta, list: StatusList, artefacts: Arc<Artefacts>) -> ListSnapshot {
    ListSnapshot {
        non_valid: list.count_nonzero(),
        meta,
        list,
        artefacts,
    }
}

/// A list new to this replica while signing is paused: lookups answer from its state at once,
/// its signed routes answer 503 until signing resumes and it is signed.
pub fn unsigned(meta: ListMeta, list: StatusList, kid: &str) -> ListSnapshot {
    let empty = |content_type| json_representation(Bytes::new(), content_type);
    let artefacts = Artefacts {
        // Older than any state, so the first signing pass builds it.
        version: 0,
        jwt: empty(routes::STATUSLIST_JWT),
        cwt: empty(routes::STATUSLIST_CWT),
        roaring: empty(routes::ROARING),
        w3c: [
            empty(routes::VC_JWT),
            empty(routes::VC_JWT),
            empty(routes::VC_JWT),
        ],
        sl2021: [empty(routes::VC11_JWT), empty(routes::VC11_JWT)],
        w3c_di: [
            empty(routes::DI_MEDIA_TYPE),
            empty(routes::DI_MEDIA_TYPE),
            empty(routes::DI_MEDIA_TYPE),
        ],
        sl2021_di: [
            empty(routes::DI_MEDIA_TYPE_1_1),
            empty(routes::DI_MEDIA_TYPE_1_1),
        ],
        iat: 0,
        exp: 0,
        kid: kid.to_owned(),
        last_modified: header(httpdate::fmt_http_date(UNIX_EPOCH)),
        cache_control: HeaderValue::from_static("no-store"),
        aging: Aging::Withheld,
        surrogate_key: header(format!("list-{}", meta.id)),
        deltas: Arc::new(super::delta::Deltas::none(0)),
    };
    with_artefacts(meta, list, Arc::new(artefacts))
}

/// Encodes, signs and hashes every representation of one list state. Fails, and builds
/// nothing, if any signature fails. Its only signed delta is the empty one from its own version
/// (see [`artefacts_with_history`]).
pub fn artefacts(
    meta: &ListMeta,
    list: &StatusList,
    key: &(impl TokenSigner + ?Sized),
    p: &BuildParams,
    now: SystemTime,
) -> Result<Artefacts, SignError> {
    artefacts_with_history(meta, list, &History::default(), key, p, now)
}

/// [`artefacts`], with the signed deltas from every version of `history` (the list's recent
/// changes, ending at `meta.version`) to this state.
pub fn artefacts_with_history(
    meta: &ListMeta,
    list: &StatusList,
    history: &History,
    key: &(impl TokenSigner + ?Sized),
    p: &BuildParams,
    now: SystemTime,
) -> Result<Artefacts, SignError> {
    let iat = unix(now);
    let exp = iat + p.lifetime.as_secs();
    // The W3C `message` view is the IETF array in the other bit order: one DEFLATE parse for
    // both (issue 16: the parse is most of a list's compression).
    let (status_list, message) =
        IetfList::encode_with_message_view(list, Some(p.urls.aggregation()));
    let claims = statuslist::StatusListClaims {
        sub: p.urls.list(&meta.id),
        iss: Some(p.issuer.clone()),
        iat,
        exp: Some(exp),
        ttl: Some(p.ttl.as_secs()),
        status_list,
    };
    let jwt = statuslist::sign_jwt(&claims, key)?;
    let cwt = statuslist::sign_cwt(&claims, key)?;
    let deltas = super::delta::sign_deltas(
        &claims.sub,
        list,
        meta.version,
        history,
        claims.status_list.lst.len(),
        key,
        p,
        iat,
        exp,
    )?;
    let signing = Signing {
        key,
        p,
        now,
        iat,
        exp,
        created: humantime::format_rfc3339_seconds(now).to_string(),
    };
    let mut bitstrings: Vec<(Purpose, String)> = message
        .and_then(|m| {
            m.strip_prefix('u')
                .map(|b| (Purpose::Message, b.to_owned()))
        })
        .into_iter()
        .collect();
    let (w3c, w3c_di) = signing.credentials(
        Format::Bitstring,
        Purpose::PUBLISHED,
        meta,
        list,
        &mut bitstrings,
    )?;
    let (sl2021, sl2021_di) = signing.credentials(
        Format::StatusList2021,
        crate::status::sl2021::PURPOSES,
        meta,
        list,
        &mut bitstrings,
    )?;
    Ok(Artefacts {
        version: meta.version,
        surrogate_key: header(format!("list-{}", meta.id)),
        last_modified: header(httpdate::fmt_http_date(
            UNIX_EPOCH + Duration::from_secs(iat),
        )),
        cache_control: p.cache_control(),
        aging: Aging::Fresh,
        jwt: text_representation(exact(jwt), routes::STATUSLIST_JWT),
        cwt: json_representation(exact(cwt), routes::STATUSLIST_CWT),
        roaring: json_representation(exact(sparse::encode(list)), routes::ROARING),
        w3c,
        sl2021,
        w3c_di,
        sl2021_di,
        iat,
        exp,
        kid: key.kid().to_owned(),
        deltas: Arc::new(deltas),
    })
}

/// The two W3C credential formats every list is published in, each as a VC-JWT and with a Data
/// Integrity proof: the Bitstring Status List (VC Data Model 2.0) and Status List 2021 (1.1).
#[derive(Clone, Copy)]
enum Format {
    Bitstring,
    StatusList2021,
}

impl Format {
    fn url(self, urls: &PublicUrls, id: &str, purpose: Purpose) -> String {
        match self {
            Format::Bitstring => urls.credential(id, purpose),
            Format::StatusList2021 => urls.sl2021(id, purpose),
        }
    }

    /// The unsigned credential for `purpose`; `None` where the list is too short for the format.
    /// `bitstrings` holds the GZIP bitstrings (base64url, no multibase prefix) of the views
    /// already compressed for this list state, which a form takes instead of compressing again:
    /// the `message` view comes with the IETF form, and the Bitstring form leaves its one-bit
    /// views for the Status List 2021 form, whose bitstrings are the same.
    fn credential(
        self,
        list: &StatusList,
        purpose: Purpose,
        params: &CredentialParams<'_>,
        bitstrings: &mut Vec<(Purpose, String)>,
    ) -> Option<serde_json::Value> {
        let shared = bitstrings
            .iter()
            .position(|(p, _)| *p == purpose)
            .map(|i| bitstrings.swap_remove(i).1);
        match self {
            Format::Bitstring => {
                let encoded = shared.map(|b| ["u", &b].concat());
                let vc = w3c::credential_with_list(list, purpose, params, encoded).ok()?;
                let subject = &vc["credentialSubject"];
                if subject["statusSize"] == 1 {
                    if let Some(b) = subject["encodedList"]
                        .as_str()
                        .and_then(|e| e.strip_prefix('u'))
                    {
                        bitstrings.push((purpose, b.to_owned()));
                    }
                }
                Some(vc)
            }
            Format::StatusList2021 => {
                crate::status::sl2021::credential_with_list(list, purpose, params, shared).ok()
            }
        }
    }

    fn ttl_ms(self, ttl: Duration) -> Option<u64> {
        match self {
            Format::Bitstring => Some(ttl.as_millis() as u64),
            // `ttl` has no place in the 2021 model.
            Format::StatusList2021 => None,
        }
    }

    fn jwt_media_type(self) -> &'static str {
        match self {
            Format::Bitstring => routes::VC_JWT,
            Format::StatusList2021 => routes::VC11_JWT,
        }
    }

    fn di_media_type(self) -> &'static str {
        match self {
            Format::Bitstring => routes::DI_MEDIA_TYPE,
            Format::StatusList2021 => routes::DI_MEDIA_TYPE_1_1,
        }
    }
}

/// What signs one list state's credentials: the key, the parameters and the clock of the build.
struct Signing<'a, K: TokenSigner + ?Sized> {
    key: &'a K,
    p: &'a BuildParams,
    now: SystemTime,
    iat: u64,
    exp: u64,
    /// `now` in RFC 3339, the Data Integrity proofs' `created`.
    created: String,
}

impl<K: TokenSigner + ?Sized> Signing<'_, K> {
    /// The credential of `format` for each of `purposes`, as a VC-JWT and with a Data Integrity
    /// proof. Lists shorter than the W3C minimum publish no W3C view; an empty body here is
    /// answered 404 by the HTTP layer.
    fn credentials<const N: usize>(
        &self,
        format: Format,
        purposes: [Purpose; N],
        meta: &ListMeta,
        list: &StatusList,
        bitstrings: &mut Vec<(Purpose, String)>,
    ) -> Result<([Representation; N], [Representation; N]), SignError> {
        let (p, key) = (self.p, self.key);
        let mut jwts = Vec::with_capacity(N);
        let mut dis = Vec::with_capacity(N);
        for purpose in purposes {
            let id = format.url(&p.urls, &meta.id, purpose);
            let params = CredentialParams {
                id: &id,
                issuer: &p.issuer,
                valid_from: self.now,
                valid_until: Some(UNIX_EPOCH + Duration::from_secs(self.exp)),
                ttl_ms: format.ttl_ms(p.ttl),
            };
            match format.credential(list, purpose, &params, bitstrings) {
                Some(vc_json) => {
                    let jwt = match format {
                        Format::Bitstring => vc::sign_vc_jwt(&vc_json, key)?,
                        Format::StatusList2021 => crate::token::vc11::sign_vc_jwt_1_1(
                            &vc_json,
                            self.iat,
                            Some(self.exp),
                            key,
                        )?,
                    };
                    jwts.push(text_representation(exact(jwt), format.jwt_media_type()));
                    let vc_json = match format {
                        Format::Bitstring => {
                            crate::w3c_proof::with_issuer_dependent_terms(&vc_json)
                        }
                        Format::StatusList2021 => vc_json,
                    };
                    dis.push(data_integrity(
                        &vc_json,
                        key,
                        p,
                        &self.created,
                        format.di_media_type(),
                    )?);
                }
                None => {
                    jwts.push(json_representation(Bytes::new(), format.jwt_media_type()));
                    dis.push(json_representation(Bytes::new(), format.di_media_type()));
                }
            }
        }
        let one_per_purpose = |_| unreachable!("one representation per purpose");
        Ok((
            jwts.try_into().unwrap_or_else(one_per_purpose),
            dis.try_into().unwrap_or_else(one_per_purpose),
        ))
    }
}

/// `credential` secured with a Data Integrity proof by `key` (verification method
/// `{issuer}#{kid}`); an empty body (answered 406) when the key's algorithm has no cryptosuite.
/// A canonicalisation failure fails the signing pass like a signature failure: it is a defect
/// in statusd's own documents, to be seen, not a proof silently left out.
fn data_integrity(
    credential: &serde_json::Value,
    key: &(impl TokenSigner + ?Sized),
    p: &BuildParams,
    created: &str,
    media_type: &'static str,
) -> Result<Representation, SignError> {
    use crate::w3c_proof::{add_proof, Cryptosuite, ProofError};
    if Cryptosuite::for_algorithm(key.algorithm()).is_none() {
        return Ok(json_representation(Bytes::new(), media_type));
    }
    match add_proof(credential, key, &p.issuer, created) {
        Ok(secured) => Ok(text_representation(exact(secured.to_string()), media_type)),
        Err(ProofError::Sign(e)) => Err(e),
        Err(e) => Err(SignError(format!("Data Integrity proof: {e}"))),
    }
}

/// The issuer's controller document: the published keys as `Multikey` assertion methods.
fn controller(published_keys: &KeySet, p: &BuildParams) -> Representation {
    let doc = crate::w3c_proof::controller_document(&p.issuer, published_keys);
    json_representation(
        doc.to_string().into(),
        crate::w3c_proof::CONTROLLER_MEDIA_TYPE,
    )
}

/// Assembles a snapshot from per-list parts (shared by `Arc` with the previous snapshot).
pub fn snapshot(
    generation: u64,
    lists: Lists,
    published_keys: &KeySet,
    p: &BuildParams,
    now: SystemTime,
) -> Snapshot {
    let mut urls: Vec<String> = lists.keys().map(|id| p.urls.list(id)).collect();
    urls.sort();
    let aggregation = serde_json::json!({ "status_lists": urls });
    Snapshot {
        generation,
        published_at: now,
        lists,
        retired: Arc::default(),
        aggregation: json_representation(aggregation.to_string().into(), routes::JSON),
        jwks: json_representation(published_keys.to_jwks().to_string().into(), routes::JWK_SET),
        controller: controller(published_keys, p),
    }
}

/// The next snapshot after `previous`: the aggregation document and the JWKS are reused when
/// the set of lists is the same (and the JWKS when the published keys are the same too), so a
/// publication that only changes list states hashes nothing but those lists.
/// `keys_unchanged`: the caller knows `published_keys` to be those `previous`'s JWKS was built
/// from, so it is not serialised again to be compared.
pub fn next_snapshot(
    previous: &Snapshot,
    lists: Lists,
    published_keys: &KeySet,
    keys_unchanged: bool,
    p: &BuildParams,
    now: SystemTime,
) -> Snapshot {
    let same_ids = previous.generation > 0 && lists.same_ids(&previous.lists);
    if !same_ids {
        return snapshot(previous.generation + 1, lists, published_keys, p, now);
    }
    let jwks = (!keys_unchanged)
        .then(|| published_keys.to_jwks().to_string())
        .filter(|jwks| previous.jwks.body != jwks.as_bytes());
    Snapshot {
        generation: previous.generation + 1,
        published_at: now,
        lists,
        retired: previous.retired.clone(),
        aggregation: previous.aggregation.clone(),
        controller: match jwks {
            None => previous.controller.clone(),
            Some(_) => controller(published_keys, p),
        },
        jwks: match jwks {
            None => previous.jwks.clone(),
            Some(jwks) => json_representation(jwks.into(), routes::JWK_SET),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::{Bits, Status};
    use crate::token::keys::Algorithm;
    use crate::token::keys::SigningKey;

    /// List "7" at version 3: 2^17 two-bit entries, index 7 suspended (large enough for every
    /// W3C view).
    fn list_7() -> (ListMeta, StatusList) {
        let list = StatusList::from_entries(Bits::Two, 1 << 17, [(7, Status::SUSPENDED)]).unwrap();
        let meta = ListMeta {
            id: "7".into(),
            bits: 2,
            size: 1 << 17,
            version: 3,
            ..Default::default()
        };
        (meta, list)
    }

    fn params(ttl: u64, lifetime: u64) -> BuildParams {
        BuildParams {
            urls: PublicUrls::new("https://status.example"),
            issuer: "https://issuer.example".into(),
            ttl: Duration::from_secs(ttl),
            lifetime: Duration::from_secs(lifetime),
            tick: Duration::from_secs(1),
        }
    }

    /// Seconds after `iat` at which [`BuildParams::needs_resign`] turns true.
    fn resign_after(p: &BuildParams) -> u64 {
        (0..=p.lifetime.as_secs())
            .find(|&t| p.needs_resign(1000, UNIX_EPOCH + Duration::from_secs(1000 + t)))
            .expect("due by exp")
    }

    #[test]
    fn cache_windows_end_before_exp() {
        let p = params(300, 86_400);
        assert_eq!(p.cache_windows(), [300, 60, 43_200 - 300 - 60 - 60]);
        assert_eq!(
            p.cache_control().to_str().unwrap(),
            "public, max-age=300, stale-while-revalidate=60, stale-if-error=42780"
        );
        assert_eq!(resign_after(&p), 43_200);
        // At the shortest lifetime the configuration allows (4 x ttl) the stale windows give
        // way, and a one-second ttl is re-signed at every look.
        assert_eq!(params(1, 4).cache_windows(), [1, 0, 0]);
        assert_eq!(resign_after(&params(1, 4)), 0);
        assert_eq!(params(10, 40).cache_windows(), [10, 7, 0]);
        assert_eq!(resign_after(&params(10, 40)), 20);

        // For every configuration: a token served until the last moment before its re-signing
        // is published (up to one tick late), then kept by a cache for its whole window, still
        // leaves that cache a margin before exp.
        for tick_ms in [50, 1_000, 2_000] {
            for ttl in [1, 2, 5, 10, 60, 300, 3_600] {
                for lifetime in [4 * ttl, 4 * ttl + 1, 10 * ttl, 86_400, 30 * 86_400] {
                    let mut p = params(ttl, lifetime);
                    p.tick = Duration::from_millis(tick_ms);
                    if Duration::from_secs(lifetime) < Duration::from_secs(ttl) + p.margin() {
                        // Too short for this tick to keep a margin: re-signed at every look,
                        // as close as it gets.
                        assert_eq!(resign_after(&p), 0, "ttl {ttl} lifetime {lifetime}");
                        continue;
                    }
                    let [max_age, swr, sie] = p.cache_windows();
                    assert_eq!(max_age, ttl, "max-age is the ttl");
                    // Served until one tick and a second of building after the re-signing is
                    // due, then cached for the whole window and a second of Age rounding.
                    let served_until =
                        Duration::from_secs(resign_after(&p)) + p.tick + Duration::from_secs(1);
                    let cached_until = served_until
                        + Duration::from_secs(max_age + swr + sie)
                        + Duration::from_secs(1);
                    assert!(
                        cached_until <= Duration::from_secs(lifetime),
                        "ttl {ttl} lifetime {lifetime} tick {tick_ms} ms: {:?}",
                        p.cache_windows()
                    );
                }
            }
        }
    }

    #[test]
    fn shortened_windows_cut_stale_if_error_first() {
        let at = |secs: f64| UNIX_EPOCH + Duration::from_secs_f64(secs);
        let margin = Duration::from_secs(2);
        let normal = [300, 60, 43_000];
        let exp = 100_000;
        assert_eq!(
            windows_before_exp(normal, exp, at(10_000.0), margin),
            Some(normal)
        );
        assert_eq!(
            windows_before_exp(normal, exp, at(99_598.0), margin),
            Some([300, 60, 40])
        );
        assert_eq!(
            windows_before_exp(normal, exp, at(99_700.5), margin),
            Some([297, 0, 0])
        );
        assert_eq!(
            windows_before_exp(normal, exp, at(99_997.9), margin),
            Some([0, 0, 0])
        );
        assert_eq!(windows_before_exp(normal, exp, at(99_998.0), margin), None);
        assert_eq!(windows_before_exp(normal, exp, at(100_500.0), margin), None);
    }

    #[test]
    fn shortened_windows_never_reach_past_exp() {
        let exp = 1_000u64;
        for margin_ms in [0, 1_050, 2_000, 11_000] {
            let margin = Duration::from_millis(margin_ms);
            for normal in [[300, 60, 43_000], [1, 1, 0], [5, 0, 7]] {
                for tenths in 0..12_000u64 {
                    let now = UNIX_EPOCH + Duration::from_millis(tenths * 100);
                    let remaining = Duration::from_secs(exp)
                        .saturating_sub(Duration::from_millis(tenths * 100));
                    let Some(w) = windows_before_exp(normal, exp, now, margin) else {
                        assert!(remaining <= margin, "withheld with {remaining:?} left");
                        continue;
                    };
                    let window = Duration::from_secs(w.iter().sum());
                    assert!(
                        now + window + margin <= UNIX_EPOCH + Duration::from_secs(exp),
                        "{w:?} at {now:?} with margin {margin:?}"
                    );
                    assert!(w.iter().zip(normal).all(|(w, n)| *w <= n));
                    // Nothing is cut that the time left would allow.
                    let sum: u64 = w.iter().sum();
                    assert!(w == normal || sum == (remaining - margin).as_secs());
                }
            }
        }
    }

    #[test]
    fn aged_artefacts_are_shortened_then_withheld() {
        let key = SigningKey::generate(Algorithm::Es256);
        let list = StatusList::new(Bits::One, 1024).unwrap();
        let meta = ListMeta {
            id: "1".into(),
            bits: 1,
            size: 1024,
            version: 1,
            ..Default::default()
        };
        let p = params(300, 86_400);
        let iat = 1_800_000_000;
        let a = artefacts(
            &meta,
            &list,
            &key,
            &p,
            UNIX_EPOCH + Duration::from_secs(iat),
        )
        .unwrap();
        let at = |secs: u64| UNIX_EPOCH + Duration::from_secs(iat + secs);
        let margin = Duration::from_secs(2);
        // At the re-signing point the normal windows still fit.
        assert!(aged(&a, &p, at(43_200), margin).is_none());
        let short = aged(&a, &p, at(86_000), margin).unwrap();
        assert_eq!(short.aging, Aging::Shortened);
        assert_eq!(
            short.cache_control,
            "public, max-age=300, stale-while-revalidate=60, stale-if-error=38"
        );
        assert_eq!((short.iat, &short.jwt.body), (a.iat, &a.jwt.body));
        assert!(aged(&short, &p, at(86_000), margin).is_none());
        let withheld = aged(&short, &p, at(86_399), margin).unwrap();
        assert_eq!(withheld.aging, Aging::Withheld);
        assert!(aged(&withheld, &p, at(86_500), margin).is_none());
        // The clock stepped back two minutes: still withheld.
        let stepped_back = UNIX_EPOCH + Duration::from_secs(iat + 86_399 - 120);
        assert!(aged(&withheld, &p, stepped_back, margin).is_none());
        let placeholder = unsigned(meta, list, key.kid());
        assert_eq!(placeholder.artefacts.aging, Aging::Withheld);
        assert!(aged(&placeholder.artefacts, &p, at(0), margin).is_none());
    }

    #[test]
    fn list_snapshot_signs_every_representation() {
        let key = SigningKey::generate(Algorithm::Es256);
        let keys = KeySet::new(vec![key.verifying_key()]);
        let (meta, list) = list_7();
        let p = params(300, 86_400);
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let s = list_snapshot(meta, list.clone(), &key, &p, now)
            .ok()
            .unwrap();
        let a = &s.artefacts;
        let claims =
            statuslist::verify_jwt(std::str::from_utf8(&a.jwt.body).unwrap(), &keys).unwrap();
        assert_eq!(claims.sub, "https://status.example/statuslists/7");
        assert_eq!(
            claims.status_list.aggregation_uri.as_deref(),
            Some("https://status.example/statuslists")
        );
        assert_eq!(claims.status_list.decode().unwrap(), list);
        let cwt = statuslist::verify_cwt(&a.cwt.body, &keys).unwrap();
        assert_eq!(cwt.exp, Some(1_800_000_000 + 86_400));
        let vc = vc::verify_vc_jwt(std::str::from_utf8(&a.w3c[1].body).unwrap(), &keys).unwrap();
        let parsed = w3c::parse_credential(&vc, w3c::MIN_ENTRIES).unwrap();
        assert_eq!(parsed.purposes, vec!["suspension"]);
        assert_eq!(parsed.list.get(7).unwrap(), Status(1));
        assert_eq!(sparse::decode(&a.roaring.body).unwrap(), list);
        assert_ne!(a.jwt.etag, a.jwt.gzip.as_ref().unwrap().1);
        assert_eq!(a.last_modified, "Fri, 15 Jan 2027 08:00:00 GMT");
    }

    /// Issue 16: the Status List 2021 credentials take the Bitstring credentials' compressed
    /// views instead of compressing them again; the bitstrings are exactly what the 2021 form
    /// encodes on its own, and the Bitstring form's message view (two bits) is not one of them.
    #[test]
    fn status_list_2021_shares_the_bitstring_forms_compressed_views() {
        let (meta, mut list) = list_7();
        list.set(9, Status::INVALID).unwrap();
        let key = SigningKey::generate(Algorithm::Es256);
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let a = artefacts(&meta, &list, &key, &params(300, 86_400), now).unwrap();
        let encoded = |body: &Bytes| -> String {
            let doc: serde_json::Value = serde_json::from_slice(body).unwrap();
            doc["credentialSubject"]["encodedList"]
                .as_str()
                .unwrap()
                .to_owned()
        };
        for (i, purpose) in crate::status::sl2021::PURPOSES.into_iter().enumerate() {
            let alone = crate::status::sl2021::encode_list(
                list.size(),
                w3c::view(&list, purpose).unwrap().entries,
            );
            assert_eq!(encoded(&a.sl2021_di[i].body), alone, "{purpose:?}");
            let bitstring = a.w3c_di(purpose).unwrap();
            assert_eq!(encoded(&bitstring.body), format!("u{alone}"), "{purpose:?}");
        }
        assert_eq!(
            crate::status::sl2021::encode_list(list.size(), [(7, 1)]),
            encoded(&a.sl2021_di[1].body),
        );
    }

    /// Issue 16: the `message` view's bitstring comes from the IETF form's DEFLATE parse; it
    /// still decodes to the list, MSB-first, whatever the list's width.
    #[test]
    fn message_view_shares_the_ietf_parse() {
        let key = SigningKey::generate(Algorithm::Es256);
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        for bits in [Bits::One, Bits::Two, Bits::Four, Bits::Eight] {
            let size = 1 << 17;
            let max = u32::from(bits.max_value());
            let entries = (0..size).step_by(97).map(|i| (i, (i % max + 1) as u8));
            let list = StatusList::from_sorted_nonzero(bits, size, entries).unwrap();
            let meta = ListMeta {
                id: "7".into(),
                bits: bits.get(),
                size,
                version: 3,
                ..Default::default()
            };
            let a = artefacts(&meta, &list, &key, &params(300, 86_400), now).unwrap();
            let doc: serde_json::Value =
                serde_json::from_slice(&a.w3c_di(Purpose::Message).unwrap().body).unwrap();
            let parsed = w3c::parse_credential(&doc, w3c::MIN_ENTRIES).unwrap();
            assert_eq!(parsed.status_size, bits);
            assert_eq!(parsed.list, list, "{bits:?}");
            let keys = KeySet::new(vec![key.verifying_key()]);
            let jwt = std::str::from_utf8(&a.jwt.body).unwrap();
            let claims = statuslist::verify_jwt(jwt, &keys).unwrap();
            assert_eq!(claims.status_list.decode().unwrap(), list, "{bits:?}");
        }
    }

    /// Issue 15 item 4: the Data Integrity forms follow the key's cryptosuite, carry the same
    /// list as the JWT forms and are built here, with them; a P-384 key builds none.
    #[test]
    fn data_integrity_forms_follow_the_signing_keys_cryptosuite() {
        let (meta, list) = list_7();
        let p = params(300, 86_400);
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        for (alg, suite) in [
            (Algorithm::Es256, Some("ecdsa-rdfc-2019")),
            (Algorithm::EdDsa, Some("eddsa-rdfc-2022")),
            (Algorithm::Es384, None),
        ] {
            let key = SigningKey::generate(alg);
            let a = artefacts(&meta, &list, &key, &p, now).unwrap();
            for r in a.w3c_di.iter().chain(&a.sl2021_di) {
                assert_eq!(r.body.is_empty(), suite.is_none(), "{alg:?}");
            }
            let Some(suite) = suite else { continue };
            let secured: serde_json::Value = serde_json::from_slice(&a.w3c_di[1].body).unwrap();
            assert_eq!(secured["proof"]["cryptosuite"], suite);
            assert_eq!(secured["proof"]["created"], "2027-01-15T08:00:00Z");
            crate::w3c_proof::verify_proof(&secured, &key.verifying_key()).unwrap();
            let parsed = w3c::parse_credential(&secured, w3c::MIN_ENTRIES).unwrap();
            assert_eq!(parsed.purposes, vec!["suspension"]);
            assert_eq!(parsed.list.get(7).unwrap(), Status(1));
            let sl: serde_json::Value = serde_json::from_slice(&a.sl2021_di[1].body).unwrap();
            crate::w3c_proof::verify_proof(&sl, &key.verifying_key()).unwrap();
            assert_eq!(a.sl2021_di[0].content_type, routes::DI_MEDIA_TYPE_1_1);
        }
    }
}
