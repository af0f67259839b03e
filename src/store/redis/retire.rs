//! Retirement on Redis: `redis_retire.lua`, one atomic step per list (docs/redis.md).

use super::connection::Call;
use super::keys::{alloc_key, data_key, feed_key, meta_key};
use super::RedisStore;
use crate::store::retire::Retire;
use crate::store::{check_id, StoreError};

impl RedisStore {
    /// Runs the retire script's `op` on list `id`.
    async fn retire_script(&self, op: &str, id: &str, args: &[u64]) -> Result<bool, StoreError> {
        check_id(id).map_err(|_| StoreError::UnknownList(id.to_owned()))?;
        let inner = &self.inner;
        let mut call = Call::new(&inner.retire);
        call.key(meta_key(id))
            .key(data_key(id))
            .key(feed_key(id))
            .key(alloc_key(id))
            .arg(op)
            .arg(args);
        match inner.write::<i64>(&call).await {
            Ok((done, replicated)) => {
                inner.notify(None);
                replicated.check()?;
                Ok(done == 1)
            }
            Err(e) => {
                let text = e.to_string();
                Err(if text.contains("STATUSD conflict") {
                    StoreError::Conflict(id.to_owned())
                } else if text.contains("STATUSD unknown-list") {
                    StoreError::UnknownList(id.to_owned())
                } else if text.contains("STATUSD not-retired") {
                    StoreError::Backend(format!(
                        "list {id:?} is not retired; only a retired list's data is deleted"
                    ))
                } else {
                    inner.error(Some(id), e)
                })
            }
        }
    }
}

impl Retire for RedisStore {
    async fn retire(&self, id: &str, expect_version: u64, at: u64) -> Result<bool, StoreError> {
        let done = self
            .retire_script("retire", id, &[at, expect_version])
            .await?;
        // This replica never allocates in the list again.
        self.inner
            .allocated
            .bitmaps
            .lock()
            .expect("not poisoned")
            .remove(id);
        Ok(done)
    }

    async fn purge(&self, id: &str, at: u64) -> Result<bool, StoreError> {
        self.retire_script("purge", id, &[at]).await
    }
}
