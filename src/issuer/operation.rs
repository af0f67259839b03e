//! What a client asks of the issuer and what it gets back: the [`Operation`]s of a batch, the
//! syntax checks that need no store (the first step of every batch), and each item's
//! [`Outcome`]. Nothing here reads the store.

use super::record::{Stamp, PHYSICAL};
use super::text;
use super::{Assignment, ItemError, ItemProblem};
use crate::store::check_id;
use crate::store::registry::check_credential_id;
use serde::{Deserialize, Serialize};

/// Most items in one batch request.
pub const MAX_BATCH: usize = 10_000;
/// Longest reason, request id, kind or hold name.
pub const MAX_REASON: usize = 500;
pub const MAX_REQUEST_ID: usize = 128;
pub(super) const MAX_KIND: usize = 32;
/// Longest pool name: a pool's lists are `<purpose>-<n>`, and list ids have at most 64
/// characters.
pub const MAX_PURPOSE: usize = 48;

/// Checks a pool name.
pub fn check_purpose(p: &str) -> Result<(), ItemProblem> {
    if p.len() <= MAX_PURPOSE && check_id(p).is_ok() {
        Ok(())
    } else {
        Err(ItemProblem::bad(format!(
            "purpose must be 1 to {MAX_PURPOSE} characters from A-Z a-z 0-9 - _"
        )))
    }
}
/// The hold a loss report puts on a card when the request names none.
pub const DEFAULT_HOLD: &str = "loss";
/// One operation of a batch (the `op` field selects it).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Operation {
    Register(Registration),
    Suspend(HoldOp),
    Reinstate(HoldOp),
    Revoke(RevokeOp),
    Reissue(ReissueOp),
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Registration {
    pub credential_id: String,
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purpose: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// The credential's own expiry, an RFC 3339 UTC time (`2029-06-30T23:59:59Z`); without
    /// it the credential never expires and its list never retires ([`crate::retire`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
}

/// Parses an `expires_at`: an RFC 3339 time in UTC (`Z`), as the API writes its own times, to
/// Unix seconds (a fraction rounds up: a credential never expires earlier than it says).
pub fn parse_expires_at(v: &str) -> Result<u64, ItemProblem> {
    let bad = |why: String| {
        ItemProblem::bad(format!(
            "expires_at {v:?} is not an RFC 3339 UTC time such as 2029-06-30T23:59:59Z: {why}"
        ))
    };
    if v.len() > 40 {
        return Err(bad("too long".into()));
    }
    let t = humantime::parse_rfc3339(v).map_err(|e| bad(e.to_string()))?;
    let d = t
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|_| bad("before 1970".into()))?;
    Ok(d.as_secs() + u64::from(d.subsec_nanos() > 0))
}

/// Refuses an `expires_at` (Unix seconds) that is not after `now_ms`: an expired credential is
/// not registered.
pub(super) fn check_not_expired(v: &str, at: u64, now_ms: u64) -> Result<(), ItemProblem> {
    if at.saturating_mul(1000) <= now_ms {
        return Err(ItemProblem::bad(format!(
            "expires_at {v:?} is in the past: an expired credential cannot be registered"
        )));
    }
    Ok(())
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct HoldOp {
    pub credential_id: String,
    pub reason: String,
    /// The hold's name (default `loss`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RevokeOp {
    pub credential_id: String,
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ReissueOp {
    pub credential_id: String,
    pub new_credential_id: String,
    /// For a derived card: the physical card the new one derives from (default: the old
    /// card's parent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// The new card's own expiry, as in [`Registration::expires_at`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
}

impl Operation {
    pub fn name(&self) -> &'static str {
        match self {
            Operation::Register(_) => "register",
            Operation::Suspend(_) => "suspend",
            Operation::Reinstate(_) => "reinstate",
            Operation::Revoke(_) => "revoke",
            Operation::Reissue(_) => "reissue",
        }
    }

    pub fn credential_id(&self) -> &str {
        match self {
            Operation::Register(r) => &r.credential_id,
            Operation::Suspend(h) | Operation::Reinstate(h) => &h.credential_id,
            Operation::Revoke(r) => &r.credential_id,
            Operation::Reissue(r) => &r.credential_id,
        }
    }

    /// Syntax checks that need no store (the first step of every batch).
    pub fn check(&self) -> Result<(), ItemProblem> {
        let id = |field: &str, v: &str| {
            if check_credential_id(v) {
                Ok(())
            } else {
                Err(ItemProblem::bad(format!(
                    "{field} must be 1 to 200 visible ASCII characters without spaces"
                )))
            }
        };
        let text = text::check;
        let request_id = |r: &Option<String>| match r {
            Some(r) => text("request_id", r, MAX_REQUEST_ID, true),
            None => Ok(()),
        };
        match self {
            Operation::Register(r) => {
                id("credential_id", &r.credential_id)?;
                check_kind(&r.kind)?;
                if let Some(p) = &r.parent {
                    id("parent", p)?;
                    if *p == r.credential_id {
                        return Err(ItemProblem::new(
                            ItemError::Cycle,
                            "a credential cannot be its own parent",
                        ));
                    }
                    if r.kind == PHYSICAL {
                        return Err(ItemProblem::new(
                            ItemError::Cycle,
                            "a physical card derives from no other card: it cannot have a parent",
                        ));
                    }
                }
                if let Some(p) = &r.purpose {
                    check_purpose(p)?;
                }
                if let Some(reason) = &r.reason {
                    text("reason", reason, MAX_REASON, false)?;
                }
                if let Some(e) = &r.expires_at {
                    parse_expires_at(e)?;
                }
                request_id(&r.request_id)
            }
            Operation::Suspend(h) | Operation::Reinstate(h) => {
                id("credential_id", &h.credential_id)?;
                text("reason", &h.reason, MAX_REASON, true)?;
                if let Some(hold) = &h.hold {
                    check_hold(hold)?;
                }
                request_id(&h.request_id)
            }
            Operation::Revoke(r) => {
                id("credential_id", &r.credential_id)?;
                text("reason", &r.reason, MAX_REASON, true)?;
                request_id(&r.request_id)
            }
            Operation::Reissue(r) => {
                id("credential_id", &r.credential_id)?;
                id("new_credential_id", &r.new_credential_id)?;
                if r.new_credential_id == r.credential_id {
                    return Err(ItemProblem::bad(
                        "new_credential_id must differ from credential_id",
                    ));
                }
                if let Some(p) = &r.parent {
                    id("parent", p)?;
                    if *p == r.new_credential_id || *p == r.credential_id {
                        return Err(ItemProblem::new(
                            ItemError::Cycle,
                            "the new card cannot derive from itself or from the card it replaces",
                        ));
                    }
                }
                text("reason", &r.reason, MAX_REASON, true)?;
                if let Some(e) = &r.expires_at {
                    parse_expires_at(e)?;
                }
                request_id(&r.request_id)
            }
        }
    }

    pub(super) fn stamp(&self, by: &str, at: u64) -> Stamp {
        let (reason, request_id, hold) = match self {
            Operation::Register(r) => (r.reason.clone(), r.request_id.clone(), None),
            Operation::Suspend(h) | Operation::Reinstate(h) => (
                Some(h.reason.clone()),
                h.request_id.clone(),
                Some(h.hold.clone().unwrap_or_else(|| DEFAULT_HOLD.into())),
            ),
            Operation::Revoke(r) => (Some(r.reason.clone()), r.request_id.clone(), None),
            Operation::Reissue(r) => (Some(r.reason.clone()), r.request_id.clone(), None),
        };
        Stamp {
            at,
            by: by.to_owned(),
            client_subject: None,
            op: self.name(),
            reason,
            request_id,
            hold,
        }
    }
}

/// A kind or hold name: 1 to 32 characters from a-z 0-9 - _.
pub(super) fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_KIND
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

fn check_kind(kind: &str) -> Result<(), ItemProblem> {
    if is_name(kind) {
        Ok(())
    } else {
        Err(ItemProblem::bad(
            "kind must be physical, mobile, or another name of 1 to 32 characters from a-z 0-9 - _",
        ))
    }
}

fn check_hold(hold: &str) -> Result<(), ItemProblem> {
    if is_name(hold) {
        Ok(())
    } else {
        Err(ItemProblem::bad(
            "hold must be 1 to 32 characters from a-z 0-9 - _",
        ))
    }
}

/// The result of one item.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Outcome {
    pub credential_id: String,
    /// `registered`, `exists` (an idempotent retry), `changed` or `unchanged`.
    pub result: &'static str,
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub assignment: Option<Assignment>,
    /// Other credentials whose status the operation changed (cascades), with their new status.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub affected: Vec<Affected>,
    /// For `reissue`: the new credential.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new_credential: Option<Box<Outcome>>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Affected {
    pub credential_id: String,
    pub status: &'static str,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::issuer::tests::{register, reissue, suspend};

    fn error(op: &Operation) -> ItemError {
        op.check().expect_err("refused").error
    }

    #[test]
    fn well_formed_operations_pass() {
        for op in [
            register("card-1", "physical", None),
            register("phone-1", "mobile", Some("card-1")),
            suspend("card-1", None),
            suspend("card-1", Some("fraud_check")),
            Operation::Revoke(RevokeOp {
                credential_id: "card-1".into(),
                reason: "deceased".into(),
                request_id: Some("ticket-42".into()),
            }),
            reissue("card-1", "card-2", None),
        ] {
            assert_eq!(op.check(), Ok(()), "{op:?}");
        }
    }

    #[test]
    fn malformed_fields_are_bad_items() {
        assert_eq!(error(&register("", "physical", None)), ItemError::BadItem);
        assert_eq!(
            error(&register("a b", "physical", None)),
            ItemError::BadItem
        );
        assert_eq!(
            error(&register(&"x".repeat(201), "physical", None)),
            ItemError::BadItem
        );
        assert_eq!(
            error(&register("card-1", "Physical", None)),
            ItemError::BadItem
        );
        assert_eq!(
            error(&register("card-1", &"k".repeat(33), None)),
            ItemError::BadItem
        );
        assert_eq!(error(&suspend("card-1", Some("Loss"))), ItemError::BadItem);
        assert_eq!(error(&suspend("card-1", Some(""))), ItemError::BadItem);
        let no_reason = Operation::Revoke(RevokeOp {
            credential_id: "card-1".into(),
            reason: String::new(),
            request_id: None,
        });
        assert_eq!(error(&no_reason), ItemError::BadItem);
        let long_reason = Operation::Reinstate(HoldOp {
            credential_id: "card-1".into(),
            reason: "r".repeat(MAX_REASON + 1),
            hold: None,
            request_id: None,
        });
        assert_eq!(error(&long_reason), ItemError::BadItem);
        let mut bad_pool = Registration {
            credential_id: "card-1".into(),
            kind: "physical".into(),
            parent: None,
            purpose: Some("a".repeat(MAX_PURPOSE + 1)),
            reason: None,
            request_id: None,
            expires_at: None,
        };
        assert_eq!(
            error(&Operation::Register(bad_pool.clone())),
            ItemError::BadItem
        );
        bad_pool.purpose = Some("a".repeat(MAX_PURPOSE));
        assert_eq!(Operation::Register(bad_pool).check(), Ok(()));
        let e = reissue("card-1", "card-1", None).check().unwrap_err();
        assert_eq!(e.error, ItemError::BadItem);
        assert_eq!(e.detail, "new_credential_id must differ from credential_id");
    }

    #[test]
    fn expiries_are_rfc3339_utc_times() {
        assert_eq!(parse_expires_at("2029-06-30T23:59:59Z"), Ok(1_877_558_399));
        assert_eq!(parse_expires_at("1970-01-01T00:00:00.5Z"), Ok(1));
        for bad in [
            "2029-06-30",
            "2029-06-30T23:59:59+02:00",
            "1877644799",
            "2029-13-01T00:00:00Z",
            "",
        ] {
            let e = parse_expires_at(bad).unwrap_err();
            assert_eq!(e.error, ItemError::BadItem, "{bad}");
            assert!(e.detail.contains("RFC 3339"), "{}", e.detail);
        }
        let mut reg = Registration {
            credential_id: "card-1".into(),
            kind: "physical".into(),
            parent: None,
            purpose: None,
            reason: None,
            request_id: None,
            expires_at: Some("next week".into()),
        };
        assert_eq!(error(&Operation::Register(reg.clone())), ItemError::BadItem);
        reg.expires_at = Some("2029-06-30T23:59:59Z".into());
        assert_eq!(Operation::Register(reg).check(), Ok(()));
        let past = check_not_expired("x", 10, 10_000).unwrap_err();
        assert!(past.detail.contains("in the past"), "{}", past.detail);
        assert_eq!(check_not_expired("x", 11, 10_000), Ok(()));
    }

    #[test]
    fn cycles_are_refused_before_the_store_is_read() {
        assert_eq!(
            error(&register("card-1", "mobile", Some("card-1"))),
            ItemError::Cycle
        );
        assert_eq!(
            error(&register("card-1", PHYSICAL, Some("card-0"))),
            ItemError::Cycle
        );
        assert_eq!(
            error(&reissue("phone-1", "phone-2", Some("phone-2"))),
            ItemError::Cycle
        );
        assert_eq!(
            error(&reissue("phone-1", "phone-2", Some("phone-1"))),
            ItemError::Cycle
        );
    }

    #[test]
    fn a_hold_without_a_name_is_the_loss_hold() {
        let stamp = suspend("card-1", None).stamp("clerk", 7);
        assert_eq!(stamp.hold.as_deref(), Some(DEFAULT_HOLD));
        assert_eq!(
            (stamp.op, stamp.by.as_str(), stamp.at),
            ("suspend", "clerk", 7)
        );
        assert_eq!(stamp.reason.as_deref(), Some("card lost"));
        let stamp = suspend("card-1", Some("fraud")).stamp("clerk", 7);
        assert_eq!(stamp.hold.as_deref(), Some("fraud"));
        assert_eq!(
            register("card-1", "physical", None).stamp("clerk", 7).hold,
            None
        );
    }

    #[test]
    fn operations_are_tagged_by_op_and_refuse_unknown_fields() {
        let op: Operation =
            serde_json::from_str(r#"{"op":"suspend","credential_id":"card-1","reason":"lost"}"#)
                .unwrap();
        assert_eq!((op.name(), op.credential_id()), ("suspend", "card-1"));
        assert!(serde_json::from_str::<Operation>(
            r#"{"op":"revoke","credential_id":"card-1","reason":"x","hold":"loss"}"#
        )
        .is_err());
        assert!(
            serde_json::from_str::<Operation>(r#"{"op":"delete","credential_id":"c"}"#).is_err()
        );
        let back = serde_json::to_value(reissue("a", "b", None)).unwrap();
        assert_eq!(back["op"], "reissue");
        assert!(
            back.get("parent").is_none(),
            "absent options are not serialised"
        );
    }
}
