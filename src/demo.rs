//! Demo data: a few 2^20-entry lists with realistic revocation (1 %) and suspension (0.2 %)
//! rates at random indices, so a newcomer can curl something at once.

use crate::status::{Bits, Status, DEFAULT_ENTRIES};
use crate::store::{Change, NewList, Store, StoreError};
use rand::seq::index::sample;

/// Changes per write when seeding.
pub const SEED_BATCH: usize = 10_000;

/// Ids of the demo lists.
pub const DEMO_LISTS: [&str; 3] = ["1", "2", "3"];

/// Creates the demo lists if the store holds no list at all.
pub async fn seed_if_empty<S: Store>(store: &S) -> Result<(), StoreError> {
    if !store.lists().await?.is_empty() {
        return Ok(());
    }
    for id in DEMO_LISTS {
        seed_list(store, id, Bits::Two, DEFAULT_ENTRIES, 0.01, 0.002).await?;
    }
    tracing::info!(lists = DEMO_LISTS.len(), "created demo lists");
    Ok(())
}

/// Creates one list with the given fractions of INVALID and SUSPENDED entries at random,
/// distinct indices.
pub async fn seed_list<S: Store>(
    store: &S,
    id: &str,
    bits: Bits,
    size: u32,
    invalid: f64,
    suspended: f64,
) -> Result<(), StoreError> {
    store
        .create_list(NewList {
            id: id.to_owned(),
            bits,
            size,
            purpose: None,
        })
        .await?;
    let n_invalid = (f64::from(size) * invalid) as usize;
    let n_suspended = if bits == Bits::One {
        0
    } else {
        (f64::from(size) * suspended) as usize
    };
    let picked = sample(
        &mut rand::thread_rng(),
        size as usize,
        n_invalid + n_suspended,
    );
    let mut changes: Vec<Change> = picked
        .iter()
        .enumerate()
        .map(|(n, idx)| Change {
            idx: idx as u32,
            status: if n < n_invalid {
                Status::INVALID
            } else {
                Status::SUSPENDED
            },
        })
        .collect();
    changes.sort_by_key(|c| c.idx);
    // Batches of the size the issuer API accepts, so every store sees realistic writes.
    for chunk in changes.chunks(SEED_BATCH) {
        store.apply(id, chunk).await?;
    }
    Ok(())
}
