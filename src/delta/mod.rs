//! Signed deltas: **statusd's own extension** to the IETF Token Status List, for verifiers that
//! mirror whole lists. Instead of the full Status List Token after every change, a verifier
//! holding version `v` of a list fetches `/statuslists/{id}/deltas/{v}` and gets the entries that
//! changed since, signed like the list itself. Nothing here is part of draft-ietf-oauth-status-list;
//! the names say so (`statuslist-delta+jwt`, the `status_list_delta` claim).
//!
//! This module owns the wire format, defined once for the server and the verifier:
//!
//! * JWT: header `typ` `statuslist-delta+jwt` (media type `application/statuslist-delta+jwt`);
//!   claims `sub` (the list's URI, exactly the list token's `sub`), `iat`, `exp`, `ttl` as in
//!   the list token (`iss` is read if present; statusd leaves it out), and `status_list_delta`:
//!   `{"bits": 1|2|4|8, "from": u64, "to": u64, "changes": base64url, "sha256": base64url}`.
//! * CWT: COSE_Sign1_Tagged, protected label 16 `application/statuslist-delta+cwt`; claims
//!   2 sub, 1 iss, 6 iat, 4 exp, 65534 ttl, and the text key `"status_list_delta"` with the
//!   same members (`changes` and `sha256` as byte strings).
//!
//! Semantics: applying the delta to the list at version `from` gives the list at version `to`;
//! `changes` lists, for a superset of the entries that differ, their value at `to`. A server
//! answers `/deltas/{v}` with a delta whose `from ≤ v ≤ to` only when it also applies to `v`
//! (the versions it held since `from`); the verifier checks `from ≤ v ≤ to` and, above all,
//! the digest.
//! `sha256` is the SHA-256 of the list at `to` as the IETF draft packs it before compression
//! (§4.1: `size × bits / 8` bytes, LSB first), so a verifier checks its result bit for bit.
//!
//! `changes` is ZLIB (RFC 1950) over: the entry count as an unsigned LEB128, then each changed
//! index in increasing order as an unsigned LEB128 (the first index itself, then each index minus
//! the previous one minus one), then the entries' values packed like a Status List of `count`
//! entries of `bits` bits (LSB first, the last byte zero-padded).
//!
//! Building and signing happen in the refresher's background builds (`crate::snapshot::delta`
//! keeps each list's recent changes and prebuilds the signed deltas); the request path only
//! picks a prebuilt representation. Verification never trusts a delta before its
//! signature is checked, and decoding is bounded by the size of the list it applies to.

use crate::status::packing::{pack_sparse, packed_len, Order};
use crate::status::{deflate, Bits, Status, StatusError, StatusList};
use crate::token::signed::{self, Registered, SignedClaims, UnverifiedCwt, UnverifiedJwt};
use crate::token::statuslist::cwt_key;
use crate::token::TokenError;
use crate::token::{b64url_decode, b64url_encode, KeySet};
use ciborium::Value as Cbor;
use serde_json::{Map, Value as Json};
use sha2::{Digest, Sha256};
use std::io::Write as _;

/// The JWT `typ` of a signed delta.
pub const JWT_TYP: &str = "statuslist-delta+jwt";
/// The COSE `typ` (label 16) of a signed delta.
pub const CWT_TYP: &str = "application/statuslist-delta+cwt";
/// The claim (JWT member, CWT text key) that carries the delta.
pub const CLAIM: &str = "status_list_delta";

/// Why a delta cannot be read or applied.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum DeltaError {
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error("status_list_delta: {0}")]
    Malformed(String),
    #[error("the delta is for {found}, not for {expected}")]
    WrongList { expected: String, found: String },
    #[error("the delta applies to versions {from} to {to}, the list held is at version {held}")]
    WrongVersion { from: u64, to: u64, held: u64 },
    #[error("the delta is for {delta}-bit entries, the list held has {held}")]
    WrongBits { delta: u8, held: u8 },
    #[error(transparent)]
    Status(#[from] StatusError),
    #[error("the list after applying the delta does not match its signed digest")]
    DigestMismatch,
}

/// The `status_list_delta` claim.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delta {
    pub bits: Bits,
    /// The oldest version the delta applies to.
    pub from: u64,
    /// The version it brings the list to.
    pub to: u64,
    /// The compressed changes (see the module documentation).
    pub changes: Vec<u8>,
    /// SHA-256 of the packed list at `to`.
    pub sha256: [u8; 32],
}

/// The claims of a signed delta.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeltaClaims {
    /// The list's URI: the `sub` of its Status List Token.
    pub sub: String,
    pub iss: Option<String>,
    pub iat: u64,
    pub exp: Option<u64>,
    pub ttl: Option<u64>,
    pub delta: Delta,
}

/// SHA-256 of `list` packed as the IETF draft packs it (LSB first), computed from its non-zero
/// bytes without materialising the array.
pub fn digest(list: &StatusList) -> [u8; 32] {
    const ZEROS: [u8; 4096] = [0; 4096];
    let mut h = Sha256::new();
    let zeros = |h: &mut Sha256, mut n: usize| {
        while n > 0 {
            let k = n.min(ZEROS.len());
            h.update(&ZEROS[..k]);
            n -= k;
        }
    };
    let mut at = 0usize;
    for (offset, byte) in crate::status::packing::ietf_nonzero_bytes(list) {
        zeros(&mut h, offset - at);
        h.update([byte]);
        at = offset + 1;
    }
    zeros(&mut h, packed_len(list.bits(), list.size()) - at);
    h.finalize().into()
}

fn push_leb128(out: &mut Vec<u8>, mut n: u64) {
    loop {
        let b = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

fn read_leb128(data: &[u8], at: &mut usize) -> Result<u64, DeltaError> {
    let mut n = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *data
            .get(*at)
            .ok_or_else(|| DeltaError::Malformed("changes end inside a number".into()))?;
        *at += 1;
        n |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(n);
        }
    }
    Err(DeltaError::Malformed(
        "a number in changes is too long".into(),
    ))
}

/// Compresses `entries` (strictly increasing indices, values of width `bits`) into `changes`.
pub fn encode_changes(bits: Bits, entries: &[(u32, u8)]) -> Vec<u8> {
    let mut raw = Vec::with_capacity(entries.len() * 3 + 8);
    push_leb128(&mut raw, entries.len() as u64);
    let mut next = 0u32;
    for &(idx, _) in entries {
        debug_assert!(idx >= next, "indices must be strictly increasing");
        push_leb128(&mut raw, u64::from(idx - next));
        next = idx + 1;
    }
    let values_at = raw.len();
    raw.resize(values_at + packed_len(bits, entries.len() as u32), 0);
    let values = (0u32..).zip(entries.iter().map(|&(_, v)| v));
    for (offset, byte) in pack_sparse(bits, Order::LsbFirst, values.filter(|&(_, v)| v != 0)) {
        raw[values_at + offset] = byte;
    }
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    z.write_all(&raw).expect("writing into a Vec cannot fail");
    z.finish().expect("writing into a Vec cannot fail")
}

/// Reads `changes` for a list of `size` entries of width `bits`: at most `size` entries, each
/// index below `size`, inflating no more than such a list can need.
pub fn decode_changes(bits: Bits, size: u32, changes: &[u8]) -> Result<Vec<(u32, u8)>, DeltaError> {
    let limit = 10 + size as usize * 5 + packed_len(bits, size);
    let raw = deflate::inflate_zlib(changes, limit)
        .map_err(|e| DeltaError::Malformed(format!("changes: {e}")))?;
    let mut at = 0;
    let count = read_leb128(&raw, &mut at)?;
    if count > u64::from(size) {
        return Err(DeltaError::Malformed(format!(
            "{count} changes for a list of {size} entries"
        )));
    }
    let mut entries = Vec::with_capacity(count as usize);
    let mut next = 0u64;
    for _ in 0..count {
        let idx = next + read_leb128(&raw, &mut at)?;
        if idx >= u64::from(size) {
            return Err(StatusError::IndexOutOfRange { idx, size }.into());
        }
        entries.push((idx as u32, 0u8));
        next = idx + 1;
    }
    let values = &raw[at..];
    if values.len() != packed_len(bits, count as u32) {
        return Err(DeltaError::Malformed(format!(
            "{} bytes of values for {count} entries of {bits} bit(s)",
            values.len()
        )));
    }
    let (per, mask) = (bits.per_byte() as usize, bits.max_value());
    for (i, e) in entries.iter_mut().enumerate() {
        e.1 = (values[i / per] >> ((i % per) * bits.get() as usize)) & mask;
    }
    Ok(entries)
}

impl Delta {
    /// The delta bringing a list to `at_to` (at version `to`), for the entries `changed` (a
    /// superset of those that changed after `from`, increasing).
    pub fn build(
        at_to: &StatusList,
        from: u64,
        to: u64,
        changed: impl Iterator<Item = u32>,
    ) -> Self {
        let entries: Vec<(u32, u8)> = changed.map(|i| (i, at_to.get_unchecked(i).0)).collect();
        Delta {
            bits: at_to.bits(),
            from,
            to,
            changes: encode_changes(at_to.bits(), &entries),
            sha256: digest(at_to),
        }
    }

    /// `held` (a list at version `version`) brought to [`Self::to`], checked against the signed
    /// digest.
    pub fn apply(&self, held: &StatusList, version: u64) -> Result<StatusList, DeltaError> {
        if !(self.from <= version && version <= self.to) {
            return Err(DeltaError::WrongVersion {
                from: self.from,
                to: self.to,
                held: version,
            });
        }
        if self.bits != held.bits() {
            return Err(DeltaError::WrongBits {
                delta: self.bits.get(),
                held: held.bits().get(),
            });
        }
        let mut list = held.clone();
        for (idx, value) in decode_changes(self.bits, held.size(), &self.changes)? {
            list.set(idx.into(), Status(value))?;
        }
        if digest(&list) != self.sha256 {
            return Err(DeltaError::DigestMismatch);
        }
        Ok(list)
    }

    fn to_json(&self) -> Json {
        let mut m = Map::new();
        m.insert("bits".into(), Json::from(self.bits.get()));
        m.insert("from".into(), Json::from(self.from));
        m.insert("to".into(), Json::from(self.to));
        m.insert("changes".into(), Json::from(b64url_encode(&self.changes)));
        m.insert("sha256".into(), Json::from(b64url_encode(&self.sha256)));
        Json::Object(m)
    }

    fn to_cbor(&self) -> Cbor {
        Cbor::Map(vec![
            (Cbor::from("bits"), Cbor::from(self.bits.get())),
            (Cbor::from("from"), Cbor::from(self.from)),
            (Cbor::from("to"), Cbor::from(self.to)),
            (Cbor::from("changes"), Cbor::Bytes(self.changes.clone())),
            (Cbor::from("sha256"), Cbor::Bytes(self.sha256.to_vec())),
        ])
    }

    /// The delta from its five members, read by `uint` and `bytes` (JSON or CBOR alike).
    fn from_members(
        uint: impl Fn(&str) -> Result<u64, DeltaError>,
        bytes: impl Fn(&str) -> Result<Vec<u8>, DeltaError>,
    ) -> Result<Self, DeltaError> {
        let (bits, from, to) = (uint("bits")?, uint("from")?, uint("to")?);
        let (changes, sha256) = (bytes("changes")?, bytes("sha256")?);
        let bad = |m: &str| DeltaError::Malformed(m.to_owned());
        if from > to {
            return Err(bad("from is after to"));
        }
        Ok(Delta {
            bits: Bits::new(bits)?,
            from,
            to,
            changes,
            sha256: sha256
                .try_into()
                .map_err(|_| bad("sha256 is not 32 bytes"))?,
        })
    }

    fn from_json(v: &Json) -> Result<Self, DeltaError> {
        let m = v
            .as_object()
            .ok_or_else(|| DeltaError::Malformed("not a JSON object".into()))?;
        let uint = |k: &str| {
            m.get(k)
                .and_then(Json::as_u64)
                .ok_or_else(|| DeltaError::Malformed(format!("{k} must be an unsigned integer")))
        };
        let bytes = |k: &str| {
            let s = m
                .get(k)
                .and_then(Json::as_str)
                .ok_or_else(|| DeltaError::Malformed(format!("{k} must be a string")))?;
            b64url_decode(s, k).map_err(DeltaError::Malformed)
        };
        if let Some(k) = m
            .keys()
            .find(|k| !["bits", "from", "to", "changes", "sha256"].contains(&k.as_str()))
        {
            return Err(DeltaError::Malformed(format!("unknown member {k:?}")));
        }
        Delta::from_members(uint, bytes)
    }

    fn from_cbor(v: &Cbor) -> Result<Self, DeltaError> {
        let m = v
            .as_map()
            .ok_or_else(|| DeltaError::Malformed("not a CBOR map".into()))?;
        let get = |k: &str| {
            let mut it = m.iter().filter(|(key, _)| key.as_text() == Some(k));
            match (it.next(), it.next()) {
                (Some((_, v)), None) => Ok(v),
                (None, _) => Err(DeltaError::Malformed(format!("missing {k}"))),
                _ => Err(DeltaError::Malformed(format!("duplicate {k}"))),
            }
        };
        let uint = |k: &str| {
            get(k)?
                .as_integer()
                .and_then(|i| u64::try_from(i).ok())
                .ok_or_else(|| DeltaError::Malformed(format!("{k} must be an unsigned integer")))
        };
        let bytes = |k: &str| {
            get(k)?
                .as_bytes()
                .cloned()
                .ok_or_else(|| DeltaError::Malformed(format!("{k} must be a byte string")))
        };
        if m.len() != 5 {
            return Err(DeltaError::Malformed("expected exactly 5 members".into()));
        }
        Delta::from_members(uint, bytes)
    }
}

impl SignedClaims for DeltaClaims {
    const JWT_TYP: &'static str = JWT_TYP;
    const CWT_TYP: &'static str = CWT_TYP;
    type Error = DeltaError;

    fn to_jwt_claims(&self) -> Json {
        let mut m = self.registered().to_jwt();
        m.insert(CLAIM.into(), self.delta.to_json());
        Json::Object(m)
    }

    fn to_cwt_claims(&self) -> Cbor {
        let mut m = self.registered().to_cwt();
        m.push((Cbor::from(CLAIM), self.delta.to_cbor()));
        Cbor::Map(m)
    }

    fn from_jwt_claims(v: &Json) -> Result<Self, DeltaError> {
        let m = v
            .as_object()
            .ok_or_else(|| TokenError::Malformed("JWT claims set is not a JSON object".into()))?;
        let uint = |k: &'static str| -> Result<Option<u64>, TokenError> {
            m.get(k)
                .map(|v| {
                    v.as_u64().ok_or(TokenError::InvalidClaim {
                        claim: k,
                        reason: "expected an unsigned integer".into(),
                    })
                })
                .transpose()
        };
        let text = |k: &'static str| -> Result<Option<String>, TokenError> {
            m.get(k)
                .map(|v| {
                    v.as_str()
                        .map(str::to_owned)
                        .ok_or(TokenError::InvalidClaim {
                            claim: k,
                            reason: "expected a string".into(),
                        })
                })
                .transpose()
        };
        Ok(DeltaClaims {
            sub: text("sub")?.ok_or(TokenError::MissingClaim("sub"))?,
            iss: text("iss")?,
            iat: uint("iat")?.ok_or(TokenError::MissingClaim("iat"))?,
            exp: uint("exp")?,
            ttl: uint("ttl")?,
            delta: Delta::from_json(m.get(CLAIM).ok_or(TokenError::MissingClaim(CLAIM))?)?,
        })
    }

    fn from_cwt_claims(v: &Cbor) -> Result<Self, DeltaError> {
        let entries = v
            .as_map()
            .ok_or_else(|| TokenError::Malformed("CWT claims set is not a CBOR map".into()))?;
        let (mut sub, mut iss, mut iat, mut exp, mut ttl, mut delta) =
            (None, None, None, None, None, None);
        let mut seen = std::collections::HashSet::new();
        for (k, val) in entries {
            if !seen.insert(format!("{k:?}")) {
                return Err(TokenError::Malformed(format!("duplicate claim key {k:?}")).into());
            }
            let uint = |claim| {
                val.as_integer().and_then(|i| u64::try_from(i).ok()).ok_or(
                    TokenError::InvalidClaim {
                        claim,
                        reason: "expected an unsigned integer".into(),
                    },
                )
            };
            let text = |claim| {
                val.as_text()
                    .map(str::to_owned)
                    .ok_or(TokenError::InvalidClaim {
                        claim,
                        reason: "expected a text string".into(),
                    })
            };
            match k {
                Cbor::Text(t) if t == CLAIM => delta = Some(Delta::from_cbor(val)?),
                Cbor::Integer(i) => match i64::try_from(*i) {
                    Ok(cwt_key::SUB) => sub = Some(text("sub")?),
                    Ok(cwt_key::ISS) => iss = Some(text("iss")?),
                    Ok(cwt_key::IAT) => iat = Some(uint("iat")?),
                    Ok(cwt_key::EXP) => exp = Some(uint("exp")?),
                    Ok(cwt_key::TTL) => ttl = Some(uint("ttl")?),
                    _ => {}
                },
                _ => {}
            }
        }
        Ok(DeltaClaims {
            sub: sub.ok_or(TokenError::MissingClaim("sub"))?,
            iss,
            iat: iat.ok_or(TokenError::MissingClaim("iat"))?,
            exp,
            ttl,
            delta: delta.ok_or(TokenError::MissingClaim(CLAIM))?,
        })
    }
}

impl DeltaClaims {
    fn registered(&self) -> Registered<'_> {
        Registered {
            sub: &self.sub,
            iss: self.iss.as_deref(),
            iat: self.iat,
            exp: self.exp,
            ttl: self.ttl,
        }
    }

    /// Valid at `now` (Unix seconds): not expired, not issued more than
    /// [`crate::token::statuslist::MAX_CLOCK_SKEW_SECS`] ahead (the list token's rule).
    pub fn check_time(&self, now: u64) -> Result<(), TokenError> {
        self.registered().check_time(now)
    }
}

/// Signing a delta: [`signed::sign_jwt`] (header `{"alg","kid","typ":"statuslist-delta+jwt"}`)
/// and [`signed::sign_cwt`] (COSE_Sign1_Tagged, label 16 [`CWT_TYP`]) of [`DeltaClaims`].
pub use crate::token::signed::{sign_cwt, sign_jwt};

/// Verifies a delta JWT: framing and `alg`, `typ`, the signature, then the claims. Time is
/// checked by [`DeltaClaims::check_time`].
pub fn verify_jwt(token: &str, keys: &KeySet) -> Result<DeltaClaims, DeltaError> {
    signed::verify_jwt(token, keys)
}

/// Verifies a delta CWT: tag 18, label 16, the signature, then the claims.
pub fn verify_cwt(bytes: &[u8], keys: &KeySet) -> Result<DeltaClaims, DeltaError> {
    signed::verify_cwt(bytes, keys)
}

/// Every check of [`verify_jwt`] except the signature (for `statusd inspect`, which shows what a
/// delta says when no key is given). Never apply the result.
pub fn decode_jwt_unverified(token: &str) -> Result<UnverifiedJwt<DeltaClaims>, DeltaError> {
    signed::decode_jwt_unverified(token)
}

/// Every check of [`verify_cwt`] except the signature (for `statusd inspect`). Never apply the
/// result.
pub fn decode_cwt_unverified(bytes: &[u8]) -> Result<UnverifiedCwt<DeltaClaims>, DeltaError> {
    signed::decode_cwt_unverified(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::packing::pack_dense;
    use crate::token::keys::{Algorithm, SigningKey};
    use proptest::prelude::*;

    fn list(bits: Bits, entries: &[(u64, u8)]) -> StatusList {
        StatusList::from_entries(bits, 1 << 12, entries.iter().map(|&(i, v)| (i, Status(v))))
            .unwrap()
    }

    #[test]
    fn digest_is_sha256_of_the_packed_array() {
        let l = list(Bits::Two, &[(0, 1), (5, 2), (4095, 3)]);
        let dense = pack_dense(&l, Order::LsbFirst);
        assert_eq!(digest(&l), <[u8; 32]>::from(Sha256::digest(&dense)));
        let empty = list(Bits::One, &[]);
        assert_eq!(digest(&empty), <[u8; 32]>::from(Sha256::digest([0u8; 512])));
    }

    /// The byte layout the module documentation defines, before compression.
    #[test]
    fn changes_layout_is_as_documented() {
        let z = encode_changes(Bits::Two, &[(3, 1), (4, 0), (300, 2)]);
        let raw = deflate::inflate_zlib(&z, 1 << 10).unwrap();
        // count 3; indices 3, 4 (gap 0), 300 (gap 295 = 0xa7 0x02); values 1,0,2 packed LSB first.
        assert_eq!(raw, [3, 3, 0, 0xa7, 0x02, 0b0010_0001]);
        // docs/deltas.md's example.
        assert_eq!(b64url_encode(&z), "eNpjZmZYzqQIAAJBANE");
    }

    proptest! {
        #[test]
        fn changes_round_trip(
            bits in prop::sample::select(vec![1u64, 2, 4, 8]),
            idx in prop::collection::btree_set(0u32..4096, 0..200),
            seed in any::<u64>(),
        ) {
            let bits = Bits::new(bits).unwrap();
            let entries: Vec<(u32, u8)> = idx
                .into_iter()
                .map(|i| (i, ((u64::from(i) ^ seed) % (u64::from(bits.max_value()) + 1)) as u8))
                .collect();
            let z = encode_changes(bits, &entries);
            prop_assert_eq!(decode_changes(bits, 4096, &z).unwrap(), entries);
        }
    }

    #[test]
    fn decoding_refuses_what_does_not_fit_the_list() {
        let z = encode_changes(Bits::One, &[(10, 1)]);
        assert!(matches!(
            decode_changes(Bits::One, 8, &z),
            Err(DeltaError::Status(StatusError::IndexOutOfRange { .. }))
        ));
        let many: Vec<(u32, u8)> = (0..16).map(|i| (i, 1)).collect();
        let z = encode_changes(Bits::One, &many);
        assert!(decode_changes(Bits::One, 8, &z).is_err());
        assert!(decode_changes(Bits::One, 8, b"not zlib").is_err());
    }

    #[test]
    fn applying_brings_the_list_to_the_target_version() {
        let v1 = list(Bits::Two, &[(1, 1), (7, 2)]);
        let v2 = list(Bits::Two, &[(1, 1), (7, 0), (9, 1)]);
        let v3 = list(Bits::Two, &[(1, 1), (7, 0), (9, 1), (100, 2)]);
        let changed = v1.changed_indices(&v3).unwrap();
        let d = Delta::build(&v3, 1, 3, changed.iter());
        assert_eq!(d.apply(&v1, 1).unwrap(), v3);
        // A superset that covers the intermediate version applies to it too.
        assert_eq!(d.apply(&v2, 2).unwrap(), v3);
        assert_eq!(d.apply(&v3, 3).unwrap(), v3);
        assert!(matches!(
            d.apply(&v1, 0),
            Err(DeltaError::WrongVersion { .. })
        ));
        assert!(matches!(
            d.apply(&v1, 4),
            Err(DeltaError::WrongVersion { .. })
        ));
        // The wrong starting state (claimed as version 2) fails the digest.
        let other = list(Bits::Two, &[(2, 1)]);
        assert_eq!(d.apply(&other, 2), Err(DeltaError::DigestMismatch));
        let one_bit = list(Bits::One, &[]);
        assert!(matches!(
            d.apply(&one_bit, 2),
            Err(DeltaError::WrongBits { .. })
        ));
    }

    fn claims() -> DeltaClaims {
        let v1 = list(Bits::Two, &[(1, 1)]);
        let v2 = list(Bits::Two, &[(1, 2), (2, 1)]);
        DeltaClaims {
            sub: "https://status.example/statuslists/7".into(),
            iss: Some("https://issuer.example".into()),
            iat: 1_800_000_000,
            exp: Some(1_800_086_400),
            ttl: Some(300),
            delta: Delta::build(&v2, 4, 9, v1.changed_indices(&v2).unwrap().iter()),
        }
    }

    #[test]
    fn signed_deltas_verify_in_both_forms() {
        let key = SigningKey::generate(Algorithm::Es256);
        let keys = KeySet::new(vec![key.verifying_key()]);
        let c = claims();
        let jwt = sign_jwt(&c, &key).unwrap();
        assert_eq!(verify_jwt(&jwt, &keys).unwrap(), c);
        let cwt = sign_cwt(&c, &key).unwrap();
        assert_eq!(verify_cwt(&cwt, &keys).unwrap(), c);
        // Another key, another token type, a tampered payload: refused.
        let other = KeySet::new(vec![SigningKey::generate(Algorithm::Es256).verifying_key()]);
        assert!(verify_jwt(&jwt, &other).is_err());
        let list_claims = crate::token::StatusListClaims {
            sub: c.sub.clone(),
            iss: None,
            iat: c.iat,
            exp: c.exp,
            ttl: c.ttl,
            status_list: crate::status::ietf::IetfList::encode(&list(Bits::Two, &[]), None),
        };
        let list_jwt = crate::token::sign_jwt(&list_claims, &key).unwrap();
        assert!(matches!(
            verify_jwt(&list_jwt, &keys),
            Err(DeltaError::Token(TokenError::WrongType { .. }))
        ));
        let list_cwt = crate::token::sign_cwt(&list_claims, &key).unwrap();
        assert!(matches!(
            verify_cwt(&list_cwt, &keys),
            Err(DeltaError::Token(TokenError::WrongType { .. }))
        ));
        let mut parts: Vec<String> = jwt.split('.').map(str::to_owned).collect();
        let mut payload: Json =
            serde_json::from_slice(&b64url_decode(&parts[1], "payload").unwrap()).unwrap();
        payload[CLAIM]["to"] = Json::from(10);
        parts[1] = b64url_encode(payload.to_string().as_bytes());
        assert_eq!(
            verify_jwt(&parts.join("."), &keys),
            Err(DeltaError::Token(TokenError::BadSignature))
        );
    }

    #[test]
    fn time_is_checked_like_the_list_tokens() {
        let c = claims();
        assert!(c.check_time(1_800_000_100).is_ok());
        assert!(c.check_time(1_800_086_400).is_err());
        assert!(c.check_time(1_799_999_000).is_err());
    }
}
