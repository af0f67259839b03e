//! Strict parsing of everything read back from Redis: hashes, list data, the change feed, the
//! apply script's errors, allocation bitmaps and credential locations. A reply that does not
//! parse is `StoreError::Corrupt` or `Backend`, never a guess.

use super::MAX_CATCHUP;
use crate::status::packing::{packed_len, unpack, Order};
use crate::status::{Bits, Status, StatusError, StatusList};
use crate::store::registry::{Binding, Location};
use crate::store::{check_id, Change, ListMeta, StoreError};
use redis::{RedisError, Value};
use roaring::RoaringBitmap;
use std::time::{SystemTime, UNIX_EPOCH};

pub(super) fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

pub(super) fn corrupt(id: &str, reason: impl Into<String>) -> StoreError {
    StoreError::Corrupt {
        list: id.to_owned(),
        reason: reason.into(),
    }
}

/// The bytes of a string reply.
pub(super) fn bytes_of(v: &Value) -> Option<&[u8]> {
    match v {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.as_bytes()),
        _ => None,
    }
}

/// The field/value pairs of a hash reply (a flat array in RESP2, a map in RESP3).
fn pairs_of(v: &Value) -> Option<Vec<(&[u8], &[u8])>> {
    match v {
        Value::Array(items) if items.len() % 2 == 0 => items
            .chunks(2)
            .map(|kv| Some((bytes_of(&kv[0])?, bytes_of(&kv[1])?)))
            .collect(),
        Value::Map(items) => items
            .iter()
            .map(|(k, v)| Some((bytes_of(k)?, bytes_of(v)?)))
            .collect(),
        Value::Nil => Some(Vec::new()),
        _ => None,
    }
}

/// A decimal integer without sign or spaces.
fn parse_uint(bytes: &[u8]) -> Option<u64> {
    if bytes.is_empty() || bytes.len() > 20 || !bytes.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(bytes).ok()?.parse().ok()
}

/// Parses a `meta` hash strictly; `Ok(None)` if it is empty (the list does not exist).
pub(super) fn parse_meta(id: &str, reply: &Value) -> Result<Option<ListMeta>, StoreError> {
    let pairs = pairs_of(reply).ok_or_else(|| corrupt(id, "meta is not a hash"))?;
    if pairs.is_empty() {
        return Ok(None);
    }
    let field = |name: &str| -> Result<u64, StoreError> {
        let raw = pairs
            .iter()
            .find(|(k, _)| *k == name.as_bytes())
            .map(|(_, v)| *v)
            .ok_or_else(|| corrupt(id, format!("meta has no {name}")))?;
        parse_uint(raw).ok_or_else(|| {
            corrupt(
                id,
                format!(
                    "meta {name} is {:?}, not an integer",
                    String::from_utf8_lossy(raw)
                ),
            )
        })
    };
    let optional = |name: &str| -> Result<Option<u64>, StoreError> {
        match pairs.iter().find(|(k, _)| *k == name.as_bytes()) {
            None => Ok(None),
            Some(_) => field(name).map(Some),
        }
    };
    let bits = Bits::new(field("bits")?).map_err(|e| corrupt(id, format!("meta: {e}")))?;
    let size = field("size")?;
    let size = u32::try_from(size)
        .map_err(|_| StatusError::InvalidSize(size))
        // The same rule every list is built with.
        .and_then(|size| StatusList::new(bits, size).map(|_| size))
        .map_err(|e| corrupt(id, format!("meta: {e}")))?;
    Ok(Some(ListMeta {
        id: id.to_owned(),
        bits: bits.get(),
        size,
        version: field("version")?,
        updated_at: field("updated_at")?,
        // Optional: writers other than statusd may not record it.
        updated_ms: pairs
            .iter()
            .find(|(k, _)| *k == b"updated_ms")
            .and_then(|(_, v)| parse_uint(v))
            .unwrap_or(0),
        // Issuer fields, absent on lists the issuer API does not manage.
        purpose: pairs
            .iter()
            .find(|(k, _)| *k == b"purpose")
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
            .filter(|p| check_id(p).is_ok())
            .map(str::to_owned),
        allocated: pairs
            .iter()
            .find(|(k, _)| *k == b"allocated")
            .and_then(|(_, v)| parse_uint(v))
            .unwrap_or(0),
        // Absent `expires_max`: forever (docs/redis.md).
        life: crate::store::Lifetime {
            expires_max: optional("expires_max")?,
            retired_at: optional("retired_at")?,
            purged_at: optional("purged_at")?,
        },
    }))
}

/// The pure half of [`Store::load`](crate::store::Store::load): a list from the replies to `HGETALL meta` and `GET data`,
/// checked as strictly as every other read (public so the fuzz targets reach it without Redis).
pub fn parse_list(
    id: &str,
    meta: &Value,
    data: Value,
) -> Result<(ListMeta, StatusList), StoreError> {
    let meta = parse_meta(id, meta)?.ok_or_else(|| StoreError::UnknownList(id.to_owned()))?;
    let bits = meta.bits()?;
    let mut data = match data {
        // A missing data key is an all-VALID list.
        Value::Nil => Vec::new(),
        Value::BulkString(b) => b,
        other => return Err(corrupt(id, format!("data is not a string: {other:?}"))),
    };
    let len = packed_len(bits, meta.size);
    if data.len() > len {
        return Err(corrupt(
            id,
            format!(
                "data is {} bytes, longer than the {len} bytes of {} {bits}-bit entries",
                data.len(),
                meta.size
            ),
        ));
    }
    // Redis grows the string lazily: missing bytes are zero (VALID).
    data.resize(len, 0);
    let list = unpack(bits, Order::MsbFirst, &data).map_err(|e| corrupt(id, e.to_string()))?;
    debug_assert_eq!(list.size(), meta.size);
    Ok((meta, list))
}

/// Parses one feed entry's `c` field: `idx=value` pairs joined by `,`, each within the list.
pub(super) fn parse_changes(c: &[u8], bits: Bits, size: u32, out: &mut Vec<Change>) -> Option<()> {
    if c.is_empty() {
        return Some(());
    }
    for pair in c.split(|&b| b == b',') {
        let eq = pair.iter().position(|&b| b == b'=')?;
        let idx = u32::try_from(parse_uint(&pair[..eq])?).ok()?;
        let value = u8::try_from(parse_uint(&pair[eq + 1..])?).ok()?;
        if idx >= size || value > bits.max_value() {
            return None;
        }
        out.push(Change {
            idx,
            status: Status(value),
        });
    }
    Some(())
}

/// Checks one feed entry (`[id, [field, value, …]]`) against the expected version and appends
/// its changes; `None` if it is not exactly that version, well-formed.
fn parse_feed_entry(
    entry: &Value,
    expected: u64,
    bits: Bits,
    size: u32,
    out: &mut Vec<Change>,
) -> Option<()> {
    let Value::Array(parts) = entry else {
        return None;
    };
    let [entry_id, fields] = parts.as_slice() else {
        return None;
    };
    if bytes_of(entry_id)? != format!("{expected}-0").as_bytes() {
        return None;
    }
    let fields = pairs_of(fields)?;
    let get = |name: &[u8]| fields.iter().find(|(k, _)| *k == name).map(|(_, v)| *v);
    if parse_uint(get(b"v")?)? != expected {
        return None;
    }
    parse_changes(get(b"c")?, bits, size, out)
}

/// The pure half of [`Store::changes_since`](crate::store::Store::changes_since): the changes after `version` from the replies to
/// `HGETALL meta` and `XRANGE feed`, or `None` where only a full load can judge (a gap, a list
/// recreated or too far ahead, a malformed entry). Public so the fuzz targets reach it.
pub fn parse_changes_since(
    id: &str,
    version: u64,
    meta: &Value,
    feed: &Value,
) -> Result<Option<(u64, Vec<Change>)>, StoreError> {
    match parse_meta(id, meta)? {
        Some(meta) => parse_feed(version, &meta, feed),
        None => Ok(None),
    }
}

/// [`parse_changes_since`] with the metadata already parsed.
pub(super) fn parse_feed(
    version: u64,
    meta: &ListMeta,
    feed: &Value,
) -> Result<Option<(u64, Vec<Change>)>, StoreError> {
    let Some(start) = version.checked_add(1) else {
        return Ok(None);
    };
    let current = meta.version;
    if current == version {
        return Ok(Some((version, Vec::new())));
    }
    // Behind the caller (the list was recreated), or further ahead than a replay is worth.
    if current < version || current - version > MAX_CATCHUP {
        return Ok(None);
    }
    let bits = meta.bits()?;
    let Value::Array(entries) = feed else {
        return Ok(None);
    };
    if entries.len() as u64 != current - version {
        return Ok(None);
    }
    let mut changes = Vec::new();
    for (k, entry) in entries.iter().enumerate() {
        let expected = start + k as u64;
        if parse_feed_entry(entry, expected, bits, meta.size, &mut changes).is_none() {
            return Ok(None);
        }
    }
    Ok(Some((current, changes)))
}

/// Maps the error of the apply script to the error the embedded store returns for the same
/// batch; `None` if it is not one of the script's own errors.
pub(super) fn script_error(id: &str, changes: &[Change], e: &RedisError) -> Option<StoreError> {
    let text = e.to_string();
    let at = text.find("STATUSD ")?;
    script_error_text(id, changes, &text[at + "STATUSD ".len()..])
}

/// The list (0-based, among those committed together) that an error of the write script's
/// registry mode is about (`@<j> …`, 1-based), and the error as the single-list form states it.
pub(super) fn registry_error(e: &RedisError) -> Option<(usize, String)> {
    let text = e.to_string();
    let at = text.find("STATUSD @")?;
    let rest = &text[at + "STATUSD @".len()..];
    let (j, error) = rest.split_once(' ')?;
    let j: usize = j.parse().ok()?;
    Some((j.checked_sub(1)?, error.to_owned()))
}

/// [`script_error`] from the text after `STATUSD `.
pub(super) fn script_error_text(id: &str, changes: &[Change], rest: &str) -> Option<StoreError> {
    let mut words = rest.split_whitespace();
    let kind = words.next()?;
    let mut number = || words.next().and_then(|w| w.parse::<u64>().ok());
    let change = |n: Option<u64>| n.and_then(|n| changes.get(usize::try_from(n).ok()?));
    Some(match kind {
        "unknown-list" => StoreError::UnknownList(id.to_owned()),
        "retired" => StoreError::Retired(id.to_owned()),
        "corrupt" => corrupt(id, format!("meta: {}", rest["corrupt".len()..].trim())),
        "out-of-range" => {
            let c = change(number())?;
            let size = u32::try_from(number()?).ok()?;
            StatusError::IndexOutOfRange {
                idx: c.idx.into(),
                size,
            }
            .into()
        }
        "too-wide" => {
            let c = change(number())?;
            let bits = u8::try_from(number()?).ok()?;
            StatusError::ValueTooWide {
                value: c.status.0,
                bits,
            }
            .into()
        }
        "terminal" => {
            let c = change(number())?;
            StoreError::Terminal {
                idx: c.idx,
                to: c.status,
            }
        }
        _ => return None,
    })
}

/// The bitmap `SETBIT` builds: index `i` is bit `7 - i % 8` of byte `i / 8`.
pub(super) fn bitmap_from_redis(bytes: &[u8]) -> RoaringBitmap {
    let mut out = RoaringBitmap::new();
    for (i, &b) in bytes.iter().enumerate() {
        if b == 0 {
            continue;
        }
        for j in 0..8u32 {
            if b & (0x80 >> j) != 0 {
                out.insert(i as u32 * 8 + j);
            }
        }
    }
    out
}

/// The place a credential-id key holds (its hints left out: [`binding_of`]).
pub(super) fn location_of(v: &Value) -> Result<Option<Location>, StoreError> {
    Ok(binding_of(v)?.map(|b| b.at))
}

/// The binding a credential-id key holds: `<list>/<idx>`, then its hints if any ([`Binding`]).
pub(super) fn binding_of(v: &Value) -> Result<Option<Binding>, StoreError> {
    match v {
        Value::Nil => Ok(None),
        other => {
            let raw = bytes_of(other).ok_or_else(|| {
                StoreError::Backend(format!("redis: credential index entry is {other:?}"))
            })?;
            let s = std::str::from_utf8(raw).ok();
            s.and_then(Binding::parse).map(Some).ok_or_else(|| {
                StoreError::Backend(format!(
                    "credential index entry {:?} is corrupt",
                    String::from_utf8_lossy(raw)
                ))
            })
        }
    }
}
