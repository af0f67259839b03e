//! The lifecycle rules of a credential, as pure functions over the records of one list.
//!
//! A credential's status is derived, never set: INVALID once revoked (terminal), else SUSPENDED
//! while any hold is active, else VALID. Holds are named: a loss report is the hold `loss` on the
//! card reported, and a physical card's hold `h` also puts `parent:h` on each of its derived
//! (mobile) cards, so lifting the physical card's hold leaves a mobile card's own loss report in
//! force. A derived card always lives in its parent's list, so every cascade is a change to one
//! list and commits atomically. Every change appends an [`Event`] to each record it touches.

use crate::status::{Bits, Status};
use crate::store::{Change, Extends};
use roaring::RoaringBitmap;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// The kind of a physical card, which cannot itself have a parent (the kinds that may be
/// parents are configuration: [`super::kinds::Kinds`]).
pub const PHYSICAL: &str = "physical";

/// One credential's record, as stored (JSON) beside its list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub credential_id: String,
    pub kind: String,
    /// The physical card this one derives from, in the same list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<Parent>,
    /// Indices of the cards derived from this one (same list), revoked ones included.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<u32>,
    /// Active holds: own (`loss`) and inherited from the parent (`parent:loss`).
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub holds: BTreeSet<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub revoked: bool,
    /// The credential that replaced this one (`reissue`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaced_by: Option<String>,
    /// The credential this one replaced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaces: Option<String>,
    /// The pool asked for at registration (for idempotent retries).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purpose: Option<String>,
    /// The credential's own expiry (Unix seconds), given at registration; `None`: it never
    /// expires, and keeps its list from retiring ([`crate::retire`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
    /// The audit trail, append-only, oldest first.
    pub history: Vec<Event>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Parent {
    pub credential_id: String,
    pub idx: u32,
}

/// One audit entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Unix milliseconds.
    pub at: u64,
    /// The admin token's name.
    pub by: String,
    /// The subject of the caller's TLS client certificate (admin plane with mutual TLS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_subject: Option<String>,
    pub op: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold: Option<String>,
    /// Set when the change cascaded from another credential (its id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
    pub old: String,
    pub new: String,
}

/// One audit entry as the issuer API shows it: `at` as an RFC 3339 UTC time (to the
/// millisecond) for people, and `at_ms`, the stored Unix milliseconds, for machines.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AuditEvent {
    pub at: String,
    pub at_ms: u64,
    pub by: String,
    /// The admin client certificate's subject (mutual TLS), beside the token name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_subject: Option<String>,
    pub op: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hold: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
    pub old: String,
    pub new: String,
}

impl Event {
    /// This entry as the audit trail shows it.
    pub fn audit(&self) -> AuditEvent {
        let time = std::time::UNIX_EPOCH + std::time::Duration::from_millis(self.at);
        AuditEvent {
            at: humantime::format_rfc3339_millis(time).to_string(),
            at_ms: self.at,
            by: self.by.clone(),
            client_subject: self.client_subject.clone(),
            op: self.op.clone(),
            reason: self.reason.clone(),
            request_id: self.request_id.clone(),
            hold: self.hold.clone(),
            via: self.via.clone(),
            old: self.old.clone(),
            new: self.new.clone(),
        }
    }
}

impl Record {
    pub fn status(&self) -> Status {
        if self.revoked {
            Status::INVALID
        } else if self.holds.is_empty() {
            Status::VALID
        } else {
            Status::SUSPENDED
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("records serialise")
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Record, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

/// Who did what, and why: stamped on every event of one operation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stamp {
    pub at: u64,
    pub by: String,
    /// The caller's TLS client certificate subject, with mutual TLS.
    pub client_subject: Option<String>,
    pub op: &'static str,
    pub reason: Option<String>,
    pub request_id: Option<String>,
    pub hold: Option<String>,
}

/// Why an operation cannot be applied.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    #[error("credential {0:?} is revoked: INVALID is terminal and cannot change")]
    Terminal(String),
    #[error("credential {id:?} lives in a {bits}-bit list, which cannot express SUSPENDED")]
    NotSuspendable { id: String, bits: u8 },
    #[error("parent {0:?} is revoked: no card can derive from it")]
    ParentRevoked(String),
    #[error("parent {0:?} is itself a derived card: a derived card has no derived cards")]
    ParentNotPhysical(String),
    #[error("credential {0:?} was already reissued as {1:?}")]
    AlreadyReissued(String, String),
}

/// The records of one list an operation batch reads and changes, with the status each record
/// had when read (the list's entries agree with it).
#[derive(Clone, Debug)]
pub struct ListWork {
    pub bits: Bits,
    pub records: BTreeMap<u32, Record>,
    read_status: BTreeMap<u32, Status>,
    /// Indices this batch allocates in the list.
    pub claims: RoaringBitmap,
    dirty: BTreeSet<u32>,
}

impl ListWork {
    pub fn new(bits: Bits, records: BTreeMap<u32, Record>) -> Self {
        let read_status = records.iter().map(|(&i, r)| (i, r.status())).collect();
        ListWork {
            bits,
            records,
            read_status,
            claims: RoaringBitmap::new(),
            dirty: BTreeSet::new(),
        }
    }

    pub fn get(&self, idx: u32) -> Option<&Record> {
        self.records.get(&idx)
    }

    pub fn is_dirty(&self) -> bool {
        !self.dirty.is_empty()
    }

    /// What the credentials this batch registers do to the list's latest expiry: committed
    /// with them ([`crate::store::registry::Txn::extends`]).
    pub fn extends(&self) -> Extends {
        self.claims
            .iter()
            .filter_map(|idx| self.records.get(&idx))
            .fold(Extends::Nothing, |e, r| {
                e.and(r.expires_at.map_or(Extends::Forever, Extends::Until))
            })
    }

    /// The records to write and the entry changes they imply.
    pub fn writes(&self) -> (Vec<(u32, Vec<u8>)>, Vec<Change>) {
        let mut records = Vec::with_capacity(self.dirty.len());
        let mut changes = Vec::new();
        for &idx in &self.dirty {
            let r = &self.records[&idx];
            records.push((idx, r.to_bytes()));
            let before = self.read_status.get(&idx).copied().unwrap_or(Status::VALID);
            if r.status() != before {
                changes.push(Change {
                    idx,
                    status: r.status(),
                });
            }
        }
        (records, changes)
    }

    /// Runs `f` on one record and logs an event if it changed anything.
    fn touch(&mut self, idx: u32, stamp: &Stamp, via: Option<&str>, f: impl FnOnce(&mut Record)) {
        let mut r = self.records[&idx].clone();
        let old = r.status();
        f(&mut r);
        if r != self.records[&idx] {
            r.history.push(event(stamp, via, old, r.status()));
            self.records.insert(idx, r);
            self.dirty.insert(idx);
        }
    }

    /// Registers a new credential at the claimed index `idx`; with a parent (in this list), the
    /// new card inherits the parent's active own holds.
    pub fn register(
        &mut self,
        idx: u32,
        mut record: Record,
        parent: Option<u32>,
        stamp: &Stamp,
    ) -> Result<(), RuleError> {
        if let Some(p) = parent {
            let pr = &self.records[&p];
            // Which kinds may be parents is configuration, checked when planning; the rules
            // only keep families one level deep, as every cascade assumes.
            if pr.parent.is_some() {
                return Err(RuleError::ParentNotPhysical(pr.credential_id.clone()));
            }
            if pr.revoked {
                return Err(RuleError::ParentRevoked(pr.credential_id.clone()));
            }
            record.parent = Some(Parent {
                credential_id: pr.credential_id.clone(),
                idx: p,
            });
            record.holds = own_holds(pr).map(|h| format!("parent:{h}")).collect();
        }
        record.history.push(Event {
            at: stamp.at,
            by: stamp.by.clone(),
            client_subject: stamp.client_subject.clone(),
            op: stamp.op.to_owned(),
            reason: stamp.reason.clone(),
            request_id: stamp.request_id.clone(),
            hold: None,
            via: None,
            old: Status::VALID.name().to_owned(),
            new: record.status().name().to_owned(),
        });
        self.records.insert(idx, record);
        self.claims.insert(idx);
        self.dirty.insert(idx);
        if let Some(p) = parent {
            self.records
                .get_mut(&p)
                .expect("checked")
                .children
                .push(idx);
            self.dirty.insert(p);
        }
        Ok(())
    }

    /// Puts hold `hold` on the credential and, for a physical card, `parent:<hold>` on each
    /// derived card that is not revoked. Returns whether anything changed.
    pub fn suspend(&mut self, idx: u32, hold: &str, stamp: &Stamp) -> Result<bool, RuleError> {
        let r = &self.records[&idx];
        if r.revoked {
            return Err(RuleError::Terminal(r.credential_id.clone()));
        }
        if self.bits == Bits::One {
            return Err(RuleError::NotSuspendable {
                id: r.credential_id.clone(),
                bits: 1,
            });
        }
        let id = r.credential_id.clone();
        // Only cards of a parent kind ever have children.
        let children = r.children.clone();
        let was = self.dirty.len();
        let changed_self = !r.holds.contains(hold);
        self.touch(idx, stamp, None, |r| {
            r.holds.insert(hold.to_owned());
        });
        let inherited = format!("parent:{hold}");
        for c in children {
            if !self.records[&c].revoked {
                self.touch(c, stamp, Some(&id), |r| {
                    r.holds.insert(inherited.clone());
                });
            }
        }
        Ok(changed_self || self.dirty.len() != was)
    }

    /// Lifts hold `hold` from the credential and, for a physical card, `parent:<hold>` from its
    /// derived cards; their own holds stay. Returns whether anything changed.
    pub fn reinstate(&mut self, idx: u32, hold: &str, stamp: &Stamp) -> Result<bool, RuleError> {
        let r = &self.records[&idx];
        if r.revoked {
            return Err(RuleError::Terminal(r.credential_id.clone()));
        }
        let id = r.credential_id.clone();
        // Only cards of a parent kind ever have children.
        let children = r.children.clone();
        let changed_self = r.holds.contains(hold);
        self.touch(idx, stamp, None, |r| {
            r.holds.remove(hold);
        });
        let inherited = format!("parent:{hold}");
        let mut changed_children = false;
        for c in children {
            if !self.records[&c].revoked && self.records[&c].holds.contains(&inherited) {
                changed_children = true;
                self.touch(c, stamp, Some(&id), |r| {
                    r.holds.remove(&inherited);
                });
            }
        }
        Ok(changed_self || changed_children)
    }

    /// Revokes the credential and, for a physical card, every derived card. Revoking a revoked
    /// credential changes nothing (a retry). `replaced_by` records a reissue.
    pub fn revoke(
        &mut self,
        idx: u32,
        replaced_by: Option<&str>,
        stamp: &Stamp,
    ) -> Result<bool, RuleError> {
        let r = &self.records[&idx];
        if let (Some(new), Some(done)) = (replaced_by, &r.replaced_by) {
            if new != done {
                return Err(RuleError::AlreadyReissued(
                    r.credential_id.clone(),
                    done.clone(),
                ));
            }
        }
        let id = r.credential_id.clone();
        // Only cards of a parent kind ever have children.
        let children = r.children.clone();
        let changed = !r.revoked || (replaced_by.is_some() && r.replaced_by.is_none());
        self.touch(idx, stamp, None, |r| {
            r.revoked = true;
            if let Some(new) = replaced_by {
                r.replaced_by = Some(new.to_owned());
            }
        });
        for c in children {
            if !self.records[&c].revoked {
                self.touch(c, stamp, Some(&id), |r| r.revoked = true);
            }
        }
        Ok(changed)
    }
}

/// The audit entry of a change by `stamp` from `old` to `new`.
fn event(stamp: &Stamp, via: Option<&str>, old: Status, new: Status) -> Event {
    Event {
        at: stamp.at,
        by: stamp.by.clone(),
        client_subject: stamp.client_subject.clone(),
        op: stamp.op.to_owned(),
        reason: stamp.reason.clone(),
        request_id: stamp.request_id.clone(),
        hold: stamp.hold.clone(),
        via: via.map(str::to_owned),
        old: old.name().to_owned(),
        new: new.name().to_owned(),
    }
}

fn own_holds(r: &Record) -> impl Iterator<Item = &String> {
    r.holds.iter().filter(|h| !h.starts_with("parent:"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(id: &str, kind: &str) -> Record {
        Record {
            credential_id: id.into(),
            kind: kind.into(),
            parent: None,
            children: vec![],
            holds: BTreeSet::new(),
            revoked: false,
            replaced_by: None,
            replaces: None,
            purpose: None,
            expires_at: None,
            history: vec![],
        }
    }

    fn stamp(op: &'static str) -> Stamp {
        Stamp {
            at: 1,
            by: "test".into(),
            op,
            reason: Some("r".into()),
            ..Stamp::default()
        }
    }

    fn family() -> ListWork {
        let mut w = ListWork::new(Bits::Two, BTreeMap::new());
        w.register(10, rec("P", PHYSICAL), None, &stamp("register"))
            .unwrap();
        w.register(20, rec("M1", "mobile"), Some(10), &stamp("register"))
            .unwrap();
        w.register(30, rec("M2", "mobile"), Some(10), &stamp("register"))
            .unwrap();
        w
    }

    fn statuses(w: &ListWork) -> Vec<Status> {
        [10, 20, 30].iter().map(|i| w.records[i].status()).collect()
    }

    const V: Status = Status::VALID;
    const S: Status = Status::SUSPENDED;
    const I: Status = Status::INVALID;

    #[test]
    fn physical_loss_cascades_and_mobile_loss_is_local() {
        let mut w = family();
        w.suspend(20, "loss", &stamp("suspend")).unwrap();
        assert_eq!(statuses(&w), [V, S, V]);
        w.suspend(10, "loss", &stamp("suspend")).unwrap();
        assert_eq!(statuses(&w), [S, S, S]);
        // Lifting the physical card's hold leaves M1's own loss report in force.
        w.reinstate(10, "loss", &stamp("reinstate")).unwrap();
        assert_eq!(statuses(&w), [V, S, V]);
        w.reinstate(20, "loss", &stamp("reinstate")).unwrap();
        assert_eq!(statuses(&w), [V, V, V]);
        let m1 = &w.records[&20];
        let ops: Vec<_> = m1
            .history
            .iter()
            .map(|e| (e.op.as_str(), e.new.as_str(), e.via.is_some()))
            .collect();
        assert_eq!(
            ops,
            [
                ("register", "VALID", false),
                ("suspend", "SUSPENDED", false),
                ("suspend", "SUSPENDED", true),
                ("reinstate", "SUSPENDED", true),
                ("reinstate", "VALID", false)
            ]
        );
    }

    #[test]
    fn the_claims_of_a_batch_extend_their_list_to_the_latest_expiry() {
        let mut w = ListWork::new(Bits::Two, BTreeMap::new());
        assert_eq!(w.extends(), Extends::Nothing);
        let expiring = |id: &str, at| Record {
            expires_at: Some(at),
            ..rec(id, PHYSICAL)
        };
        w.register(1, expiring("A", 50), None, &stamp("register"))
            .unwrap();
        w.register(2, expiring("B", 70), None, &stamp("register"))
            .unwrap();
        assert_eq!(w.extends(), Extends::Until(70));
        // A card without an expiry keeps the list forever.
        w.register(3, rec("M", "mobile"), Some(1), &stamp("register"))
            .unwrap();
        assert_eq!(w.extends(), Extends::Forever);
        // Records only rewritten (not claimed) extend nothing.
        let mut later = ListWork::new(Bits::Two, w.records.clone());
        later.suspend(1, "loss", &stamp("suspend")).unwrap();
        assert_eq!(later.extends(), Extends::Nothing);
    }

    #[test]
    fn revocation_is_terminal_and_cascades() {
        let mut w = family();
        w.revoke(20, None, &stamp("revoke")).unwrap();
        assert_eq!(
            w.suspend(20, "loss", &stamp("suspend")),
            Err(RuleError::Terminal("M1".into()))
        );
        assert_eq!(w.revoke(20, None, &stamp("revoke")), Ok(false));
        w.suspend(10, "loss", &stamp("suspend")).unwrap();
        assert_eq!(statuses(&w), [S, I, S]);
        w.revoke(10, None, &stamp("revoke")).unwrap();
        assert_eq!(statuses(&w), [I, I, I]);
        assert_eq!(
            w.register(40, rec("M3", "mobile"), Some(10), &stamp("register")),
            Err(RuleError::ParentRevoked("P".into()))
        );
    }

    #[test]
    fn new_derived_cards_inherit_an_open_loss_report() {
        let mut w = family();
        w.suspend(10, "loss", &stamp("suspend")).unwrap();
        w.register(40, rec("M3", "mobile"), Some(10), &stamp("register"))
            .unwrap();
        assert_eq!(w.records[&40].status(), S);
        w.reinstate(10, "loss", &stamp("reinstate")).unwrap();
        assert_eq!(w.records[&40].status(), V);
        assert_eq!(
            w.register(50, rec("X", "mobile"), Some(20), &stamp("register")),
            Err(RuleError::ParentNotPhysical("M1".into()))
        );
    }

    #[test]
    fn registering_a_derived_card_writes_the_parent_too() {
        let w = family();
        let (recs, _) = w.writes();
        let written: Vec<u32> = recs.iter().map(|(i, _)| *i).collect();
        assert_eq!(written, vec![10, 20, 30]);
        let parent = Record::from_bytes(&recs[0].1).unwrap();
        assert_eq!(parent.children, vec![20, 30]);
    }

    #[test]
    fn writes_carry_only_real_status_changes() {
        let records: BTreeMap<u32, Record> = family().records;
        let mut w = ListWork::new(Bits::Two, records);
        w.suspend(20, "loss", &stamp("suspend")).unwrap();
        w.suspend(20, "court", &stamp("suspend")).unwrap();
        let (recs, changes) = w.writes();
        assert_eq!(recs.len(), 1);
        assert_eq!(changes, vec![Change { idx: 20, status: S }]);
        // Overlapping holds: one lifted, still suspended.
        w.reinstate(20, "loss", &stamp("reinstate")).unwrap();
        assert_eq!(w.records[&20].status(), S);
        assert_eq!(w.suspend(20, "court", &stamp("suspend")), Ok(false));
        let one_bit = ListWork::new(Bits::One, family().records);
        let mut one_bit = one_bit;
        assert!(matches!(
            one_bit.suspend(10, "loss", &stamp("suspend")),
            Err(RuleError::NotSuspendable { .. })
        ));
    }

    /// Issue 19: the audit trail showed Unix milliseconds (1796587324558) where people read it.
    /// Fixed in e8a2d9f.
    #[test]
    fn issue_19_audit_times_were_unix_milliseconds() {
        let e = Event {
            at: 1_796_587_324_558,
            by: "demo".into(),
            client_subject: None,
            op: "register".into(),
            reason: None,
            request_id: None,
            hold: None,
            via: None,
            old: "VALID".into(),
            new: "VALID".into(),
        };
        let a = serde_json::to_value(e.audit()).unwrap();
        assert_eq!(a["at"], "2026-12-06T20:02:04.558Z");
        assert_eq!(a["at_ms"], 1_796_587_324_558_u64);
        assert_eq!(a["by"], "demo");
        assert!(a.get("reason").is_none());
    }
}
