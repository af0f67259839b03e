//! The Redis source of truth: the production [`Store`] that many stateless replicas share.
//!
//! `docs/redis.md` is the contract this module implements: the key layout (every key of a list
//! carries the hash tag `{<id>}`, so a list lives in one cluster slot), the Redis bit order of
//! `data`, the change feed, and the write scripts `redis_apply.lua` and `redis_create.lua`, which
//! other writers may call as well (and the issuer's read script, `redis_read.lua`). This module owns the connection to Redis (a standalone server
//! or a cluster), the strict parsing of everything read back, and the wake-up subscription.
//!
//! Availability: [`RedisStore::connect`] never waits for Redis. Connections are made on first
//! use and remade after a failure, each attempt bounded by [`RedisOptions::connect_timeout`], and
//! every command by [`RedisOptions::response_timeout`]; a call made while Redis is down, paused or
//! restarting fails fast with [`StoreError::Backend`] (`"redis unavailable: …"`) instead of
//! hanging, and a later call reconnects. The caller (the refresher) owns the retry cadence.
//!
//! TLS: `rediss://` (standalone) and `rediss+cluster://` (or comma-separated `rediss://` seeds)
//! connect over TLS, verified against the system's roots or a private CA, optionally with a
//! client certificate ([`RedisSecurity`](crate::store::RedisSecurity)); the password may come from a file. [`check`] runs
//! every step of [`RedisStore::connect_secure`] that does not touch the network, so
//! `--check-config` accepts exactly the URLs start-up accepts.
//!
//! Layout: `keys` names every Redis key and the change channel; `connection` prepares URLs and
//! TLS, holds the connection (standalone manager or cluster client), classifies errors and runs
//! the wake-up subscription; `parse` reads every reply strictly; `registry` is the issuer
//! registry on Redis; this file is the [`Store`] itself.

mod connection;
mod keys;
mod parse;
mod registry;
mod retire;
#[cfg(test)]
mod tests;

pub use connection::{check, RedisOptions, Secrets};
pub use keys::{
    alloc_key, cid_key, creds_key, data_key, feed_key, meta_key, reissued_key, CHANNEL, LISTS_KEY,
};
pub use parse::{parse_changes_since, parse_list};

use super::{check_id, Applied, Change, Feed, Hint, ListMeta, NewList, Store, StoreError};
use crate::status::{Status, StatusError, StatusList};
use connection::{is_wrong_type, Call, Inner};
use parse::{corrupt, now_secs, parse_feed, parse_meta, script_error};
use redis::{RedisError, Value};
use std::sync::Arc;
use std::time::Duration;

/// How long the refresher waits at most between two polls of Redis; [`Store::changed`] of a
/// cluster store sleeps this long (there is no wake-up subscription on a cluster).
pub const POLL: Duration = Duration::from_millis(50);

/// How long a (re)taken subscription must have lasted before its hints are trusted to name
/// every write ([`Store::hints_complete`]): the refresher keeps reading every list on every
/// [`POLL`] until then, so whatever was written while it was being taken is found at once.
const SETTLE: Duration = Duration::from_secs(1);

/// The write script, as other writers must run it (docs/redis.md).
pub const APPLY_LUA: &str = include_str!("../redis_apply.lua");

/// The create-if-absent script for a list's metadata.
pub const CREATE_LUA: &str = include_str!("../redis_create.lua");

/// The issuer's read of a list: metadata and records with their families, in one step.
const READ_LUA: &str = include_str!("../redis_read.lua");

/// The retire and purge script ([`crate::store::retire`]).
pub const RETIRE_LUA: &str = include_str!("../redis_retire.lua");

/// The most feed entries [`Store::changes_since`] replays; a replica further behind reloads the
/// list in full, which then costs less than the replay.
pub const MAX_CATCHUP: u64 = 1000;

#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

impl Store for RedisStore {
    async fn lists(&self) -> Result<Vec<ListMeta>, StoreError> {
        let inner = &self.inner;
        // The set and the metadata of the lists it held last time, in one round trip; the
        // metadata of lists new to this store in a second one.
        let known: Vec<String> = inner
            .allocated
            .list_ids
            .lock()
            .expect("not poisoned")
            .clone();
        let mut members = redis::cmd("SMEMBERS");
        members.arg(LISTS_KEY);
        let mut conn = inner.conn();
        // Sent together (one round trip, counted so by `store::count_round_trips`).
        let (raw, known_replies) = crate::store::together(
            members.query_async::<Vec<Vec<u8>>>(&mut conn),
            inner.hgetall_many(known.iter().map(|id| meta_key(id)).collect()),
        )
        .await;
        let raw = raw.map_err(|e| inner.error(None, e))?;
        let known_replies = known_replies.map_err(|e| inner.error(None, e))?;
        let mut ids = Vec::with_capacity(raw.len());
        // One bad entry written by another system must not stop updates of every list: it is
        // skipped and logged, and the refresher keeps serving such a list's last good version.
        for raw in raw {
            match String::from_utf8(raw) {
                Ok(id) if check_id(&id).is_ok() => ids.push(id),
                bad => {
                    let shown = match bad {
                        Ok(id) => id,
                        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
                    };
                    tracing::error!(key = LISTS_KEY, entry = ?shown, "ignoring an invalid list id in the list set");
                }
            }
        }
        ids.sort_unstable();
        let mut by_id: std::collections::HashMap<&str, Value> = known
            .iter()
            .map(String::as_str)
            .zip(known_replies)
            .collect();
        let fresh: Vec<&String> = ids
            .iter()
            .filter(|id| !by_id.contains_key(id.as_str()))
            .collect();
        let fresh_replies = inner
            .hgetall_many(fresh.iter().map(|id| meta_key(id)).collect())
            .await
            .map_err(|e| inner.error(None, e))?;
        by_id.extend(fresh.iter().map(|id| id.as_str()).zip(fresh_replies));
        let replies: Vec<Value> = ids
            .iter()
            .map(|id| by_id.remove(id.as_str()).unwrap_or(Value::Nil))
            .collect();
        *inner.allocated.list_ids.lock().expect("not poisoned") = ids.clone();
        let mut out = Vec::with_capacity(ids.len());
        for (id, reply) in ids.iter().zip(&replies) {
            // An id without meta is being created (or was deleted): not a list yet. Corrupt
            // meta is skipped the same way, loudly.
            match parse_meta(id, reply) {
                Ok(Some(meta)) if meta.life.is_retired() => {
                    // Another replica retired it: this one never allocates there again.
                    inner
                        .allocated
                        .bitmaps
                        .lock()
                        .expect("not poisoned")
                        .remove(id.as_str());
                    out.push(meta);
                }
                Ok(Some(meta)) => out.push(meta),
                Ok(None) => {}
                Err(e) => tracing::error!(error = %e, "ignoring a list with corrupt metadata"),
            }
        }
        Ok(out)
    }

    async fn meta(&self, id: &str) -> Result<Option<ListMeta>, StoreError> {
        if check_id(id).is_err() {
            return Ok(None);
        }
        let inner = &self.inner;
        let reply: Value = redis::cmd("HGETALL")
            .arg(meta_key(id))
            .query_async(&mut inner.conn())
            .await
            .map_err(|e| inner.error(Some(id), e))?;
        parse_meta(id, &reply)
    }

    async fn metas(&self, ids: &[String]) -> Result<Vec<Option<ListMeta>>, StoreError> {
        let valid: Vec<&String> = ids.iter().filter(|id| check_id(id).is_ok()).collect();
        let inner = &self.inner;
        // One HGETALL per list, sent together: one round trip (one request per list's slot on
        // a cluster).
        let replies = inner
            .hgetall_many(valid.iter().map(|id| meta_key(id)).collect())
            .await
            .map_err(|e| inner.error(None, e))?;
        let mut replies = replies.into_iter();
        ids.iter()
            .map(|id| {
                if check_id(id).is_err() {
                    return Ok(None);
                }
                match replies.next() {
                    Some(reply) => parse_meta(id, &reply),
                    None => Err(StoreError::Backend("redis: a reply missing".into())),
                }
            })
            .collect()
    }

    async fn load(&self, id: &str) -> Result<(ListMeta, StatusList), StoreError> {
        if check_id(id).is_err() {
            return Err(StoreError::UnknownList(id.to_owned()));
        }
        let inner = &self.inner;
        // One slot, one transaction: the data is exactly that of the version read.
        let (meta, data): (Value, Value) = redis::pipe()
            .atomic()
            .cmd("HGETALL")
            .arg(meta_key(id))
            .cmd("GET")
            .arg(data_key(id))
            .query_async(&mut inner.conn())
            .await
            .map_err(|e| inner.error(Some(id), e))?;
        parse_list(id, &meta, data)
    }

    async fn create_list(&self, new: NewList) -> Result<ListMeta, StoreError> {
        check_id(&new.id)?;
        // Validates bits and size the same way every list is built.
        StatusList::new(new.bits, new.size)?;
        let inner = &self.inner;
        let id = new.id.as_str();
        let now = now_secs();
        if let Some(p) = &new.purpose {
            check_id(p)?;
        }
        let mut call = Call::new(&inner.create);
        call.key(meta_key(id))
            .key(data_key(id))
            .key(feed_key(id))
            .key(creds_key(id))
            .key(alloc_key(id))
            .arg(new.bits.get())
            .arg(new.size)
            .arg(now);
        if let Some(p) = &new.purpose {
            call.arg(p);
        }
        let (created, replicated): (i64, _) = inner
            .write(&call)
            .await
            .map_err(|e| inner.error(Some(id), e))?;
        // Also when the list existed: repairs a creation that stopped between the two steps.
        let mut sadd = redis::pipe();
        sadd.cmd("SADD").arg(LISTS_KEY).arg(id);
        let (_, in_set) = inner
            .durable(&mut sadd)
            .await
            .map_err(|e| inner.error(None, e))?;
        replicated.check()?;
        in_set.check()?;
        if created == 0 {
            return Err(StoreError::ListExists(new.id));
        }
        // A wake-up hint, sent once the list is in the set, so that replicas pick it up at once.
        // Only a hint: a replica that misses it finds the list on its next poll.
        let hint: Result<i64, _> = redis::cmd("PUBLISH")
            .arg(CHANNEL)
            .arg(id)
            .query_async(&mut inner.conn())
            .await;
        if let Err(e) = hint {
            tracing::debug!(list = id, error = %e, "publishing the creation hint failed");
        }
        inner.notify(None);
        Ok(ListMeta {
            id: new.id,
            bits: new.bits.get(),
            size: new.size,
            version: 0,
            updated_at: now,
            updated_ms: now * 1000,
            purpose: new.purpose,
            allocated: 0,
            life: crate::store::Lifetime::new_list(),
        })
    }

    async fn apply(&self, id: &str, changes: &[Change]) -> Result<Applied, StoreError> {
        if check_id(id).is_err() {
            return Err(StoreError::UnknownList(id.to_owned()));
        }
        let inner = &self.inner;
        let mut call = Call::new(&inner.apply);
        call.key(meta_key(id))
            .key(data_key(id))
            .key(feed_key(id))
            .arg(now_secs());
        for c in changes {
            call.arg(c.idx).arg(c.status.0);
        }
        let (reply, replicated): (Vec<i64>, _) = match inner.write(&call).await {
            Ok(reply) => reply,
            Err(e) => {
                return Err(match script_error(id, changes, &e) {
                    Some(mapped) => mapped,
                    None => inner.error(Some(id), e),
                })
            }
        };
        let bad = || StoreError::Backend(format!("redis: unexpected apply reply for {id:?}"));
        let (&version, olds) = reply.split_first().ok_or_else(bad)?;
        if olds.len() != changes.len() {
            return Err(bad());
        }
        let previous = olds
            .iter()
            .map(|&v| u8::try_from(v).map(Status).map_err(|_| bad()))
            .collect::<Result<Vec<_>, _>>()?;
        inner.notify(Some(id));
        replicated.check()?;
        Ok(Applied {
            version: u64::try_from(version).map_err(|_| bad())?,
            previous,
        })
    }

    async fn changes_since(&self, id: &str, version: u64) -> Result<Feed, StoreError> {
        if check_id(id).is_err() {
            return Ok(None);
        }
        let Some(start) = version.checked_add(1) else {
            return Ok(None);
        };
        match self.meta_and_feed(id, start).await? {
            Some((meta, feed)) => parse_changes_since(id, version, &meta, &feed),
            // A feed that is not a stream is a gap; a full load judges the rest of the list.
            None => Ok(None),
        }
    }

    async fn meta_and_changes_since(
        &self,
        id: &str,
        version: u64,
    ) -> Result<Option<(ListMeta, Feed)>, StoreError> {
        if check_id(id).is_err() {
            return Ok(None);
        }
        let read = match version.checked_add(1) {
            Some(start) => self.meta_and_feed(id, start).await?,
            None => None,
        };
        let Some((meta, feed)) = read else {
            // No feed to read (a feed that is not a stream is a gap): the metadata alone.
            return Ok(self.meta(id).await?.map(|m| (m, None)));
        };
        let Some(parsed) = parse_meta(id, &meta)? else {
            return Ok(None);
        };
        let changes = if parsed.version > version {
            parse_feed(version, &parsed, &feed)?
        } else {
            None
        };
        Ok(Some((parsed, changes)))
    }

    async fn entries(&self, id: &str, idxs: &[u32]) -> Result<(u64, Vec<Status>), StoreError> {
        if check_id(id).is_err() {
            return Err(StoreError::UnknownList(id.to_owned()));
        }
        let inner = &self.inner;
        // The meta first, outside the transaction: the width of the entries to read.
        let meta: Value = redis::cmd("HGETALL")
            .arg(meta_key(id))
            .query_async(&mut inner.conn())
            .await
            .map_err(|e| inner.error(Some(id), e))?;
        let meta = parse_meta(id, &meta)?.ok_or_else(|| StoreError::UnknownList(id.to_owned()))?;
        if let Some(&bad) = idxs.iter().find(|&&i| i >= meta.size) {
            return Err(StatusError::IndexOutOfRange {
                idx: bad.into(),
                size: meta.size,
            }
            .into());
        }
        if idxs.is_empty() {
            return Ok((meta.version, Vec::new()));
        }
        let ty = format!("u{}", meta.bits);
        let mut bitfield = redis::cmd("BITFIELD");
        bitfield.arg(data_key(id));
        for i in idxs {
            bitfield.arg("GET").arg(&ty).arg(format!("#{i}"));
        }
        // Version and values in one transaction (one slot): consistent with each other.
        let (version, values): (Option<u64>, Vec<Option<u8>>) = redis::pipe()
            .atomic()
            .cmd("HGET")
            .arg(meta_key(id))
            .arg("version")
            .add_command(bitfield)
            .query_async(&mut inner.conn())
            .await
            .map_err(|e| inner.error(Some(id), e))?;
        let version = version.ok_or_else(|| StoreError::UnknownList(id.to_owned()))?;
        if values.len() != idxs.len() {
            return Err(corrupt(id, "BITFIELD answered the wrong number of values"));
        }
        Ok((
            version,
            values.into_iter().map(|v| Status(v.unwrap_or(0))).collect(),
        ))
    }

    async fn changed(&self, timeout: Duration) -> Hint {
        if self.is_cluster() {
            // No subscription: only this store's own writes are named; the refresher's poll
            // (every POLL) finds the rest.
            tokio::time::sleep(timeout.min(POLL)).await;
            return self.inner.hints.take();
        }
        self.inner.hints.wait(timeout).await
    }

    fn hints_complete(&self) -> bool {
        self.inner.hints.complete_for(SETTLE)
    }
}

impl RedisStore {
    /// List `id`'s metadata hash and its feed from version `start` on, in one transaction, so
    /// that the feed is compared with the version it led to; `None` when the feed is not a
    /// stream (a gap).
    async fn meta_and_feed(
        &self,
        id: &str,
        start: u64,
    ) -> Result<Option<(Value, Value)>, StoreError> {
        let inner = &self.inner;
        let reply: Result<(Value, Value), RedisError> = redis::pipe()
            .atomic()
            .cmd("HGETALL")
            .arg(meta_key(id))
            // XRANGE's start is inclusive: the first entry wanted is the one of version v+1.
            .cmd("XRANGE")
            .arg(feed_key(id))
            .arg(format!("{start}-0"))
            .arg("+")
            .arg("COUNT")
            .arg(MAX_CATCHUP)
            .query_async(&mut inner.conn())
            .await;
        match reply {
            Ok(r) => Ok(Some(r)),
            Err(e) if is_wrong_type(&e) => Ok(None),
            Err(e) => Err(inner.error(Some(id), e)),
        }
    }
}

/// The store's clock, for [`crate::clock`]: kept apart from the [`Store`] operations.
impl RedisStore {
    /// Redis's `TIME` (any node of a cluster).
    pub async fn server_time(&self) -> Result<std::time::SystemTime, StoreError> {
        let mut conn = self.inner.conn();
        let (secs, micros): (u64, u64) = redis::cmd("TIME")
            .query_async(&mut conn)
            .await
            .map_err(|e| self.inner.error(None, e))?;
        Ok(std::time::UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_micros(micros))
    }
}
