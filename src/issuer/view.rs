//! What the issuer shows of the store: a credential's [`Assignment`] (what the issuer embeds in
//! it to point at its status), [`CredentialView`] and [`ListView`] for the admin API. Reads
//! only.

use super::record::Record;
use super::Issuer;
use crate::routes::{PublicUrls, BITSTRING_LISTS, STATUS_LISTS, STATUS_LIST_2021};
use crate::status::w3c::{self, Purpose};
use crate::status::Bits;
use crate::store::registry::{Location, Registry};
use crate::store::{ListMeta, Store, StoreError};
use serde::Serialize;
use serde_json::{json, Value as Json};
use std::time::UNIX_EPOCH;

/// What the issuer embeds in a credential to point at its status: the list and index, from
/// which its claims are written when it is serialised (`list_id`, `idx`, `status_claim`,
/// `cwt_status_claim`, `cwt_status_claim_cbor`, `credential_status`, `credential_status_2021`,
/// each as the method of that name gives it). A bulk import answers 1.5 kB of them per
/// registration: built as JSON trees, they were a fifth of its CPU (issue 16).
#[derive(Clone, Debug, PartialEq)]
pub struct Assignment {
    pub list_id: String,
    pub idx: u32,
    /// Where the list is published.
    urls: PublicUrls,
    /// Whether the list has W3C views (131,072 entries or more, as the W3C REC requires).
    w3c: bool,
}

/// The W3C views of a list, in the order its assignment names them.
const W3C_VIEWS: [Purpose; 2] = [Purpose::Revocation, Purpose::Suspension];

impl Assignment {
    /// The W3C views the list has: none under [`w3c::MIN_ENTRIES`].
    fn views(&self) -> &'static [Purpose] {
        if self.w3c {
            &W3C_VIEWS
        } else {
            &[]
        }
    }

    /// The JOSE `status` claim (draft-ietf-oauth-status-list §6.1); the CWT claim 65535
    /// (`status`) is the same, as JSON for readability.
    pub fn status_claim(&self) -> Json {
        json!({"status_list": {"idx": self.idx, "uri": self.urls.list(&self.list_id)}})
    }

    /// The CWT claim 65535 as base64url CBOR: `{"status_list": {"idx": …, "uri": …}}`.
    pub fn cwt_status_claim_cbor(&self) -> String {
        let uri = self.urls.list(&self.list_id);
        let mut out = Vec::with_capacity(32 + uri.len());
        out.push(0xa1);
        cbor_text(&mut out, "status_list");
        out.push(0xa2);
        cbor_text(&mut out, "idx");
        cbor_head(&mut out, 0, self.idx.into());
        cbor_text(&mut out, "uri");
        cbor_text(&mut out, &uri);
        base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, out)
    }

    /// W3C `credentialStatus` entries for the revocation and suspension views (empty for lists
    /// under the 131,072 entries the W3C REC requires, which have no W3C view).
    pub fn credential_status(&self) -> Json {
        let entry = |&p| {
            w3c::status_entry(
                &self.urls.credential(&self.list_id, p),
                self.idx,
                p,
                Bits::One,
            )
        };
        Json::Array(self.views().iter().map(entry).collect())
    }

    /// The same two views as VC 1.1 `StatusList2021Entry` entries, for VC 1.1 credentials
    /// (empty under 131,072 entries, like `credential_status`).
    pub fn credential_status_2021(&self) -> Json {
        let entry = |&p| {
            crate::status::sl2021::status_entry(&self.urls.sl2021(&self.list_id, p), self.idx, p)
        };
        Json::Array(self.views().iter().map(entry).collect())
    }

    /// This assignment with its keys in sorted order (the order of a `serde_json::Value`),
    /// as the batch answer has them.
    pub fn sorted(&self) -> impl Serialize + '_ {
        Fields {
            a: self,
            sorted: true,
        }
    }
}

/// The head of a CBOR item of major type `major` and argument `n`, in its shortest form.
fn cbor_head(out: &mut Vec<u8>, major: u8, n: u64) {
    let m = major << 5;
    match n {
        0..=23 => out.push(m | n as u8),
        24..=0xff => out.extend([m | 24, n as u8]),
        0x100..=0xffff => {
            out.push(m | 25);
            out.extend((n as u16).to_be_bytes());
        }
        0x1_0000..=0xffff_ffff => {
            out.push(m | 26);
            out.extend((n as u32).to_be_bytes());
        }
        _ => {
            out.push(m | 27);
            out.extend(n.to_be_bytes());
        }
    }
}

/// A CBOR text string.
fn cbor_text(out: &mut Vec<u8>, s: &str) {
    cbor_head(out, 3, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

impl Serialize for Assignment {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        Fields {
            a: self,
            sorted: false,
        }
        .serialize(s)
    }
}

/// An assignment's fields, written straight to the serializer: in declaration order, or sorted.
/// The claims inside are objects with sorted keys, as `serde_json::Value` wrote them.
struct Fields<'a> {
    a: &'a Assignment,
    sorted: bool,
}

impl Serialize for Fields<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap as _;
        let a = self.a;
        let claim = Claim(a);
        let cbor = a.cwt_status_claim_cbor();
        let w3c = Entries {
            a,
            kind: EntryKind::Bitstring,
        };
        let sl2021 = Entries {
            a,
            kind: EntryKind::StatusList2021,
        };
        let mut m = s.serialize_map(Some(7))?;
        if self.sorted {
            m.serialize_entry("credential_status", &w3c)?;
            m.serialize_entry("credential_status_2021", &sl2021)?;
            m.serialize_entry("cwt_status_claim", &claim)?;
            m.serialize_entry("cwt_status_claim_cbor", &cbor)?;
            m.serialize_entry("idx", &a.idx)?;
            m.serialize_entry("list_id", &a.list_id)?;
            m.serialize_entry("status_claim", &claim)?;
        } else {
            m.serialize_entry("list_id", &a.list_id)?;
            m.serialize_entry("idx", &a.idx)?;
            m.serialize_entry("status_claim", &claim)?;
            m.serialize_entry("cwt_status_claim", &claim)?;
            m.serialize_entry("cwt_status_claim_cbor", &cbor)?;
            m.serialize_entry("credential_status", &w3c)?;
            m.serialize_entry("credential_status_2021", &sl2021)?;
        }
        m.end()
    }
}

/// [`Assignment::status_claim`], written without building it.
struct Claim<'a>(&'a Assignment);

impl Serialize for Claim<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap as _;
        struct List<'a>(&'a Assignment);
        impl Serialize for List<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let a = self.0;
                let uri = format_args!("{}/{STATUS_LISTS}/{}", a.urls.base(), a.list_id);
                let mut m = s.serialize_map(Some(2))?;
                m.serialize_entry("idx", &a.idx)?;
                m.serialize_entry("uri", &uri)?;
                m.end()
            }
        }
        let mut m = s.serialize_map(Some(1))?;
        m.serialize_entry("status_list", &List(self.0))?;
        m.end()
    }
}

#[derive(Clone, Copy)]
enum EntryKind {
    Bitstring,
    StatusList2021,
}

/// [`Assignment::credential_status`] or [`Assignment::credential_status_2021`], written without
/// building them.
struct Entries<'a> {
    a: &'a Assignment,
    kind: EntryKind,
}

impl Serialize for Entries<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap as _, SerializeSeq as _};
        struct Entry<'a> {
            a: &'a Assignment,
            kind: EntryKind,
            purpose: Purpose,
        }
        impl Serialize for Entry<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let (a, p) = (self.a, self.purpose);
                let (dir, ty) = match self.kind {
                    EntryKind::Bitstring => (BITSTRING_LISTS, "BitstringStatusListEntry"),
                    EntryKind::StatusList2021 => (STATUS_LIST_2021, "StatusList2021Entry"),
                };
                let url = format_args!("{}/{dir}/{}/{p}", a.urls.base(), a.list_id);
                let mut m = s.serialize_map(Some(5))?;
                m.serialize_entry("id", &format_args!("{url}#{}", a.idx))?;
                m.serialize_entry("statusListCredential", &url)?;
                m.serialize_entry("statusListIndex", &format_args!("{}", a.idx))?;
                m.serialize_entry("statusPurpose", p.as_str())?;
                m.serialize_entry("type", ty)?;
                m.end()
            }
        }
        let views = self.a.views();
        let mut seq = s.serialize_seq(Some(views.len()))?;
        for &purpose in views {
            seq.serialize_element(&Entry {
                a: self.a,
                kind: self.kind,
                purpose,
            })?;
        }
        seq.end()
    }
}

/// A credential as `GET /v1/credentials/{id}` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct CredentialView {
    pub credential_id: String,
    pub kind: String,
    pub status: &'static str,
    pub holds: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    pub children: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replaced_by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replaces: Option<String>,
    /// The credential's own expiry (RFC 3339 UTC), if it was registered with one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    pub assignment: Assignment,
}

/// A list as the admin API shows it.
#[derive(Clone, Debug, Serialize)]
pub struct ListView {
    pub list_id: String,
    pub bits: u8,
    pub size: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub purpose: Option<String>,
    pub allocated: u64,
    /// `allocated / size`.
    pub fill: f64,
    /// Whether new top-level cards are still allocated here.
    pub open: bool,
    pub version: u64,
    /// Unix seconds of the last change, for machines.
    pub updated_at: u64,
    /// The same as an RFC 3339 UTC time, for people.
    pub updated: String,
    /// When the list was retired (RFC 3339 UTC): every credential in it had expired; it is no
    /// longer published and its URLs answer 410 ([`crate::retire`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retired_at: Option<String>,
}

/// Unix seconds as an RFC 3339 UTC time, for people.
fn rfc3339(secs: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + std::time::Duration::from_secs(secs)).to_string()
}

impl Issuer {
    /// What the issuer embeds for a credential at `at` in a list of `size` entries.
    pub fn assignment(&self, at: &Location, size: u32) -> Assignment {
        Assignment {
            list_id: at.list.clone(),
            idx: at.idx,
            urls: self.urls.clone(),
            w3c: size >= w3c::MIN_ENTRIES,
        }
    }

    pub(super) fn list_view(&self, m: &ListMeta) -> ListView {
        let fill = m.allocated as f64 / f64::from(m.size.max(1));
        ListView {
            list_id: m.id.clone(),
            bits: m.bits,
            size: m.size,
            purpose: m.purpose.clone(),
            allocated: m.allocated,
            fill,
            open: m.purpose.is_some() && super::pool::is_open(m, self.settings.fill_threshold),
            version: m.version,
            updated_at: m.updated_at,
            updated: rfc3339(m.updated_at),
            retired_at: m.life.retired_at.map(rfc3339),
        }
    }

    pub async fn lists(&self) -> Result<Vec<ListView>, StoreError> {
        let mut metas = self.store.lists().await?;
        metas.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(metas.iter().map(|m| self.list_view(m)).collect())
    }

    pub async fn list(&self, id: &str) -> Result<Option<ListView>, StoreError> {
        Ok(self.meta(id).await?.map(|m| self.list_view(&m)))
    }

    /// One list's metadata.
    pub(super) async fn meta(&self, id: &str) -> Result<Option<ListMeta>, StoreError> {
        self.store.meta(id).await
    }

    /// One credential's record and place; `None` if it is not registered, or bound only where
    /// its record is not (a registration not committed yet on a Redis Cluster, whose bindings
    /// are set beside the commit: see `Planner::unsettled`).
    pub async fn credential(&self, id: &str) -> Result<Option<(Location, Record)>, StoreError> {
        let Some(at) = self.store.locate(&[id.to_owned()]).await?.pop().flatten() else {
            return Ok(None);
        };
        let (_, mut recs) = self.store.records(&at.list, &[at.idx]).await?;
        let Some(Some(bytes)) = recs.pop() else {
            return Ok(None);
        };
        let rec = Record::from_bytes(&bytes).map_err(|e| StoreError::Corrupt {
            list: at.list.clone(),
            reason: format!("record {}: {e}", at.idx),
        })?;
        if rec.credential_id != id {
            return Ok(None);
        }
        Ok(Some((at, rec)))
    }

    /// The view of one credential, children named by id.
    pub async fn view(&self, id: &str) -> Result<Option<CredentialView>, StoreError> {
        let Some((at, rec)) = self.credential(id).await? else {
            return Ok(None);
        };
        let mut children = if rec.children.is_empty() {
            Vec::new()
        } else {
            let (_, recs) = self.store.records(&at.list, &rec.children).await?;
            recs.into_iter()
                .flatten()
                .filter_map(|b| Record::from_bytes(&b).ok())
                .map(|r| r.credential_id)
                .collect()
        };
        // Derived cards in other lists (a derived pool), those that link back only.
        for child in &rec.children_elsewhere {
            let (_, recs) = self.store.records(&child.list, &[child.idx]).await?;
            children.extend(
                recs.into_iter()
                    .flatten()
                    .filter_map(|b| Record::from_bytes(&b).ok())
                    .filter(|r| r.derives_from(&rec.credential_id, &at))
                    .map(|r| r.credential_id),
            );
        }
        Ok(Some(CredentialView {
            credential_id: rec.credential_id.clone(),
            kind: rec.kind.clone(),
            status: rec.status().name(),
            holds: rec.holds.iter().cloned().collect(),
            parent: rec.parent.as_ref().map(|p| p.credential_id.clone()),
            children,
            replaced_by: rec.replaced_by.clone(),
            replaces: rec.replaces.clone(),
            expires_at: rec.expires_at.map(rfc3339),
            assignment: self.assignment(&at, self.meta(&at.list).await?.map_or(0, |m| m.size)),
        }))
    }
}

#[cfg(test)]
mod tests {
    use crate::issuer::tests::issuer;
    use crate::status::w3c::MIN_ENTRIES;
    use crate::store::registry::Location;
    use serde_json::json;

    #[test]
    fn an_assignment_points_at_the_list_in_every_form() {
        let (issuer, _dir) = issuer();
        let at = Location {
            list: "default-1".into(),
            idx: 42,
        };
        let claim = json!({"status_list": {
            "idx": 42,
            "uri": "https://status.example/statuslists/default-1",
        }});
        let small = issuer.assignment(&at, MIN_ENTRIES - 1);
        assert_eq!(small.status_claim(), claim);
        let cbor = base64::Engine::decode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            small.cwt_status_claim_cbor(),
        )
        .unwrap();
        let decoded: serde_json::Value = ciborium::from_reader(&cbor[..]).unwrap();
        assert_eq!(decoded, claim);
        assert_eq!(
            small.credential_status(),
            json!([]),
            "no W3C view under 131,072"
        );
        assert_eq!(small.credential_status_2021(), json!([]));

        let big = issuer.assignment(&at, MIN_ENTRIES);
        let w3c = big.credential_status();
        let w3c = w3c.as_array().unwrap();
        let purposes: Vec<_> = w3c.iter().map(|e| &e["statusPurpose"]).collect();
        assert_eq!(purposes, ["revocation", "suspension"]);
        assert_eq!(w3c[0]["statusListIndex"], "42");
        assert_eq!(
            w3c[1]["statusListCredential"],
            "https://status.example/bitstringlists/default-1/suspension"
        );
        assert_eq!(big.credential_status_2021().as_array().unwrap().len(), 2);
    }

    /// Assignments are written straight to the answer (issue 16: building them as JSON trees
    /// was a fifth of a bulk import's CPU): the bytes are those of the trees, in declaration
    /// order (a single item's answer, a credential's view) and sorted (the batch answer).
    #[test]
    fn assignments_serialise_as_their_json_trees_did() {
        let (issuer, _dir) = issuer();
        for (list, idx, size) in [
            ("default-1", 42, MIN_ENTRIES),
            ("small-7", 0, MIN_ENTRIES - 1),
            ("l", 23, 1 << 20),
            ("l", 24, 1 << 20),
            (
                "a-list-id-long-enough-for-a-two-byte-cbor-length-of-its-uri",
                255,
                1 << 20,
            ),
            ("l", 256, 1 << 20),
            ("l", 65_535, 1 << 20),
            ("l", 65_536, 1 << 26),
            ("l", u32::MAX, u32::MAX),
        ] {
            let a = issuer.assignment(
                &Location {
                    list: list.into(),
                    idx,
                },
                size,
            );
            let claim = a.status_claim();
            let declared = format!(
                r#"{{"list_id":{},"idx":{idx},"status_claim":{claim},"cwt_status_claim":{claim},"cwt_status_claim_cbor":{},"credential_status":{},"credential_status_2021":{}}}"#,
                json!(list),
                json!(a.cwt_status_claim_cbor()),
                a.credential_status(),
                a.credential_status_2021(),
            );
            assert_eq!(serde_json::to_string(&a).unwrap(), declared);
            let tree = json!({
                "list_id": list,
                "idx": idx,
                "status_claim": claim,
                "cwt_status_claim": claim,
                "cwt_status_claim_cbor": a.cwt_status_claim_cbor(),
                "credential_status": a.credential_status(),
                "credential_status_2021": a.credential_status_2021(),
            });
            assert_eq!(
                serde_json::to_string(&a.sorted()).unwrap(),
                tree.to_string()
            );
            // The CBOR claim as ciborium writes the same map.
            use ciborium::Value as C;
            let map = C::Map(vec![(
                C::Text("status_list".into()),
                C::Map(vec![
                    (C::Text("idx".into()), C::Integer(idx.into())),
                    (
                        C::Text("uri".into()),
                        C::Text(claim["status_list"]["uri"].as_str().unwrap().into()),
                    ),
                ]),
            )]);
            let mut cbor = Vec::new();
            ciborium::into_writer(&map, &mut cbor).unwrap();
            assert_eq!(
                a.cwt_status_claim_cbor(),
                base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, cbor),
                "{idx}"
            );
        }
    }
}
