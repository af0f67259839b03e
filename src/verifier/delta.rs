//! A relying party that mirrors whole lists and follows them by signed deltas (statusd's
//! extension, [`crate::delta`]), for verifiers that check many credentials against many lists.
//!
//! A [`Mirror`] holds one list: fetched whole and verified once, then brought forward with
//! `GET {list}/deltas/{version}`: each delta's signature, `typ`, `sub`, time and versions are
//! checked, it is applied to a copy, and the result must match the delta's signed SHA-256 before
//! it replaces the held list. The held state is therefore always a list the issuer signed, bit
//! for bit. When the server answers that no delta is available (410), or does not say which
//! version a list is at, the mirror fetches the list whole (conditionally, with its ETag). A
//! delta that fails any check is refused and the held list kept; the caller decides whether to
//! fetch the whole list ([`Mirror::refetch`]).
//!
//! Like the rest of [`crate::verifier`], this never reaches into the server.

use super::fetch::{self, Answer, FetchError};
use crate::delta::{self, DeltaClaims, DeltaError};
use crate::routes::STATUSLIST_JWT;
use crate::routes::{DELTAS, STATUSLIST_CWT, STATUSLIST_DELTA_CWT, STATUSLIST_DELTA_JWT};
use crate::status::ietf::IetfError;
use crate::status::StatusList;
use crate::tls::ClientTls;
use crate::token::keys::KeySet;
use crate::token::statuslist::{self, StatusListClaims};
use crate::token::TokenError;
use std::time::Duration;

/// Which token form a mirror fetches (lists and deltas alike).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Form {
    Jwt,
    Cwt,
}

impl Form {
    fn list_accept(self) -> &'static str {
        match self {
            Form::Jwt => STATUSLIST_JWT,
            Form::Cwt => STATUSLIST_CWT,
        }
    }

    fn delta_accept(self) -> &'static str {
        match self {
            Form::Jwt => STATUSLIST_DELTA_JWT,
            Form::Cwt => STATUSLIST_DELTA_CWT,
        }
    }
}

/// How a mirror fetches and trusts.
#[derive(Clone, Debug)]
pub struct MirrorOptions {
    /// The keys lists and deltas must be signed with.
    pub keys: KeySet,
    pub form: Form,
    /// Time limit of each request.
    pub timeout: Duration,
    pub tls: ClientTls,
    /// Unix seconds to check validity at; `None` is the system clock.
    pub now: Option<u64>,
}

/// Why a mirror could not be brought up to date. The held list is unchanged.
#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    #[error("{0}")]
    Fetch(#[from] FetchError),
    #[error("{url}: {error}")]
    Token { url: String, error: TokenError },
    #[error("{url}: {error}")]
    List { url: String, error: IetfError },
    #[error("{url}: refused: {error}")]
    Delta { url: String, error: DeltaError },
}

/// What one [`Mirror::sync`] did, and the bytes it cost.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Synced {
    /// Nothing changed (a 304).
    Unchanged { bytes: usize },
    /// Brought from `from` to `to` by a delta.
    Delta { from: u64, to: u64, bytes: usize },
    /// Fetched whole (no delta was available, or the server names no versions).
    Full { version: Option<u64>, bytes: usize },
}

impl Synced {
    /// Bytes received, as HTTP/1.1 frames them.
    pub fn bytes(self) -> usize {
        match self {
            Synced::Unchanged { bytes }
            | Synced::Delta { bytes, .. }
            | Synced::Full { bytes, .. } => bytes,
        }
    }
}

/// One list, mirrored.
#[derive(Clone, Debug)]
pub struct Mirror {
    /// The list's URL, which is also the `sub` its tokens and deltas must carry.
    url: String,
    list: StatusList,
    /// The version held, if the server names versions.
    version: Option<u64>,
    /// `iat` and `exp` of the last token or delta applied.
    iat: u64,
    exp: Option<u64>,
    /// ETag of the last answer (list or delta) that gave the held state.
    etag: Option<String>,
}

fn now(opts: &MirrorOptions) -> u64 {
    opts.now.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    })
}

impl Mirror {
    /// Fetches and verifies the list at `url`.
    pub async fn fetch(url: &str, opts: &MirrorOptions) -> Result<(Mirror, usize), MirrorError> {
        let a = fetch::get(url, opts.form.list_accept(), None, opts.timeout, &opts.tls).await?;
        let bytes = a.wire_bytes;
        Ok((Mirror::from_list_answer(url, a, opts)?, bytes))
    }

    fn from_list_answer(url: &str, a: Answer, opts: &MirrorOptions) -> Result<Mirror, MirrorError> {
        let token = |error| MirrorError::Token {
            url: url.to_owned(),
            error,
        };
        let claims: StatusListClaims = match opts.form {
            Form::Cwt => statuslist::verify_cwt(&a.body, &opts.keys),
            Form::Jwt => statuslist::verify_jwt(&String::from_utf8_lossy(&a.body), &opts.keys),
        }
        .map_err(token)?;
        if claims.sub != url {
            return Err(token(TokenError::InvalidClaim {
                claim: "sub",
                reason: format!("{} is not the list fetched", claims.sub),
            }));
        }
        statuslist::check_time(&claims, now(opts)).map_err(token)?;
        let list = claims
            .status_list
            .decode()
            .map_err(|error| MirrorError::List {
                url: url.to_owned(),
                error,
            })?;
        Ok(Mirror {
            url: url.to_owned(),
            list,
            version: a.list_version,
            iat: claims.iat,
            exp: claims.exp,
            etag: a.etag,
        })
    }

    /// The list held.
    pub fn list(&self) -> &StatusList {
        &self.list
    }

    /// The version held (`None` if the server names no versions).
    pub fn version(&self) -> Option<u64> {
        self.version
    }

    /// `iat` of the last token or delta applied.
    pub fn iat(&self) -> u64 {
        self.iat
    }

    /// `exp` of the last token or delta applied: the held list is trustworthy until then.
    pub fn exp(&self) -> Option<u64> {
        self.exp
    }

    /// The URL of the delta from the version held.
    pub fn delta_url(&self) -> Option<String> {
        self.version.map(|v| format!("{}/{DELTAS}/{v}", self.url))
    }

    /// Brings the list up to date: by a delta from the version held, or whole when no delta is
    /// available. A refused delta leaves the held list as it was.
    pub async fn sync(&mut self, opts: &MirrorOptions) -> Result<Synced, MirrorError> {
        let (Some(from), Some(url)) = (self.version, self.delta_url()) else {
            return self.refetch(opts, 0).await;
        };
        let a = fetch::get_any(
            &url,
            opts.form.delta_accept(),
            self.etag.as_deref(),
            opts.timeout,
            &opts.tls,
        )
        .await?;
        let bytes = a.wire_bytes;
        if a.not_modified {
            return Ok(Synced::Unchanged { bytes });
        }
        match a.status {
            200 => {}
            // No delta from here (or the list is gone): the list itself says what holds.
            410 => return self.refetch(opts, bytes).await,
            status => {
                return Err(FetchError::Status {
                    url,
                    status,
                    body: String::from_utf8_lossy(&a.body[..a.body.len().min(300)]).into_owned(),
                }
                .into())
            }
        }
        let to = self
            .apply_delta(&a.body, opts)
            .map_err(|error| MirrorError::Delta { url, error })?;
        self.etag = a.etag;
        Ok(Synced::Delta { from, to, bytes })
    }

    /// Verifies a delta (in [`MirrorOptions::form`]) however it was obtained, and applies it:
    /// the held list becomes the delta's target, checked bit for bit against its signed digest.
    /// Returns the version reached. A refused delta leaves the held list as it was.
    pub fn apply_delta(&mut self, body: &[u8], opts: &MirrorOptions) -> Result<u64, DeltaError> {
        let held = self.version.ok_or(DeltaError::Malformed(
            "the server named no version for the list held".into(),
        ))?;
        let (claims, list) = self.check_delta(body, held, opts)?;
        self.list = list;
        self.version = Some(claims.delta.to);
        self.iat = claims.iat;
        self.exp = claims.exp;
        Ok(claims.delta.to)
    }

    /// Verifies a delta body and applies it to a copy of the held list.
    fn check_delta(
        &self,
        body: &[u8],
        from: u64,
        opts: &MirrorOptions,
    ) -> Result<(DeltaClaims, StatusList), DeltaError> {
        let claims = match opts.form {
            Form::Cwt => delta::verify_cwt(body, &opts.keys),
            Form::Jwt => delta::verify_jwt(&String::from_utf8_lossy(body), &opts.keys),
        }?;
        if claims.sub != self.url {
            return Err(DeltaError::WrongList {
                expected: self.url.clone(),
                found: claims.sub,
            });
        }
        claims.check_time(now(opts))?;
        let list = claims.delta.apply(&self.list, from)?;
        Ok((claims, list))
    }

    /// Fetches the list whole (conditionally, when the last answer was the list's), after
    /// `spent` bytes on an unavailable delta.
    pub async fn refetch(
        &mut self,
        opts: &MirrorOptions,
        spent: usize,
    ) -> Result<Synced, MirrorError> {
        let a = fetch::get(
            &self.url,
            opts.form.list_accept(),
            self.etag.as_deref(),
            opts.timeout,
            &opts.tls,
        )
        .await?;
        let bytes = spent + a.wire_bytes;
        if a.not_modified {
            return Ok(Synced::Unchanged { bytes });
        }
        *self = Mirror::from_list_answer(&self.url, a, opts)?;
        Ok(Synced::Full {
            version: self.version,
            bytes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delta::Delta;
    use crate::status::{Bits, Status};
    use crate::token::keys::{Algorithm, SigningKey};

    const URL: &str = "https://status.example/statuslists/7";

    fn list(entries: &[(u64, u8)]) -> StatusList {
        StatusList::from_entries(
            Bits::Two,
            1 << 12,
            entries.iter().map(|&(i, v)| (i, Status(v))),
        )
        .unwrap()
    }

    fn setup() -> (SigningKey, MirrorOptions, Mirror) {
        let key = SigningKey::generate(Algorithm::Es256);
        let opts = MirrorOptions {
            keys: KeySet::new(vec![key.verifying_key()]),
            form: Form::Jwt,
            timeout: Duration::from_secs(5),
            tls: ClientTls::default(),
            now: Some(1_800_000_100),
        };
        let mirror = Mirror {
            url: URL.into(),
            list: list(&[(1, 1)]),
            version: Some(4),
            iat: 1_800_000_000,
            exp: Some(1_800_086_400),
            etag: None,
        };
        (key, opts, mirror)
    }

    fn claims(delta: Delta) -> DeltaClaims {
        DeltaClaims {
            sub: URL.into(),
            iss: None,
            iat: 1_800_000_050,
            exp: Some(1_800_086_450),
            ttl: Some(300),
            delta,
        }
    }

    #[test]
    fn a_signed_delta_is_applied_and_anything_else_refused() {
        let (key, mut opts, mirror) = setup();
        let target = list(&[(1, 2), (9, 1)]);
        let changed = mirror.list.changed_indices(&target).unwrap();
        let good = claims(Delta::build(&target, 3, 6, changed.iter()));
        for form in [Form::Jwt, Form::Cwt] {
            opts.form = form;
            let body = match form {
                Form::Jwt => delta::sign_jwt(&good, &key).unwrap().into_bytes(),
                Form::Cwt => delta::sign_cwt(&good, &key).unwrap(),
            };
            let (c, l) = mirror.check_delta(&body, 4, &opts).unwrap();
            assert_eq!((c.delta.to, l), (6, target.clone()));
        }
        opts.form = Form::Jwt;
        let refused = |c: &DeltaClaims, key: &SigningKey| {
            let body = delta::sign_jwt(c, key).unwrap().into_bytes();
            mirror.check_delta(&body, 4, &opts).unwrap_err()
        };
        // Signed by another key.
        let other = SigningKey::generate(Algorithm::Es256);
        assert!(matches!(
            refused(&good, &other),
            DeltaError::Token(TokenError::UnknownKey(_) | TokenError::BadSignature)
        ));
        // Another list's delta.
        let mut wrong_sub = good.clone();
        wrong_sub.sub = "https://status.example/statuslists/8".into();
        assert!(matches!(
            refused(&wrong_sub, &key),
            DeltaError::WrongList { .. }
        ));
        // A signed digest that does not match the result (a faulty or lying server).
        let mut bad_digest = good.clone();
        bad_digest.delta.sha256[0] ^= 1;
        assert_eq!(refused(&bad_digest, &key), DeltaError::DigestMismatch);
        // Changes that do not lead to the signed state (entries left out).
        let mut partial = good.clone();
        partial.delta.changes = delta::encode_changes(Bits::Two, &[(1, 2)]);
        assert_eq!(refused(&partial, &key), DeltaError::DigestMismatch);
        // A delta that does not start at or before the version held.
        let mut later = good.clone();
        later.delta.from = 5;
        assert!(matches!(
            refused(&later, &key),
            DeltaError::WrongVersion { .. }
        ));
        // Expired.
        let mut expired = good.clone();
        expired.exp = Some(1_800_000_100);
        assert!(matches!(
            refused(&expired, &key),
            DeltaError::Token(TokenError::Expired { .. })
        ));
        // The list token itself is not a delta.
        let list_token = statuslist::sign_jwt(
            &StatusListClaims {
                sub: URL.into(),
                iss: None,
                iat: 1,
                exp: None,
                ttl: None,
                status_list: crate::status::ietf::IetfList::encode(&target, None),
            },
            &key,
        )
        .unwrap();
        assert!(matches!(
            mirror.check_delta(list_token.as_bytes(), 4, &opts),
            Err(DeltaError::Token(TokenError::WrongType { .. }))
        ));
    }
}
