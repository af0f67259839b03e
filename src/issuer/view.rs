//! What the issuer shows of the store: a credential's [`Assignment`] (what the issuer embeds in
//! it to point at its status), [`CredentialView`] and [`ListView`] for the admin API. Reads
//! only.

use super::record::Record;
use super::Issuer;
use crate::status::w3c::{self, Purpose};
use crate::status::Bits;
use crate::store::registry::{Location, Registry};
use crate::store::{ListMeta, Store, StoreError};
use serde::Serialize;
use serde_json::{json, Value as Json};
use std::time::UNIX_EPOCH;

/// What the issuer embeds in a credential to point at its status.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Assignment {
    pub list_id: String,
    pub idx: u32,
    /// The JOSE `status` claim (draft-ietf-oauth-status-list §6.1).
    pub status_claim: Json,
    /// The CWT claim 65535 (`status`), as JSON for readability and as base64url CBOR.
    pub cwt_status_claim: Json,
    pub cwt_status_claim_cbor: String,
    /// W3C `credentialStatus` entries for the revocation and suspension views (empty for lists
    /// under the 131,072 entries the W3C REC requires, which have no W3C view).
    pub credential_status: Json,
    /// The same two views as VC 1.1 `StatusList2021Entry` entries, for VC 1.1 credentials
    /// (empty under 131,072 entries, like `credential_status`).
    pub credential_status_2021: Json,
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
        let uri = self.urls.list(&at.list);
        let claim = json!({"status_list": {"idx": at.idx, "uri": uri}});
        let cbor = {
            use ciborium::Value as C;
            let map = C::Map(vec![(
                C::Text("status_list".into()),
                C::Map(vec![
                    (C::Text("idx".into()), C::Integer(at.idx.into())),
                    (C::Text("uri".into()), C::Text(uri.clone())),
                ]),
            )]);
            let mut out = Vec::new();
            ciborium::into_writer(&map, &mut out).expect("CBOR to a Vec");
            base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, out)
        };
        let w3c_views: &[Purpose] = if size >= w3c::MIN_ENTRIES {
            &[Purpose::Revocation, Purpose::Suspension]
        } else {
            &[]
        };
        let entries: Vec<Json> = w3c_views
            .iter()
            .copied()
            .map(|p| w3c::status_entry(&self.urls.credential(&at.list, p), at.idx, p, Bits::One))
            .collect();
        Assignment {
            list_id: at.list.clone(),
            idx: at.idx,
            status_claim: claim.clone(),
            cwt_status_claim: claim,
            cwt_status_claim_cbor: cbor,
            credential_status: Json::Array(entries),
            credential_status_2021: Json::Array(
                w3c_views
                    .iter()
                    .map(|&p| {
                        crate::status::sl2021::status_entry(
                            &self.urls.sl2021(&at.list, p),
                            at.idx,
                            p,
                        )
                    })
                    .collect(),
            ),
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
        assert_eq!(small.status_claim, claim);
        assert_eq!(small.cwt_status_claim, claim);
        let cbor = base64::Engine::decode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            &small.cwt_status_claim_cbor,
        )
        .unwrap();
        let decoded: serde_json::Value = ciborium::from_reader(&cbor[..]).unwrap();
        assert_eq!(decoded, claim);
        assert_eq!(
            small.credential_status,
            json!([]),
            "no W3C view under 131,072"
        );
        assert_eq!(small.credential_status_2021, json!([]));

        let big = issuer.assignment(&at, MIN_ENTRIES);
        let w3c = big.credential_status.as_array().unwrap();
        let purposes: Vec<_> = w3c.iter().map(|e| &e["statusPurpose"]).collect();
        assert_eq!(purposes, ["revocation", "suspension"]);
        assert_eq!(w3c[0]["statusListIndex"], "42");
        assert_eq!(
            w3c[1]["statusListCredential"],
            "https://status.example/bitstringlists/default-1/suspension"
        );
        assert_eq!(big.credential_status_2021.as_array().unwrap().len(), 2);
    }
}
