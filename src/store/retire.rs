//! Retiring a list in the source of truth: the two atomic steps [`crate::retire`] takes, each
//! idempotent, so that any number of replicas may attempt them at once.
//!
//! * [`Retire::retire`] marks a list retired (`retired_at`), a compare-and-set on the version
//!   the caller judged the list at: the list's metadata (its credentials' latest expiry, its
//!   allocations) changes only with its version, so the judgement holds when the mark lands.
//!   It bumps the version, so a registry commit planned before it fails as a conflict, and
//!   from then on the list takes no writes ([`super::StoreError::Retired`]).
//! * [`Retire::purge`] deletes a retired list's status data (the embedded store's entries;
//!   Redis's `data`, `feed` and `alloc`) after the retention, and notes `purged_at`. The
//!   metadata stays as a tombstone (the id, and so its indices, are never reused; its URLs
//!   keep answering 410), and so do the credential records, which hold the audit trail, and
//!   the credential ids bound to them.

use super::{Store, StoreError};
use std::future::Future;

/// The retirement operations of a store.
pub trait Retire: Store {
    /// Marks list `id` retired at `at` (Unix seconds) if its version is still
    /// `expect_version`: `Ok(true)`; `Ok(false)` if it was retired already;
    /// [`StoreError::Conflict`] if it changed since.
    fn retire(
        &self,
        id: &str,
        expect_version: u64,
        at: u64,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Deletes the status data of retired list `id`, noting `at` (Unix seconds) as
    /// `purged_at`: `Ok(true)`; `Ok(false)` if purged already; an error if it is not retired.
    fn purge(&self, id: &str, at: u64) -> impl Future<Output = Result<bool, StoreError>> + Send;
}
