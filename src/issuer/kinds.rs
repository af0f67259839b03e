//! The credential kinds the issuer accepts, and which of them may have derived cards: explicit
//! configuration (`STATUSD_CREDENTIAL_KINDS`, `STATUSD_PARENT_KINDS`), so a typo such as
//! `--kind mobil` is refused with the accepted kinds instead of registered silently.
//!
//! This module only answers "is this kind accepted / may it be a parent"; the lifecycle rules
//! that follow from a card having a parent are in [`super::record`].

use super::operation::{is_name, MAX_KIND};
use super::{ItemError, ItemProblem, Operation};
use std::fmt::Write as _;

/// The accepted kinds, in the order configured, and the subset that may be parents.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Kinds {
    accepted: Vec<String>,
    parents: Vec<String>,
}

/// Why a kinds setting cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KindsError {
    #[error("{0:?} is not a kind: use 1 to {MAX_KIND} characters from a-z 0-9 - _")]
    BadName(String),
    #[error("{0:?} is listed twice")]
    Repeated(String),
    #[error("no kind is listed")]
    Empty,
    #[error("parent kind {0:?} is not one of the accepted kinds")]
    UnknownParent(String),
}

impl Default for Kinds {
    /// The mobile ID card: physical cards, and the mobile cards derived from them.
    fn default() -> Self {
        Kinds {
            accepted: vec!["physical".into(), "mobile".into()],
            parents: vec!["physical".into()],
        }
    }
}

/// Splits a comma-separated list of names; blanks around commas are ignored.
fn names(value: &str, allow_empty: bool) -> Result<Vec<String>, KindsError> {
    let mut out: Vec<String> = Vec::new();
    if value.trim().is_empty() {
        return if allow_empty {
            Ok(out)
        } else {
            Err(KindsError::Empty)
        };
    }
    for name in value.split(',').map(str::trim) {
        if !is_name(name) {
            return Err(KindsError::BadName(name.to_owned()));
        }
        if out.iter().any(|n| n == name) {
            return Err(KindsError::Repeated(name.to_owned()));
        }
        out.push(name.to_owned());
    }
    Ok(out)
}

impl Kinds {
    /// Parses the comma-separated settings: `accepted` must name at least one kind; `parents`
    /// (possibly empty: no derived cards at all) must be among them.
    pub fn parse(accepted: &str, parents: &str) -> Result<Kinds, KindsError> {
        let accepted = names(accepted, false)?;
        let parents = names(parents, true)?;
        if let Some(p) = parents.iter().find(|p| !accepted.contains(p)) {
            return Err(KindsError::UnknownParent(p.clone()));
        }
        Ok(Kinds { accepted, parents })
    }

    pub fn accepted(&self) -> &[String] {
        &self.accepted
    }

    pub fn parents(&self) -> &[String] {
        &self.parents
    }

    pub fn may_be_parent(&self, kind: &str) -> bool {
        self.parents.iter().any(|p| p == kind)
    }

    /// Checks the kinds an operation names: a registration's kind must be accepted, and a card
    /// of a parent kind derives from no other card. Other operations name no kind.
    pub fn check(&self, op: &Operation) -> Result<(), ItemProblem> {
        let Operation::Register(r) = op else {
            return Ok(());
        };
        if !self.accepted.contains(&r.kind) {
            return Err(ItemProblem::bad(format!(
                "kind {:?} is not accepted; the accepted kinds are {} (the server's \
                 STATUSD_CREDENTIAL_KINDS)",
                r.kind,
                list(&self.accepted)
            )));
        }
        if r.parent.is_some() && self.may_be_parent(&r.kind) {
            return Err(ItemProblem::new(
                ItemError::Cycle,
                format!(
                    "a {} card may have derived cards, so it derives from no other card: \
                     register it without --parent",
                    r.kind
                ),
            ));
        }
        Ok(())
    }

    /// The problem for a parent whose kind may not have derived cards.
    pub fn not_a_parent(&self, parent: &str, kind: &str) -> ItemProblem {
        ItemProblem::new(
            ItemError::ParentNotPhysical,
            if self.parents.is_empty() {
                format!(
                    "parent {parent:?} is a {kind} card, and no kind may have derived cards \
                     (the server's STATUSD_PARENT_KINDS is empty)"
                )
            } else {
                format!(
                    "parent {parent:?} is a {kind} card; only {} cards may have derived cards \
                     (the server's STATUSD_PARENT_KINDS)",
                    list(&self.parents)
                )
            },
        )
    }
}

/// `a, b and c` for people.
fn list(names: &[String]) -> String {
    let mut out = String::new();
    for (i, n) in names.iter().enumerate() {
        let sep = match i {
            0 => "",
            i if i + 1 == names.len() => " and ",
            _ => ", ",
        };
        let _ = write!(out, "{sep}{n}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::issuer::Registration;

    fn register(kind: &str, parent: Option<&str>) -> Operation {
        Operation::Register(Registration {
            credential_id: "c-1".into(),
            kind: kind.into(),
            parent: parent.map(Into::into),
            purpose: None,
            reason: None,
            request_id: None,
            expires_at: None,
        })
    }

    /// Issue 19: `--kind mobil` was registered silently. Fixed in e8a2d9f.
    #[test]
    fn issue_19_a_mistyped_kind_was_registered_silently() {
        let k = Kinds::default();
        let e = k.check(&register("mobil", Some("p-1"))).unwrap_err();
        assert_eq!(e.error, ItemError::BadItem);
        assert!(
            e.detail.contains(
                "kind \"mobil\" is not accepted; the accepted kinds are physical and mobile"
            ),
            "{}",
            e.detail
        );
        assert!(k.check(&register("mobile", Some("p-1"))).is_ok());
        assert!(k.check(&register("physical", None)).is_ok());
        assert_eq!(
            k.check(&register("physical", Some("p-1")))
                .unwrap_err()
                .error,
            ItemError::Cycle
        );
    }

    #[test]
    fn operators_add_kinds_and_parent_kinds() {
        let k = Kinds::parse(
            "physical, mobile,driver-licence,veteran",
            "physical,driver-licence",
        )
        .unwrap();
        assert_eq!(k.accepted().len(), 4);
        assert!(k.may_be_parent("driver-licence"));
        assert!(!k.may_be_parent("veteran"));
        assert!(k.check(&register("veteran", Some("d-1"))).is_ok());
        let e = k.check(&register("vet", None)).unwrap_err();
        assert!(
            e.detail
                .contains("physical, mobile, driver-licence and veteran"),
            "{}",
            e.detail
        );
        assert!(k
            .not_a_parent("m-1", "mobile")
            .detail
            .contains("only physical and driver-licence cards"));
        // No parent kinds: no derived cards at all.
        let k = Kinds::parse("physical", "").unwrap();
        assert!(!k.may_be_parent("physical"));
    }

    #[test]
    fn bad_settings_are_refused() {
        assert_eq!(Kinds::parse("", "").unwrap_err(), KindsError::Empty);
        assert_eq!(
            Kinds::parse("physical,Mobile", "").unwrap_err(),
            KindsError::BadName("Mobile".into())
        );
        assert_eq!(
            Kinds::parse("physical,,mobile", "").unwrap_err(),
            KindsError::BadName(String::new())
        );
        assert_eq!(
            Kinds::parse("physical,physical", "").unwrap_err(),
            KindsError::Repeated("physical".into())
        );
        assert_eq!(
            Kinds::parse("physical,mobile", "card").unwrap_err(),
            KindsError::UnknownParent("card".into())
        );
    }
}
