//! The issuer registry on Redis: allocation bitmaps (remembered between calls), credential
//! records, the commit script and the credential-id index.

use super::connection::{Call, Conn};
use super::keys::{alloc_key, cid_key, creds_key, data_key, feed_key, meta_key, reissued_key};
use super::parse::{
    binding_of, bitmap_from_redis, bytes_of, corrupt, location_of, now_secs, parse_meta,
    registry_error, script_error, script_error_text,
};
use super::RedisStore;
use crate::store::registry::{
    Binding, Location, MetaRecords, Records, Registry, Txn, MAX_CHILD_HINTS,
};
use crate::store::{check_id, Extends, StoreError};
use redis::Value;
use roaring::RoaringBitmap;
use std::collections::BTreeMap;

impl Registry for RedisStore {
    async fn allocated(&self, list: &str) -> Result<(u64, RoaringBitmap), StoreError> {
        check_id(list).map_err(|_| StoreError::UnknownList(list.to_owned()))?;
        let inner = &self.inner;
        let cached = inner
            .allocated
            .bitmaps
            .lock()
            .expect("not poisoned")
            .get(list)
            .cloned();
        // The version is always read; the bitmap only when this replica holds none.
        let mut pipe = redis::pipe();
        pipe.atomic().cmd("HGETALL").arg(meta_key(list));
        if cached.is_none() {
            pipe.cmd("GET").arg(alloc_key(list));
        }
        let replies: Vec<Value> = pipe
            .query_async(&mut inner.conn())
            .await
            .map_err(|e| inner.error(Some(list), e))?;
        let reply = |i: usize| {
            replies.get(i).ok_or_else(|| {
                StoreError::Backend(format!("redis: short reply reading {list:?}'s allocations"))
            })
        };
        let meta =
            parse_meta(list, reply(0)?)?.ok_or_else(|| StoreError::UnknownList(list.to_owned()))?;
        if let Some(bitmap) = cached {
            return Ok((meta.version, bitmap));
        }
        let bitmap = match reply(1)? {
            Value::Nil => RoaringBitmap::new(),
            v => bitmap_from_redis(
                bytes_of(v).ok_or_else(|| corrupt(list, "alloc is not a string"))?,
            ),
        };
        if bitmap.max().is_some_and(|m| m >= meta.size) {
            return Err(corrupt(list, "alloc marks an index beyond the list"));
        }
        inner
            .allocated
            .bitmaps
            .lock()
            .expect("not poisoned")
            .insert(list.to_owned(), bitmap.clone());
        Ok((meta.version, bitmap))
    }

    async fn records(&self, list: &str, idxs: &[u32]) -> Result<Records, StoreError> {
        check_id(list).map_err(|_| StoreError::UnknownList(list.to_owned()))?;
        let inner = &self.inner;
        let mut pipe = redis::pipe();
        pipe.atomic().cmd("HGETALL").arg(meta_key(list));
        if !idxs.is_empty() {
            pipe.cmd("HMGET").arg(creds_key(list)).arg(idxs);
        }
        let mut replies: Vec<Value> = pipe
            .query_async(&mut inner.conn())
            .await
            .map_err(|e| inner.error(Some(list), e))?;
        let bad = || StoreError::Backend(format!("redis: unexpected records reply for {list:?}"));
        let meta = parse_meta(list, replies.first().ok_or_else(bad)?)?
            .ok_or_else(|| StoreError::UnknownList(list.to_owned()))?;
        let records = match replies.pop() {
            _ if idxs.is_empty() => Vec::new(),
            Some(Value::Array(values)) if values.len() == idxs.len() => values
                .into_iter()
                .map(|v| match v {
                    Value::Nil => Ok(None),
                    Value::BulkString(b) => Ok(Some(b)),
                    _ => Err(bad()),
                })
                .collect::<Result<_, _>>()?,
            _ => return Err(bad()),
        };
        Ok((meta.version, records))
    }

    async fn list_records(&self, list: &str, idxs: &[u32]) -> Result<MetaRecords, StoreError> {
        let mut read = self.read_lists(list, idxs, false).await?;
        Ok(read.swap_remove(0).1)
    }

    /// On a standalone Redis `redis_read.lua` follows the links into other lists itself (its
    /// `follow` mode, which reads keys it is not given); a cluster reads `list` alone.
    async fn list_records_following(
        &self,
        list: &str,
        idxs: &[u32],
    ) -> Result<Vec<(String, MetaRecords)>, StoreError> {
        self.read_lists(list, idxs, !self.is_cluster()).await
    }

    fn allocated_cached(&self, list: &str) -> Option<RoaringBitmap> {
        self.inner
            .allocated
            .bitmaps
            .lock()
            .expect("not poisoned")
            .get(list)
            .cloned()
    }

    async fn commit(&self, list: &str, txn: &Txn) -> Result<u64, StoreError> {
        let versions = self
            .commit_joint(&[(list.to_owned(), txn.clone())], &[])
            .await?;
        Ok(versions[0])
    }

    fn commits_jointly(&self) -> bool {
        !self.is_cluster()
    }

    async fn commit_joint(
        &self,
        txns: &[(String, Txn)],
        binds: &[(String, Location)],
    ) -> Result<Vec<u64>, StoreError> {
        let first = txns.first().map_or("", |(list, _)| list.as_str());
        for (list, _) in txns {
            check_id(list).map_err(|_| StoreError::UnknownList(list.clone()))?;
        }
        if txns.is_empty() || (!self.commits_jointly() && (txns.len() > 1 || !binds.is_empty())) {
            return Err(StoreError::Backend(format!(
                "redis: a commit of {} lists and {} bindings cannot be one step here",
                txns.len(),
                binds.len()
            )));
        }
        let inner = &self.inner;
        let mut call = Call::new(&inner.apply);
        for (list, _) in txns {
            call.key(meta_key(list))
                .key(data_key(list))
                .key(feed_key(list))
                .key(creds_key(list))
                .key(alloc_key(list));
        }
        for (cid, _) in binds {
            call.key(cid_key(cid));
        }
        call.arg(now_secs()).arg(txns.len());
        for (_, txn) in txns {
            call.arg(txn.expect_version)
                .arg(match txn.extends {
                    Extends::Nothing => String::new(),
                    Extends::Until(t) => t.to_string(),
                    Extends::Forever => "forever".to_owned(),
                })
                .arg(txn.claim.len())
                .arg(&txn.claim)
                .arg(txn.records.len());
            for (idx, record) in &txn.records {
                call.arg(*idx).arg(record.as_slice());
            }
            call.arg(txn.changes.len());
            for c in &txn.changes {
                call.arg(c.idx).arg(c.status.0);
            }
        }
        for (_, at) in binds {
            call.arg(at.to_string());
        }
        let (reply, replicated): (Vec<i64>, _) = match inner.write(&call).await {
            Ok(reply) => reply,
            Err(e) => return Err(self.commit_error(txns, first, e)),
        };
        {
            let mut bitmaps = inner.allocated.bitmaps.lock().expect("not poisoned");
            for (list, txn) in txns {
                if let Some(bitmap) = bitmaps.get_mut(list) {
                    bitmap.extend(txn.claim.iter().copied());
                }
            }
        }
        for (list, _) in txns {
            inner.notify(Some(list));
        }
        replicated.check()?;
        if reply.len() != txns.len() {
            return Err(StoreError::Backend(format!(
                "redis: unexpected commit reply for {first:?}"
            )));
        }
        reply
            .into_iter()
            .map(|v| {
                u64::try_from(v).map_err(|_| {
                    StoreError::Backend(format!("redis: unexpected commit reply for {first:?}"))
                })
            })
            .collect()
    }

    async fn locate(&self, ids: &[String]) -> Result<Vec<Option<Location>>, StoreError> {
        let found = self.locate_bindings(ids).await?;
        Ok(found.into_iter().map(|b| b.map(|b| b.at)).collect())
    }

    async fn locate_bindings(&self, ids: &[String]) -> Result<Vec<Option<Binding>>, StoreError> {
        let inner = &self.inner;
        let replies = inner
            .per_key("GET", ids.iter().map(|id| cid_key(id)).collect())
            .await
            .map_err(|e| inner.error(None, e))?;
        replies.iter().map(binding_of).collect()
    }

    async fn hint_children(
        &self,
        hints: &[(String, Location, Location)],
    ) -> Result<(), StoreError> {
        // On the binding's key alone: unchanged unless it is still at the parent's place (a
        // rebinding elsewhere makes the hint moot), once per card, up to the cap.
        const HINT: &str = "local v = redis.call('GET', KEYS[1]) \
            if not v then return 0 end \
            local at = string.match(v, '^%S+') \
            if at ~= ARGV[1] then return 0 end \
            local n = 0 \
            for w in string.gmatch(v, '%S+') do \
            if w == ARGV[2] then return 1 end \
            if string.sub(w, 1, 2) == 'c:' then n = n + 1 end end \
            if n >= tonumber(ARGV[3]) then return 0 end \
            redis.call('SET', KEYS[1], v .. ' ' .. ARGV[2]) return 1";
        if hints.is_empty() {
            return Ok(());
        }
        let inner = &self.inner;
        // EVAL, not EVALSHA: a node that does not hold the script yet costs no round trip more.
        let sent = crate::store::all_together(
            hints
                .iter()
                .map(|(parent, at, child)| {
                    let mut cmd = redis::cmd("EVAL");
                    cmd.arg(HINT)
                        .arg(1)
                        .arg(cid_key(parent))
                        .arg(at.to_string())
                        .arg(format!("c:{child}"))
                        .arg(MAX_CHILD_HINTS);
                    async move {
                        let _: Value = cmd.query_async(&mut inner.conn()).await?;
                        Ok::<(), redis::RedisError>(())
                    }
                })
                .collect(),
        )
        .await;
        sent.into_iter()
            .collect::<Result<(), _>>()
            .map_err(|e| inner.error(None, e))
    }

    async fn bind(&self, binds: &[(String, Binding)]) -> Result<Vec<Location>, StoreError> {
        let inner = &self.inner;
        if binds.is_empty() {
            return Ok(Vec::new());
        }
        // SET NX per id (a pipeline on a standalone server, one per id's slot on a cluster),
        // then read back the ids another writer bound first.
        let set = |pipe: &mut redis::Pipeline, (cid, b): &(String, Binding)| {
            pipe.cmd("SET")
                .arg(cid_key(cid))
                .arg(b.to_string())
                .arg("NX");
        };
        let mut replies: Vec<Value> = Vec::with_capacity(binds.len());
        let mut shortfall = None;
        let pipes: Vec<redis::Pipeline> = match inner.conn() {
            Conn::Standalone(_) => {
                let mut pipe = redis::pipe();
                binds.iter().for_each(|b| set(&mut pipe, b));
                vec![pipe]
            }
            Conn::Cluster(_) => binds
                .iter()
                .map(|b| {
                    let mut pipe = redis::pipe();
                    set(&mut pipe, b);
                    pipe
                })
                .collect(),
        };
        // On a cluster, one pipeline per id's slot, all sent at once: one round trip.
        let sent = crate::store::all_together(
            pipes
                .into_iter()
                .map(|mut pipe| async move { inner.durable(&mut pipe).await })
                .collect(),
        )
        .await;
        for done in sent {
            let (values, replicated) = done.map_err(|e| inner.error(None, e))?;
            replies.extend(values);
            shortfall = shortfall.or(replicated.check().err());
        }
        if let Some(e) = shortfall {
            return Err(e);
        }
        let lost: Vec<usize> = replies
            .iter()
            .enumerate()
            .filter(|(_, v)| **v == Value::Nil)
            .map(|(i, _)| i)
            .collect();
        let existing = inner
            .per_key("GET", lost.iter().map(|&i| cid_key(&binds[i].0)).collect())
            .await
            .map_err(|e| inner.error(None, e))?;
        let mut out: Vec<Location> = binds.iter().map(|(_, b)| b.at.clone()).collect();
        for (&i, v) in lost.iter().zip(&existing) {
            out[i] = location_of(v)?.ok_or_else(|| {
                StoreError::Backend(format!(
                    "credential index entry of {:?} vanished",
                    binds[i].0
                ))
            })?;
        }
        Ok(out)
    }

    async fn mark_reissues(
        &self,
        list: &str,
        marks: &[(u32, String)],
    ) -> Result<Vec<String>, StoreError> {
        check_id(list).map_err(|_| StoreError::UnknownList(list.to_owned()))?;
        let inner = &self.inner;
        let key = reissued_key(list);
        let mut pipe = redis::pipe();
        pipe.atomic();
        for (idx, new) in marks {
            pipe.cmd("HSETNX").arg(&key).arg(*idx).arg(new).ignore();
        }
        pipe.cmd("HMGET")
            .arg(&key)
            .arg(marks.iter().map(|(idx, _)| *idx).collect::<Vec<u32>>());
        let (marked,): (Vec<Option<String>>,) = pipe
            .query_async(&mut inner.conn())
            .await
            .map_err(|e| inner.error(Some(list), e))?;
        if marked.len() != marks.len() {
            return Err(StoreError::Backend(format!(
                "redis: unexpected reissue marks reply for {list:?}"
            )));
        }
        marked
            .into_iter()
            .map(|m| m.ok_or_else(|| corrupt(list, "a reissue mark vanished")))
            .collect()
    }

    async fn unmark_reissues(&self, list: &str, marks: &[(u32, String)]) -> Result<(), StoreError> {
        check_id(list).map_err(|_| StoreError::UnknownList(list.to_owned()))?;
        // Compare-and-delete per field: a mark another request holds stays.
        const UNMARK: &str = "for i = 1, #ARGV, 2 do \
            if redis.call('HGET', KEYS[1], ARGV[i]) == ARGV[i + 1] then \
            redis.call('HDEL', KEYS[1], ARGV[i]) end end return 0";
        let inner = &self.inner;
        let script = redis::Script::new(UNMARK);
        let mut call = script.key(reissued_key(list));
        for (idx, mark) in marks {
            call.arg(*idx).arg(mark);
        }
        let _: Value = call
            .invoke_async(&mut inner.conn())
            .await
            .map_err(|e| inner.error(Some(list), e))?;
        Ok(())
    }

    async fn rebind(
        &self,
        id: &str,
        stale: &Location,
        at: &Binding,
    ) -> Result<Location, StoreError> {
        // Compare-and-set on the one key: nothing else can make `stale` right again (its index
        // holds another credential's record for good), so replacing it loses nothing.
        // The place is the binding's first word; hints follow it (`Binding`).
        const REBIND: &str = "local v = redis.call('GET', KEYS[1]) \
            if not v or string.match(v, '^%S+') == ARGV[1] then \
            redis.call('SET', KEYS[1], ARGV[2]) return ARGV[2] end \
            return v";
        let inner = &self.inner;
        let script = redis::Script::new(REBIND);
        let mut call = Call::new(&script);
        call.key(cid_key(id))
            .arg(stale.to_string())
            .arg(at.to_string());
        // A binding replaced is acknowledged to the caller: it waits for replicas like any write.
        let (v, replicated): (Value, _) =
            inner.write(&call).await.map_err(|e| inner.error(None, e))?;
        replicated.check()?;
        location_of(&v)?.ok_or_else(|| {
            StoreError::Backend(format!("credential index entry of {id:?} vanished"))
        })
    }
}

impl RedisStore {
    /// The error of a registry commit of `txns`: a conflict (and which list; a claim refused
    /// drops that list's cached allocations, which lagged), one of the script's own errors
    /// about a list, or the backend's.
    fn commit_error(
        &self,
        txns: &[(String, Txn)],
        first: &str,
        e: redis::RedisError,
    ) -> StoreError {
        let inner = &self.inner;
        let text = e.to_string();
        let list_at = |j: Option<usize>| {
            j.and_then(|j| txns.get(j))
                .map_or(first, |(list, _)| list.as_str())
        };
        if let Some(at) = text.find("STATUSD conflict") {
            let mut words = text[at + "STATUSD conflict".len()..].split_whitespace();
            let reason = words.next().unwrap_or("");
            let j = words
                .next()
                .and_then(|w| w.parse::<usize>().ok())
                .and_then(|j| j.checked_sub(1));
            let list = list_at(j);
            if reason == "claimed" {
                // Another writer took an index our bitmap showed free: read it afresh.
                inner
                    .allocated
                    .bitmaps
                    .lock()
                    .expect("not poisoned")
                    .remove(list);
            }
            return StoreError::Conflict(list.to_owned());
        }
        if let Some((j, rest)) = registry_error(&e) {
            if let Some((list, txn)) = txns.get(j) {
                if let Some(mapped) = script_error_text(list, &txn.changes, &rest) {
                    return mapped;
                }
            }
        }
        match script_error(first, &[], &e) {
            Some(mapped) => mapped,
            None => inner.error(Some(first), e),
        }
    }
}

impl RedisStore {
    /// `redis_read.lua` on `list` at `idxs`, following the links into other lists with
    /// `follow` (standalone Redis only): `list`'s read first, then those of the other lists.
    async fn read_lists(
        &self,
        list: &str,
        idxs: &[u32],
        follow: bool,
    ) -> Result<Vec<(String, MetaRecords)>, StoreError> {
        check_id(list).map_err(|_| StoreError::UnknownList(list.to_owned()))?;
        let inner = &self.inner;
        let mut call = inner.read.key(meta_key(list));
        call.key(creds_key(list));
        if follow {
            call.arg("follow");
        }
        call.arg(idxs);
        let reply: Value = call
            .invoke_async(&mut inner.conn())
            .await
            .map_err(|e| inner.error(Some(list), e))?;
        let bad = || StoreError::Backend(format!("redis: unexpected records reply for {list:?}"));
        let Value::Array(parts) = reply else {
            return Err(bad());
        };
        let mut parts = parts.into_iter();
        let (Some(meta), Some(flat)) = (parts.next(), parts.next()) else {
            return Err(bad());
        };
        let meta =
            parse_meta(list, &meta)?.ok_or_else(|| StoreError::UnknownList(list.to_owned()))?;
        let mut read = vec![(list.to_owned(), (meta, records_of(flat).ok_or_else(bad)?))];
        match (parts.next(), parts.next()) {
            (None, None) if !follow => {}
            (Some(Value::Array(extra)), None) if follow && extra.len() % 3 == 0 => {
                let mut extra = extra.into_iter();
                while let (Some(other), Some(meta), Some(flat)) =
                    (extra.next(), extra.next(), extra.next())
                {
                    let other = bytes_of(&other)
                        .and_then(|b| String::from_utf8(b.to_vec()).ok())
                        .filter(|l| check_id(l).is_ok() && l != list)
                        .ok_or_else(bad)?;
                    // A linked list whose metadata does not read as a list is left out: whoever
                    // reads it later reports that.
                    let Ok(Some(meta)) = parse_meta(&other, &meta) else {
                        continue;
                    };
                    read.push((other, (meta, records_of(flat).ok_or_else(bad)?)));
                }
            }
            _ => return Err(bad()),
        }
        Ok(read)
    }
}

/// The records `redis_read.lua` returns for one list (`{idx_1, record_1, ...}`), by index;
/// `None` if the reply is not that.
fn records_of(flat: Value) -> Option<BTreeMap<u32, Vec<u8>>> {
    let Value::Array(flat) = flat else {
        return None;
    };
    if flat.len() % 2 != 0 {
        return None;
    }
    let mut records = BTreeMap::new();
    let mut flat = flat.into_iter();
    while let (Some(idx), Some(rec)) = (flat.next(), flat.next()) {
        let (Value::Int(idx), Value::BulkString(rec)) = (idx, rec) else {
            return None;
        };
        records.insert(u32::try_from(idx).ok()?, rec);
    }
    Some(records)
}
