//! The lifecycle rules of a credential, as pure functions over the records of one list.
//!
//! A credential's status is derived, never set: INVALID once revoked (terminal), else SUSPENDED
//! while any hold is active, else VALID. Holds are named: a loss report is the hold `loss` on the
//! card reported, and a physical card's hold `h` also puts `parent:h` on each of its derived
//! (mobile) cards, so lifting the physical card's hold leaves a mobile card's own loss report in
//! force. A derived card lives in its parent's list (`children`, indices), where every cascade
//! is a change to one list, or, with a derived pool (`STATUSD_DERIVED_POOL`), in a list of its
//! own pool (`children_elsewhere`, locations; its `parent.list` names the parent's list): the
//! cascade to those is planned across lists (`plan/family.rs`) with the per-list rules here
//! ([`ListWork::inherit`], [`ListWork::lift`], [`ListWork::revoke_via`]). Every change appends
//! an [`Event`] to each record it touches.

use crate::status::{Bits, Status};
use crate::store::registry::Location;
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
    /// The physical card this one derives from: in the same list, or in `parent.list`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<Parent>,
    /// Indices of the cards derived from this one (same list), revoked ones included.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<u32>,
    /// Where the cards derived from this one in other lists are (a derived pool), revoked ones
    /// included. Records written before derived pools have none: their `children` are all
    /// there is. A link counts only while the record there names this one as its parent
    /// ([`Record::derives_from`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub children_elsewhere: Vec<Location>,
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
    /// The parent's list, when it is not this record's own (a derived pool); absent in records
    /// written before derived pools, whose parent is always in the same list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub list: Option<String>,
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

    /// Whether this record derives from credential `parent` at `at`, in another list than
    /// this record's: what makes a link in `at`'s `children_elsewhere` count. A link to a
    /// record that does not link back (an index whose registration lost a race for its id on a
    /// Redis Cluster) is ignored.
    pub fn derives_from(&self, parent: &str, at: &Location) -> bool {
        self.parent.as_ref().is_some_and(|p| {
            p.credential_id == parent && p.idx == at.idx && p.list.as_deref() == Some(&at.list)
        })
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

    /// Adds the record at `idx` as read from the store (at the version the list was read at),
    /// unless this batch holds it already: a record read after planning began (a derived card
    /// in another list, read when a cascade reaches it).
    pub fn add_read(&mut self, idx: u32, record: Record) {
        if !self.records.contains_key(&idx) && !self.claims.contains(idx) {
            self.read_status.insert(idx, record.status());
            self.records.insert(idx, record);
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
            may_derive_from(pr)?;
            record.parent = Some(Parent {
                credential_id: pr.credential_id.clone(),
                idx: p,
                list: None,
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

    /// Registers a new credential at the claimed index `idx`, derived from `parent`, the
    /// record at `parent_at` in another list (a derived pool): the new card inherits the
    /// parent's active own holds, as in [`ListWork::register`]; the parent's side of the link
    /// is [`ListWork::link_elsewhere`], in the parent's list.
    pub fn register_derived(
        &mut self,
        idx: u32,
        mut record: Record,
        parent: &Record,
        parent_at: &Location,
        stamp: &Stamp,
    ) -> Result<(), RuleError> {
        may_derive_from(parent)?;
        record.parent = Some(Parent {
            credential_id: parent.credential_id.clone(),
            idx: parent_at.idx,
            list: Some(parent_at.list.clone()),
        });
        record.holds = own_holds(parent).map(|h| format!("parent:{h}")).collect();
        self.register(idx, record, None, stamp)
    }

    /// Links the card at `idx` to a card derived from it at `child`, in another list (once).
    /// Returns whether the link is new.
    pub fn link_elsewhere(&mut self, idx: u32, child: &Location) -> bool {
        if self.records[&idx].children_elsewhere.contains(child) {
            return false;
        }
        let r = self.records.get_mut(&idx).expect("loaded");
        r.children_elsewhere.push(child.clone());
        self.dirty.insert(idx);
        true
    }

    /// Puts the inherited hold `parent:<hold>` on the derived card at `idx`, unless it is
    /// revoked: the cascade of its parent's hold `hold` (`via` the parent), from another list.
    /// Returns whether anything changed.
    pub fn inherit(
        &mut self,
        idx: u32,
        hold: &str,
        via: &str,
        stamp: &Stamp,
    ) -> Result<bool, RuleError> {
        let r = &self.records[&idx];
        let inherited = format!("parent:{hold}");
        if r.revoked || r.holds.contains(&inherited) {
            return Ok(false);
        }
        if self.bits == Bits::One {
            return Err(RuleError::NotSuspendable {
                id: r.credential_id.clone(),
                bits: 1,
            });
        }
        self.touch(idx, stamp, Some(via), |r| {
            r.holds.insert(inherited);
        });
        Ok(true)
    }

    /// Lifts the inherited hold `parent:<hold>` from the derived card at `idx` (its own holds
    /// stay): the cascade of its parent's reinstatement, from another list. Returns whether
    /// anything changed.
    pub fn lift(&mut self, idx: u32, hold: &str, via: &str, stamp: &Stamp) -> bool {
        let r = &self.records[&idx];
        let inherited = format!("parent:{hold}");
        if r.revoked || !r.holds.contains(&inherited) {
            return false;
        }
        self.touch(idx, stamp, Some(via), |r| {
            r.holds.remove(&inherited);
        });
        true
    }

    /// Revokes the derived card at `idx`: the cascade of its parent's revocation (`via` the
    /// parent), from another list. Returns whether anything changed.
    pub fn revoke_via(&mut self, idx: u32, via: &str, stamp: &Stamp) -> bool {
        if self.records[&idx].revoked {
            return false;
        }
        self.touch(idx, stamp, Some(via), |r| r.revoked = true);
        true
    }

    /// Brings the derived card at `idx` in line with its parent `parent` (in another list):
    /// revoked if the parent is, else holding `parent:<h>` for exactly the parent's own holds
    /// `h`. What a retry does after a step-wise commit (Redis Cluster) stopped between the
    /// card's list and its parent's. Returns whether anything changed.
    pub fn follow(&mut self, idx: u32, parent: &Record, stamp: &Stamp) -> bool {
        let r = &self.records[&idx];
        if r.revoked {
            return false;
        }
        if parent.revoked {
            return self.revoke_via(idx, &parent.credential_id, stamp);
        }
        let want: BTreeSet<String> = own_holds(parent)
            .map(|h| format!("parent:{h}"))
            .chain(own_holds(r).cloned())
            .collect();
        if r.holds == want || (self.bits == Bits::One && !want.is_empty()) {
            return false;
        }
        self.touch(idx, stamp, Some(&parent.credential_id), |r| r.holds = want);
        true
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

/// Whether a card may derive from `parent`. Which kinds may be parents is configuration,
/// checked when planning; the rules only keep families one level deep, as every cascade
/// assumes.
fn may_derive_from(parent: &Record) -> Result<(), RuleError> {
    if parent.parent.is_some() {
        return Err(RuleError::ParentNotPhysical(parent.credential_id.clone()));
    }
    if parent.revoked {
        return Err(RuleError::ParentRevoked(parent.credential_id.clone()));
    }
    Ok(())
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
            children_elsewhere: vec![],
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

    /// Records written before derived pools (a parent without `list`, no `children_elsewhere`)
    /// read as a family in one list; the new fields are written only when used.
    #[test]
    fn records_without_links_elsewhere_read_as_before() {
        let old = br#"{"credential_id":"M","kind":"mobile","parent":{"credential_id":"P","idx":3},"history":[]}"#;
        let r = Record::from_bytes(old).unwrap();
        let p = r.parent.as_ref().unwrap();
        assert_eq!((p.idx, p.list.as_deref()), (3, None));
        assert!(r.children_elsewhere.is_empty());
        assert_eq!(r.to_bytes(), old.to_vec());
        let at = Location {
            list: "default-1".into(),
            idx: 3,
        };
        assert!(
            !r.derives_from("P", &at),
            "a parent in its own list is not elsewhere"
        );
    }

    /// The per-list halves of a cascade from a parent in another list.
    #[test]
    fn a_card_follows_a_parent_elsewhere() {
        let mut w = ListWork::new(Bits::Two, BTreeMap::new());
        let mut parent = rec("P", PHYSICAL);
        let at = Location {
            list: "default-1".into(),
            idx: 7,
        };
        w.register_derived(1, rec("M", "mobile"), &parent, &at, &stamp("register"))
            .unwrap();
        assert!(w.records[&1].derives_from("P", &at));
        assert_eq!(w.inherit(1, "loss", "P", &stamp("suspend")), Ok(true));
        assert_eq!(w.inherit(1, "loss", "P", &stamp("suspend")), Ok(false));
        w.suspend(1, "fraud", &stamp("suspend")).unwrap();
        assert!(w.lift(1, "loss", "P", &stamp("reinstate")));
        assert_eq!(w.records[&1].status(), S, "its own hold stays");
        // In line with a parent under a court hold: its own hold kept, the parent's added.
        parent.holds.insert("court".into());
        assert!(w.follow(1, &parent, &stamp("link")));
        let holds: Vec<_> = w.records[&1].holds.iter().cloned().collect();
        assert_eq!(holds, ["fraud", "parent:court"]);
        assert!(!w.follow(1, &parent, &stamp("link")));
        parent.revoked = true;
        assert!(w.follow(1, &parent, &stamp("link")));
        assert_eq!(w.records[&1].status(), I);
        assert!(!w.revoke_via(1, "P", &stamp("revoke")));
        assert_eq!(
            w.register_derived(2, rec("M2", "mobile"), &parent, &at, &stamp("register")),
            Err(RuleError::ParentRevoked("P".into()))
        );
        // The parent's side, once.
        let mut pw = ListWork::new(Bits::Two, BTreeMap::from([(7, rec("P", PHYSICAL))]));
        let child = Location {
            list: "mobile-1".into(),
            idx: 1,
        };
        assert!(pw.link_elsewhere(7, &child));
        assert!(!pw.link_elsewhere(7, &child));
        let (recs, changes) = pw.writes();
        assert_eq!((recs.len(), changes.len()), (1, 0));
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
