//! The roaring form of a list: for clients that want the set of indices holding each non-VALID
//! value rather than a packed array (`application/vnd.statusd.roaring`).
//!
//! Layout: ZLIB (RFC 1950) over a CBOR map with text keys
//! `{"bits": uint, "size": uint, "statuses": {value(uint): bstr}}`, where each bstr is the
//! roaring **portable serialization** (the format CRoaring, Java, Go and Rust roaring share) of
//! the indices holding that value, run-optimised. VALID is never listed. Decoding bounds the
//! inflated size and rejects overlapping sets, out-of-range indices and values wider than `bits`.

use super::{deflate, ietf::cbor_to_vec, Bits, Status, StatusError, StatusList, MAX_ENTRIES};
use ciborium::Value as Cbor;
use flate2::{write::ZlibEncoder, Compression};
use roaring::RoaringBitmap;
use std::collections::BTreeMap;
use std::io::Write as _;

/// Upper bound on the inflated envelope: one full 32-bit bitmap per value of an 8-bit list would
/// be absurd; the largest honest envelope (every entry of a MAX_ENTRIES list non-VALID) is about
/// MAX_ENTRIES/8 bytes per plane-sized bitmap.
const MAX_ENVELOPE: usize = (MAX_ENTRIES as usize / 8) * 9;

/// Errors reading the roaring form.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum SparseError {
    #[error("roaring form: {0}")]
    Inflate(#[from] deflate::InflateError),
    #[error("roaring form: not a valid CBOR envelope: {0}")]
    Envelope(String),
    #[error(
        "roaring form: bitmap for value {value} is not a valid portable roaring bitmap: {reason}"
    )]
    Bitmap { value: u64, reason: String },
    #[error("roaring form: index {idx} appears under more than one value")]
    Overlap { idx: u32 },
    #[error(transparent)]
    Status(#[from] StatusError),
}

/// Serialises `list` in the roaring form.
pub fn encode(list: &StatusList) -> Vec<u8> {
    let mut by_value: BTreeMap<u8, RoaringBitmap> = BTreeMap::new();
    for (idx, status) in list.iter_nonzero() {
        let set = by_value.entry(status.0).or_default();
        if set.try_push(idx).is_err() {
            set.insert(idx);
        }
    }
    let statuses = by_value
        .into_iter()
        .map(|(value, mut set)| {
            set.optimize();
            let mut bytes = Vec::with_capacity(set.serialized_size());
            set.serialize_into(&mut bytes)
                .expect("serialising into a Vec cannot fail");
            (Cbor::Integer(value.into()), Cbor::Bytes(bytes))
        })
        .collect();
    let envelope = Cbor::Map(vec![
        (
            Cbor::Text("bits".into()),
            Cbor::Integer(list.bits().get().into()),
        ),
        (Cbor::Text("size".into()), Cbor::Integer(list.size().into())),
        (Cbor::Text("statuses".into()), Cbor::Map(statuses)),
    ]);
    let cbor = cbor_to_vec(&envelope);
    let mut z = ZlibEncoder::new(Vec::with_capacity(cbor.len() / 2), Compression::default());
    z.write_all(&cbor).expect("writing into a Vec cannot fail");
    z.finish().expect("writing into a Vec cannot fail")
}

fn envelope_err(msg: impl Into<String>) -> SparseError {
    SparseError::Envelope(msg.into())
}

/// Reads the roaring form back into a list.
pub fn decode(data: &[u8]) -> Result<StatusList, SparseError> {
    let cbor_bytes = deflate::inflate_zlib(data, MAX_ENVELOPE)?;
    let envelope: Cbor =
        ciborium::from_reader(cbor_bytes.as_slice()).map_err(|e| envelope_err(e.to_string()))?;
    let map = envelope.as_map().ok_or_else(|| envelope_err("not a map"))?;
    let field = |name: &str| {
        map.iter()
            .find(|(k, _)| k.as_text() == Some(name))
            .map(|(_, v)| v)
            .ok_or_else(|| envelope_err(format!("missing \"{name}\"")))
    };
    let uint = |name: &str| -> Result<u64, SparseError> {
        field(name)?
            .as_integer()
            .and_then(|i| u64::try_from(i).ok())
            .ok_or_else(|| envelope_err(format!("\"{name}\" must be an unsigned integer")))
    };
    let bits = Bits::new(uint("bits")?)?;
    let size = u32::try_from(uint("size")?).map_err(|_| StatusError::InvalidSize(u64::MAX))?;
    let mut list = StatusList::new(bits, size)?;
    let mut seen = RoaringBitmap::new();
    let statuses = field("statuses")?
        .as_map()
        .ok_or_else(|| envelope_err("\"statuses\" must be a map"))?;
    for (k, v) in statuses {
        let value = k
            .as_integer()
            .and_then(|i| u64::try_from(i).ok())
            .ok_or_else(|| envelope_err("status values must be unsigned integers"))?;
        let status = u8::try_from(value)
            .ok()
            .filter(|&s| s != 0 && s <= bits.max_value())
            .map(Status)
            .ok_or(StatusError::ValueTooWide {
                value: value.min(255) as u8,
                bits: bits.get(),
            })?;
        let bytes = v
            .as_bytes()
            .ok_or_else(|| envelope_err("bitmaps must be byte strings"))?;
        let set =
            RoaringBitmap::deserialize_from(bytes.as_slice()).map_err(|e| SparseError::Bitmap {
                value,
                reason: e.to_string(),
            })?;
        if let Some(max) = set.max() {
            if max >= size {
                return Err(StatusError::IndexOutOfRange {
                    idx: max.into(),
                    size,
                }
                .into());
            }
        }
        if let Some(idx) = (&seen & &set).min() {
            return Err(SparseError::Overlap { idx });
        }
        seen |= &set;
        // Each plane takes the whole set at once: O(containers). Setting entry by entry would
        // cost O(entries), and a few kilobytes of run containers describe 2^26 of them.
        for (k, plane) in list.planes.iter_mut().enumerate() {
            if status.0 & (1 << k) != 0 {
                *plane |= &set;
            }
        }
    }
    list.planes_changed();
    Ok(list)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_keeps_every_value() {
        let l = StatusList::from_entries(
            Bits::Four,
            1 << 16,
            [
                (1, Status(1)),
                (2, Status(2)),
                (65_535, Status(15)),
                (300, Status(2)),
            ],
        )
        .unwrap();
        assert_eq!(decode(&encode(&l)).unwrap(), l);
        let empty = StatusList::new(Bits::One, 8).unwrap();
        assert_eq!(decode(&encode(&empty)).unwrap(), empty);
    }

    fn envelope(bits: u64, size: u64, sets: Vec<(u64, Vec<u32>)>) -> Vec<u8> {
        let statuses = sets
            .into_iter()
            .map(|(v, idx)| {
                let set: RoaringBitmap = idx.into_iter().collect();
                let mut b = Vec::new();
                set.serialize_into(&mut b).unwrap();
                (Cbor::Integer(v.into()), Cbor::Bytes(b))
            })
            .collect();
        let c = cbor_to_vec(&Cbor::Map(vec![
            (Cbor::Text("bits".into()), Cbor::Integer(bits.into())),
            (Cbor::Text("size".into()), Cbor::Integer(size.into())),
            (Cbor::Text("statuses".into()), Cbor::Map(statuses)),
        ]));
        let mut z = ZlibEncoder::new(Vec::new(), Compression::default());
        z.write_all(&c).unwrap();
        z.finish().unwrap()
    }

    /// Found by fuzzing (`roaring`): a 3 KB envelope of run containers naming every index of
    /// a 2^26-entry list took minutes, one `StatusList::set` per entry.
    /// Fixed in 0a8480d (two decoder amplifications found with the fuzz targets).
    #[test]
    fn regression_run_containers_set_entries_one_by_one() {
        let mut set = RoaringBitmap::new();
        set.insert_range(0..MAX_ENTRIES);
        set.optimize();
        let mut b = Vec::new();
        set.serialize_into(&mut b).unwrap();
        let c = cbor_to_vec(&Cbor::Map(vec![
            (Cbor::Text("bits".into()), Cbor::Integer(2.into())),
            (Cbor::Text("size".into()), Cbor::Integer(MAX_ENTRIES.into())),
            (
                Cbor::Text("statuses".into()),
                Cbor::Map(vec![(Cbor::Integer(2.into()), Cbor::Bytes(b))]),
            ),
        ]));
        let mut z = ZlibEncoder::new(Vec::new(), Compression::default());
        z.write_all(&c).unwrap();
        let start = std::time::Instant::now();
        let list = decode(&z.finish().unwrap()).unwrap();
        assert!(start.elapsed() < std::time::Duration::from_secs(5));
        assert_eq!(list.count_nonzero(), u64::from(MAX_ENTRIES));
        assert_eq!(list.get(12_345), Ok(Status::SUSPENDED));
        assert_eq!(list.indices_with(Status::INVALID).len(), 0);
    }

    #[test]
    fn hostile_envelopes_are_rejected_precisely() {
        assert_eq!(
            decode(&envelope(2, 64, vec![(1, vec![3]), (2, vec![3])])),
            Err(SparseError::Overlap { idx: 3 })
        );
        assert!(matches!(
            decode(&envelope(2, 64, vec![(1, vec![64])])),
            Err(SparseError::Status(StatusError::IndexOutOfRange {
                idx: 64,
                size: 64
            }))
        ));
        assert!(matches!(
            decode(&envelope(1, 64, vec![(2, vec![1])])),
            Err(SparseError::Status(StatusError::ValueTooWide { .. }))
        ));
        assert!(matches!(
            decode(&envelope(3, 64, vec![])),
            Err(SparseError::Status(StatusError::InvalidBits(3)))
        ));
        assert!(matches!(decode(b"not zlib"), Err(SparseError::Inflate(_))));
    }
}
