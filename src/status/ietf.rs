//! The IETF Token Status List (draft-ietf-oauth-status-list-20 §4): the `status_list` object
//! in its JSON form (`lst` as unpadded base64url) and its CBOR form (`lst` as a byte string).
//!
//! [`IetfList`] is the wire object; [`IetfList::encode`] builds it from a [`StatusList`] and
//! [`IetfList::decode`] turns it back, inflating with a bound so a hostile token cannot make us
//! allocate more than the largest list we accept.

use super::{deflate, packing, w3c, Bits, StatusError, StatusList, MAX_ENTRIES};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ciborium::Value as Cbor;
use serde_json::Value as Json;

/// The `status_list` object of a Status List Token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IetfList {
    pub bits: Bits,
    /// The ZLIB-compressed packed byte array (raw bytes; base64url only in the JSON form).
    pub lst: Vec<u8>,
    pub aggregation_uri: Option<String>,
}

/// Errors reading a `status_list` object.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum IetfError {
    #[error("status_list is not a {0} map")]
    NotAMap(&'static str),
    #[error("status_list is missing the required member \"{0}\"")]
    Missing(&'static str),
    #[error("status_list member \"{member}\" is invalid: {reason}")]
    Invalid {
        member: &'static str,
        reason: String,
    },
    #[error("status_list has an unknown or duplicate member \"{0}\"")]
    Unexpected(String),
    #[error(transparent)]
    Status(#[from] StatusError),
    #[error("lst: {0}")]
    Inflate(#[from] deflate::InflateError),
}

impl IetfList {
    /// Encodes `list` (LSB-first packing, ZLIB) without materialising the packed array.
    pub fn encode(list: &StatusList, aggregation_uri: Option<String>) -> Self {
        IetfList {
            bits: list.bits(),
            lst: deflate::zlib_sparse(
                packing::packed_len(list.bits(), list.size()),
                packing::ietf_nonzero_bytes(list),
            ),
            aggregation_uri,
        }
    }

    /// [`IetfList::encode`], and the `encodedList` of the W3C `message` view of the same list
    /// (`statusSize` = `bits`, every value; `None` below the W3C minimum), from one DEFLATE
    /// parse: the two packed arrays differ only by a relabelling of their bytes
    /// ([`packing::ietf_to_w3c_bytes`], [`deflate::zlib_and_relabelled_gzip`]).
    pub fn encode_with_message_view(
        list: &StatusList,
        aggregation_uri: Option<String>,
    ) -> (Self, Option<String>) {
        if list.size() < w3c::MIN_ENTRIES {
            return (IetfList::encode(list, aggregation_uri), None);
        }
        let (lst, gz) = deflate::zlib_and_relabelled_gzip(
            packing::packed_len(list.bits(), list.size()),
            packing::ietf_nonzero_bytes(list),
            &packing::ietf_to_w3c_bytes(list.bits()),
        );
        let ietf = IetfList {
            bits: list.bits(),
            lst,
            aggregation_uri,
        };
        (ietf, Some(w3c::multibase(&gz)))
    }

    /// Inflates `lst` (at most [`MAX_ENTRIES`] entries) and unpacks it. The list size is the
    /// decompressed length times `8 / bits`, as a relying party sees it.
    pub fn decode(&self) -> Result<StatusList, IetfError> {
        let limit = packing::packed_len(self.bits, MAX_ENTRIES);
        let bytes = deflate::inflate_zlib(&self.lst, limit)?;
        Ok(packing::ietf_unpack(self.bits, &bytes)?)
    }

    /// The JSON object `{"bits":…,"lst":…[,"aggregation_uri":…]}`.
    pub fn to_json(&self) -> Json {
        let mut m = serde_json::Map::new();
        m.insert("bits".into(), Json::from(self.bits.get()));
        m.insert("lst".into(), Json::from(URL_SAFE_NO_PAD.encode(&self.lst)));
        if let Some(uri) = &self.aggregation_uri {
            m.insert("aggregation_uri".into(), Json::from(uri.as_str()));
        }
        Json::Object(m)
    }

    /// Reads the JSON form strictly: `bits` an integer in {1,2,4,8}, `lst` unpadded base64url.
    pub fn from_json(v: &Json) -> Result<Self, IetfError> {
        let m = v.as_object().ok_or(IetfError::NotAMap("JSON"))?;
        let bits = match m.get("bits") {
            None => return Err(IetfError::Missing("bits")),
            Some(b) => Bits::new(b.as_u64().ok_or_else(|| IetfError::Invalid {
                member: "bits",
                reason: format!("expected an integer, got {b}"),
            })?)?,
        };
        let lst = match m.get("lst") {
            None => return Err(IetfError::Missing("lst")),
            Some(Json::String(s)) => decode_base64url(s)?,
            Some(other) => {
                return Err(IetfError::Invalid {
                    member: "lst",
                    reason: format!("expected a base64url string, got {other}"),
                })
            }
        };
        let aggregation_uri = match m.get("aggregation_uri") {
            None => None,
            Some(Json::String(s)) => Some(s.clone()),
            Some(other) => {
                return Err(IetfError::Invalid {
                    member: "aggregation_uri",
                    reason: format!("expected a string, got {other}"),
                })
            }
        };
        Ok(IetfList {
            bits,
            lst,
            aggregation_uri,
        })
    }

    /// The CBOR map with text keys `bits`, `lst` (bstr) and optionally `aggregation_uri`, in
    /// that order, as the draft's vectors encode it.
    pub fn to_cbor(&self) -> Cbor {
        let mut m = vec![
            (
                Cbor::Text("bits".into()),
                Cbor::Integer(self.bits.get().into()),
            ),
            (Cbor::Text("lst".into()), Cbor::Bytes(self.lst.clone())),
        ];
        if let Some(uri) = &self.aggregation_uri {
            m.push((
                Cbor::Text("aggregation_uri".into()),
                Cbor::Text(uri.clone()),
            ));
        }
        Cbor::Map(m)
    }

    /// Reads the CBOR form strictly: text keys, `bits` a uint in {1,2,4,8}, `lst` a bstr.
    pub fn from_cbor(v: &Cbor) -> Result<Self, IetfError> {
        let entries = v.as_map().ok_or(IetfError::NotAMap("CBOR"))?;
        let (mut bits, mut lst, mut aggregation_uri) = (None, None, None);
        for (k, val) in entries {
            let key = k.as_text().ok_or_else(|| IetfError::Invalid {
                member: "status_list",
                reason: format!("keys must be text strings, got {k:?}"),
            })?;
            match key {
                "bits" if bits.is_none() => {
                    let n = val
                        .as_integer()
                        .and_then(|i| u64::try_from(i).ok())
                        .ok_or_else(|| IetfError::Invalid {
                            member: "bits",
                            reason: format!("expected an unsigned integer, got {val:?}"),
                        })?;
                    bits = Some(Bits::new(n)?);
                }
                "lst" if lst.is_none() => {
                    lst = Some(
                        val.as_bytes()
                            .ok_or_else(|| IetfError::Invalid {
                                member: "lst",
                                reason: "expected a byte string (major type 2)".into(),
                            })?
                            .clone(),
                    );
                }
                "aggregation_uri" if aggregation_uri.is_none() => {
                    aggregation_uri = Some(
                        val.as_text()
                            .ok_or_else(|| IetfError::Invalid {
                                member: "aggregation_uri",
                                reason: "expected a text string".into(),
                            })?
                            .to_owned(),
                    );
                }
                "bits" | "lst" | "aggregation_uri" => {
                    return Err(IetfError::Unexpected(key.into()))
                }
                // The CDDL map is open to extensions only through the registry; unknown text
                // keys are tolerated, as JSON members are.
                _ => {}
            }
        }
        Ok(IetfList {
            bits: bits.ok_or(IetfError::Missing("bits"))?,
            lst: lst.ok_or(IetfError::Missing("lst"))?,
            aggregation_uri,
        })
    }

    /// The CBOR form serialised (definite lengths, shortest integers).
    pub fn to_cbor_bytes(&self) -> Vec<u8> {
        cbor_to_vec(&self.to_cbor())
    }
}

/// Serialises a CBOR value; writing into a `Vec` cannot fail.
pub fn cbor_to_vec(v: &Cbor) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::into_writer(v, &mut out).expect("serialising CBOR into a Vec cannot fail");
    out
}

/// Decodes base64url without padding, rejecting padding and the standard alphabet with a
/// message that says which.
pub fn decode_base64url(s: &str) -> Result<Vec<u8>, IetfError> {
    if s.ends_with('=') {
        return Err(IetfError::Invalid {
            member: "lst",
            reason: "base64url must not be padded with '='".into(),
        });
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
    {
        return Err(IetfError::Invalid {
            member: "lst",
            reason: format!("character {c:?} is not in the base64url alphabet"),
        });
    }
    URL_SAFE_NO_PAD.decode(s).map_err(|e| IetfError::Invalid {
        member: "lst",
        reason: e.to_string(),
    })
}
