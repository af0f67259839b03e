//! The issuer registry on Redis: allocation bitmaps (remembered between calls), credential
//! records, the commit script and the credential-id index.

use super::connection::Conn;
use super::keys::{alloc_key, cid_key, creds_key, data_key, feed_key, meta_key};
use super::parse::{
    bitmap_from_redis, bytes_of, corrupt, location_of, now_secs, parse_meta, script_error,
};
use super::RedisStore;
use crate::store::registry::{Location, MetaRecords, Records, Registry, Txn};
use crate::store::{check_id, Extends, StoreError};
use redis::Value;
use roaring::RoaringBitmap;

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
        let (meta, records) = self.list_records(list, idxs).await?;
        Ok((meta.version, records))
    }

    async fn list_records(&self, list: &str, idxs: &[u32]) -> Result<MetaRecords, StoreError> {
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
        Ok((meta, records))
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
        check_id(list).map_err(|_| StoreError::UnknownList(list.to_owned()))?;
        let inner = &self.inner;
        let mut call = inner.apply.key(meta_key(list));
        call.key(data_key(list))
            .key(feed_key(list))
            .key(creds_key(list))
            .key(alloc_key(list))
            .arg(now_secs())
            .arg(txn.expect_version)
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
        for c in &txn.changes {
            call.arg(c.idx).arg(c.status.0);
        }
        let reply: Vec<i64> = match call.invoke_async(&mut inner.conn()).await {
            Ok(reply) => reply,
            Err(e) if e.to_string().contains("STATUSD conflict") => {
                if e.to_string().contains("STATUSD conflict claimed") {
                    // Another writer took an index our bitmap showed free: read it afresh.
                    inner
                        .allocated
                        .bitmaps
                        .lock()
                        .expect("not poisoned")
                        .remove(list);
                }
                return Err(StoreError::Conflict(list.to_owned()));
            }
            Err(e) => {
                return Err(match script_error(list, &txn.changes, &e) {
                    Some(mapped) => mapped,
                    None => inner.error(Some(list), e),
                })
            }
        };
        if !txn.claim.is_empty() {
            if let Some(bitmap) = inner
                .allocated
                .bitmaps
                .lock()
                .expect("not poisoned")
                .get_mut(list)
            {
                bitmap.extend(txn.claim.iter().copied());
            }
        }
        inner.notify(Some(list));
        reply
            .first()
            .and_then(|&v| u64::try_from(v).ok())
            .ok_or_else(|| {
                StoreError::Backend(format!("redis: unexpected commit reply for {list:?}"))
            })
    }

    async fn locate(&self, ids: &[String]) -> Result<Vec<Option<Location>>, StoreError> {
        let inner = &self.inner;
        let replies = inner
            .per_key("GET", ids.iter().map(|id| cid_key(id)).collect())
            .await
            .map_err(|e| inner.error(None, e))?;
        replies.iter().map(location_of).collect()
    }

    async fn bind(&self, binds: &[(String, Location)]) -> Result<Vec<Location>, StoreError> {
        let inner = &self.inner;
        if binds.is_empty() {
            return Ok(Vec::new());
        }
        // SET NX per id (a pipeline on a standalone server, concurrent commands on a cluster),
        // then read back the ids another writer bound first.
        let replies: Vec<Value> = match inner.conn() {
            Conn::Standalone(c) => {
                let mut pipe = redis::pipe();
                for (cid, at) in binds {
                    pipe.cmd("SET")
                        .arg(cid_key(cid))
                        .arg(at.to_string())
                        .arg("NX");
                }
                pipe.query_async(&mut Conn::Standalone(c))
                    .await
                    .map_err(|e| inner.error(None, e))?
            }
            Conn::Cluster(c) => {
                let mut out = Vec::with_capacity(binds.len());
                for (cid, at) in binds {
                    crate::store::note_requests(1);
                    let v: Value = redis::cmd("SET")
                        .arg(cid_key(cid))
                        .arg(at.to_string())
                        .arg("NX")
                        .query_async(&mut c.clone())
                        .await
                        .map_err(|e| inner.error(None, e))?;
                    out.push(v);
                }
                out
            }
        };
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
        let mut out: Vec<Location> = binds.iter().map(|(_, at)| at.clone()).collect();
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
}
