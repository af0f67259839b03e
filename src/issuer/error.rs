//! Why an issuer operation fails: [`ItemError`], a closed set (its problem `type` slug and HTTP
//! status are assigned in [`crate::problem`], and nowhere else), with a detail for people in
//! [`ItemProblem`]; and [`IssuerError`], the failures of a whole batch. The store's and the
//! lifecycle rules' errors become item problems here.

use super::record::RuleError;
use super::MAX_BATCH;
use crate::store::StoreError;

/// Declares [`ItemError`] and [`ItemError::ALL`] from one list, so that `ALL` (which the
/// documentation check walks) cannot miss a variant.
macro_rules! item_errors {
    ($($(#[doc = $doc:literal])* $variant:ident,)*) => {
        /// What went wrong with one item of a batch: a closed set, mapped to its problem `type`
        /// slug and HTTP status in one place, [`crate::problem`].
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum ItemError {
            $($(#[doc = $doc])* $variant,)*
        }

        impl ItemError {
            /// Every variant, in the order declared (`tests/it/openapi.rs` checks that the
            /// OpenAPI document lists exactly these).
            pub const ALL: &'static [ItemError] = &[$(ItemError::$variant,)*];
        }
    };
}

item_errors! {
    /// The operation is malformed (a field's syntax, an unaccepted kind, a bad pool name).
    BadItem,
    /// No credential with the id is registered.
    UnknownCredential,
    /// The parent a registration names is not registered.
    UnknownParent,
    /// The parent's kind may not have derived cards.
    ParentNotPhysical,
    /// A card would derive from itself, from the card it replaces, or a parent kind from a card.
    Cycle,
    /// The pool a registration names does not exist.
    UnknownPool,
    /// The store failed or cannot be reached.
    StoreUnavailable,
    /// The list kept changing concurrently (planned again until the attempts ran out).
    Contention,
    /// Applied on the Redis primary but not confirmed by the replicas
    /// `--redis-wait-replicas` asks for in time; a retry is safe.
    NotReplicated,
    /// The embedded store's disk is full.
    InsufficientStorage,
    /// The store holds something unreadable or inconsistent.
    Corrupt,
    /// The credential is revoked: nothing changes it any more.
    Terminal,
    /// A hold on a card whose status cannot be suspended.
    NotSuspendable,
    /// The card's parent is revoked.
    ParentRevoked,
    /// The card was already reissued as another credential.
    AlreadyReissued,
    /// The id is registered with other parameters.
    RegistrationConflict,
    /// A batch registers the same id twice.
    DuplicateInBatch,
    /// No free index is left where the card must go.
    ListFull,
    /// Another request registered a reissue's new id first.
    RegisteredConcurrently,
    /// `POST /v1/lists` names a list that exists.
    ListExists,
    /// The store holds the most lists `--max-lists` allows.
    ListLimit,
    /// The credential's list is retired: every credential in it expired ([`crate::retire`]).
    ListRetired,
}

/// Why one item of a batch failed: what went wrong and a detail for people.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ItemProblem {
    pub error: ItemError,
    pub detail: String,
}

impl ItemProblem {
    pub fn new(error: ItemError, detail: impl Into<String>) -> Self {
        ItemProblem {
            error,
            detail: detail.into(),
        }
    }

    pub fn bad(detail: impl Into<String>) -> Self {
        ItemProblem::new(ItemError::BadItem, detail)
    }

    pub(super) fn unknown(id: &str) -> Self {
        ItemProblem::new(
            ItemError::UnknownCredential,
            format!("no credential {id:?} is registered"),
        )
    }
}

impl From<RuleError> for ItemProblem {
    fn from(e: RuleError) -> Self {
        let error = match e {
            RuleError::Terminal(_) => ItemError::Terminal,
            RuleError::NotSuspendable { .. } => ItemError::NotSuspendable,
            RuleError::ParentRevoked(_) => ItemError::ParentRevoked,
            RuleError::ParentNotPhysical(_) => ItemError::ParentNotPhysical,
            RuleError::AlreadyReissued(..) => ItemError::AlreadyReissued,
        };
        ItemProblem::new(error, e.to_string())
    }
}

impl From<StoreError> for ItemProblem {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(_) => ItemProblem::new(
                ItemError::Contention,
                "the list kept changing concurrently; retry the request",
            ),
            StoreError::Corrupt { .. } => ItemProblem::new(ItemError::Corrupt, e.to_string()),
            StoreError::ListLimit { .. } => ItemProblem::new(ItemError::ListLimit, e.to_string()),
            StoreError::Retired(_) => ItemProblem::new(ItemError::ListRetired, e.to_string()),
            StoreError::NotReplicated { acked, wanted } => ItemProblem::new(
                ItemError::NotReplicated,
                format!(
                    "the write was applied on the Redis primary but not confirmed on {wanted} \
                     replica(s) in time ({acked} confirmed), so a failover now could lose it; \
                     retrying the same request is safe (it is not applied twice)"
                ),
            ),
            StoreError::Full(_) => ItemProblem::new(
                ItemError::InsufficientStorage,
                "the embedded store's disk is full; nothing was written. Free space in the \
                 data directory and retry",
            ),
            StoreError::Terminal { .. } => ItemProblem::new(
                ItemError::Terminal,
                format!("the published entry is INVALID (terminal): {e}"),
            ),
            other => ItemProblem::new(ItemError::StoreUnavailable, other.to_string()),
        }
    }
}

/// Errors of a whole batch.
#[derive(Debug, thiserror::Error)]
pub enum IssuerError {
    /// One or more items failed validation; nothing was applied. Positions are 0-based.
    #[error("{} of the batch's items are invalid; nothing was applied", .0.len())]
    Invalid(Vec<(usize, ItemProblem)>),
    #[error("a batch holds at most {MAX_BATCH} operations")]
    TooLarge,
    #[error("the store failed: {0}")]
    Store(#[from] StoreError),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::problem::Problem;
    use hyper::header;

    async fn body(p: Problem) -> String {
        let body = http_body_util::BodyExt::collect(p.response().into_body())
            .await
            .expect("a full body")
            .to_bytes();
        String::from_utf8(body.to_vec()).expect("UTF-8")
    }

    /// The issuer's problems on the wire, byte for byte as they were when item problems were
    /// strings (issue 17 turned them into `ItemError` without changing a byte).
    #[tokio::test]
    async fn issuer_problems_keep_their_wire_form() {
        let cycle = ItemProblem::new(ItemError::Cycle, "a credential cannot be its own parent");
        assert_eq!(
            body(Problem::BatchInvalid(vec![(3, cycle.clone())])).await,
            r#"{"detail":"1 item(s) are invalid (see errors); nothing was applied","errors":[{"detail":"a credential cannot be its own parent","index":3,"type":"urn:statusd:problem:cycle"}],"status":422,"title":"Invalid batch","type":"urn:statusd:problem:batch-invalid"}"#
        );
        assert_eq!(
            body(Problem::Issuer(cycle)).await,
            r#"{"detail":"a credential cannot be its own parent","status":422,"title":"Invalid relationship","type":"urn:statusd:problem:cycle"}"#
        );
        let terminal = ItemProblem::new(ItemError::Terminal, "revoked");
        assert_eq!(
            body(Problem::Issuer(terminal)).await,
            r#"{"detail":"revoked","status":409,"title":"Conflict with the credential's state","type":"urn:statusd:problem:terminal"}"#
        );
    }

    /// Each item error has its own slug (a closed enum replaced free strings: issue 17).
    #[test]
    fn item_errors_have_distinct_slugs() {
        let slugs: std::collections::BTreeSet<_> =
            ItemError::ALL.iter().map(|e| e.slug()).collect();
        assert_eq!(slugs.len(), ItemError::ALL.len());
        let unknown = ItemProblem::new(ItemError::UnknownCredential, "no credential");
        assert_eq!(unknown.type_uri(), "urn:statusd:problem:unknown-credential");
        assert_eq!(Problem::Issuer(unknown).status(), 404);
        let busy = Problem::Issuer(ItemProblem::new(ItemError::Contention, "retry")).response();
        assert_eq!(busy.status(), 503);
        assert_eq!(busy.headers()[header::RETRY_AFTER], "1");
    }
}
