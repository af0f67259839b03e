//! The embedded source of truth: a redb database in the data directory.
//!
//! Tables: `lists` maps a list id to its [`ListMeta`] (JSON), and `entries` maps
//! `(list id, index)` to the status of every non-VALID entry, so space and load time scale with
//! non-VALID entries. Each [`Store::apply`] is one redb write transaction committed with
//! immediate durability (fsync) before it returns: an acknowledged write survives `kill -9`.
//! redb calls block, so they run on tokio's blocking pool, never on the async workers.
//!
//! The issuer registry ([`Registry`]) adds `creds` (`(list id, index)` → record bytes) and
//! `cids` (credential id → `<list>/<index>`), committed in the same transactions as the
//! entries. Allocated indices are the keys of `creds`; a per-list bitmap of them is kept in
//! memory (built on first use) and updated under the same lock as every registry commit.
//!
//! What it promises as a [`Store`] is tested with the Redis store's, by one contract suite
//! (`tests/it/store_contract.rs`).

use super::registry::{
    family_links, links_elsewhere, Binding, Location, MetaRecords, MetasOf, Records, Registry, Txn,
};
use super::retire::Retire;
use super::{
    check_change, check_id, Applied, Change, Hint, Hints, ListMeta, NewList, Store, StoreError,
};
use crate::status::{Bits, Status, StatusList};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};
use roaring::RoaringBitmap;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const LISTS: TableDefinition<&str, &[u8]> = TableDefinition::new("lists");
const ENTRIES: TableDefinition<(&str, u32), u8> = TableDefinition::new("entries");
const CREDS: TableDefinition<(&str, u32), &[u8]> = TableDefinition::new("creds");
const CIDS: TableDefinition<&str, &str> = TableDefinition::new("cids");

/// File name of the database inside the data directory.
pub const DB_FILE: &str = "statusd.redb";

/// The embedded store. Cheap to clone.
#[derive(Clone)]
pub struct EmbeddedStore {
    /// The open database. A failed write (a full disk) leaves redb refusing every later write
    /// until it is reopened, so `blocking` swaps in a fresh handle under the write lock.
    db: Arc<RwLock<Database>>,
    /// Where `db` lives, to reopen it.
    path: Arc<PathBuf>,
    /// Set when an operation hit an I/O error; the next operation reopens the database first.
    reopen: Arc<AtomicBool>,
    /// Noted after every commit, naming its list; the refresher waits on it.
    hints: Arc<Hints>,
    /// Allocated indices per list, loaded on first use; held across every registry commit.
    allocated: Arc<Mutex<HashMap<String, RoaringBitmap>>>,
}

/// Maps a redb error, telling a full disk (`ENOSPC`) apart from other failures.
fn backend(e: impl Into<redb::Error>) -> StoreError {
    let e: redb::Error = e.into();
    match &e {
        redb::Error::Io(io) if super::is_disk_full(io) => StoreError::Full(e.to_string()),
        redb::Error::Io(_) | redb::Error::PreviousIo => {
            StoreError::Backend(format!("{IO_FAILED}{e}"))
        }
        _ => StoreError::Backend(e.to_string()),
    }
}

/// Prefix of the errors after which the database is reopened before the next operation.
const IO_FAILED: &str = "I/O failure (the database is reopened before the next operation): ";

/// Whether an error leaves redb refusing writes until the database is reopened.
fn needs_reopen(e: &StoreError) -> bool {
    match e {
        StoreError::Full(_) => true,
        StoreError::Backend(m) => m.starts_with(IO_FAILED),
        _ => false,
    }
}

/// Closes and reopens the database after an I/O error (redb's recovery runs on open). While the
/// disk is still full, the reopen fails the same way and the flag stays set for the next try.
fn reopen_db(db: &RwLock<Database>, path: &Path, flag: &AtomicBool) -> Result<(), StoreError> {
    let mut guard = db
        .write()
        .map_err(|_| StoreError::Backend("database lock poisoned".into()))?;
    if !flag.load(Ordering::Acquire) {
        return Ok(()); // another operation reopened it meanwhile
    }
    // redb holds a file lock: the old handle must be closed before a new one can open. A
    // throwaway in-memory database stands in for the moment between the two.
    let placeholder = Database::builder()
        .create_with_backend(redb::backends::InMemoryBackend::new())
        .map_err(|e| StoreError::Backend(format!("reopening {}: {e}", path.display())))?;
    drop(std::mem::replace(&mut *guard, placeholder));
    let fresh = Database::create(path).map_err(|e| match e {
        redb::DatabaseError::Storage(s) => backend(s),
        e => StoreError::Backend(format!("reopening {}: {e}", path.display())),
    });
    match fresh {
        Ok(fresh) => {
            *guard = fresh;
            flag.store(false, Ordering::Release);
            tracing::info!(path = %path.display(), "embedded store reopened after an I/O error");
            Ok(())
        }
        Err(e) => Err(e),
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn decode_meta(id: &str, bytes: &[u8]) -> Result<ListMeta, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        list: id.to_owned(),
        reason: format!("metadata: {e}"),
    })
}

/// The metadata of list `id` in the `lists` table; [`StoreError::UnknownList`] if it has none.
fn meta_of(
    lists: &impl ReadableTable<&'static str, &'static [u8]>,
    id: &str,
) -> Result<ListMeta, StoreError> {
    match lists.get(id).map_err(backend)? {
        Some(v) => decode_meta(id, v.value()),
        None => Err(StoreError::UnknownList(id.to_owned())),
    }
}

/// Every list's metadata in `lists`.
fn every_meta(
    lists: &impl ReadableTable<&'static str, &'static [u8]>,
) -> Result<Vec<ListMeta>, StoreError> {
    let mut out = Vec::new();
    for row in lists.iter().map_err(backend)? {
        let (k, v) = row.map_err(backend)?;
        out.push(decode_meta(k.value(), v.value())?);
    }
    Ok(out)
}

/// The metadata of lists `ids` in `lists` (`None` for one that does not exist), in order.
fn some_metas(
    lists: &impl ReadableTable<&'static str, &'static [u8]>,
    ids: &[String],
) -> Result<Vec<Option<ListMeta>>, StoreError> {
    ids.iter()
        .map(|id| match meta_of(lists, id) {
            Ok(meta) => Ok(Some(meta)),
            Err(StoreError::UnknownList(_)) => Ok(None),
            Err(e) => Err(e),
        })
        .collect()
}

/// Where each credential id is bound, read in `tx` ([`Registry::locate`]).
fn locate_in(
    tx: &redb::ReadTransaction,
    ids: &[String],
) -> Result<Vec<Option<Location>>, StoreError> {
    let cids = tx.open_table(CIDS).map_err(backend)?;
    ids.iter()
        .map(|cid| match cids.get(cid.as_str()).map_err(backend)? {
            None => Ok(None),
            Some(v) => Location::parse(v.value()).map(Some).ok_or_else(|| {
                StoreError::Backend(format!("credential index entry {:?} is corrupt", v.value()))
            }),
        })
        .collect()
}

/// [`Registry::list_records`] of list `id` at `idxs`, and with `follow`, of every other list its
/// records link to ([`Registry::list_records_following`]), in one read transaction: the
/// records are exactly those of the versions read.
fn read_lists(
    db: &Database,
    id: &str,
    idxs: Vec<u32>,
    follow: bool,
) -> Result<Vec<(String, MetaRecords)>, StoreError> {
    let tx = db.begin_read().map_err(backend)?;
    let lists = tx.open_table(LISTS).map_err(backend)?;
    let creds = tx.open_table(CREDS).map_err(backend)?;
    let family = |id: &str, mut queue: Vec<u32>| {
        let mut seen = std::collections::BTreeSet::new();
        let mut out = std::collections::BTreeMap::new();
        while let Some(idx) = queue.pop() {
            if !seen.insert(idx) {
                continue;
            }
            if let Some(v) = creds.get((id, idx)).map_err(backend)? {
                let bytes = v.value().to_vec();
                queue.extend(family_links(&bytes));
                out.insert(idx, bytes);
            }
        }
        Ok::<_, StoreError>(out)
    };
    let meta = meta_of(&lists, id)?;
    let recs = family(id, idxs)?;
    let mut elsewhere: std::collections::BTreeMap<String, Vec<u32>> = Default::default();
    if follow {
        for bytes in recs.values() {
            for at in links_elsewhere(id, bytes) {
                elsewhere.entry(at.list).or_default().push(at.idx);
            }
        }
    }
    let mut read = vec![(id.to_owned(), (meta, recs))];
    for (list, idxs) in elsewhere {
        // A list that does not exist (or whose metadata does not decode) is left out: whoever
        // reads it later reports that.
        let Ok(meta) = meta_of(&lists, &list) else {
            continue;
        };
        let recs = family(&list, idxs)?;
        read.push((list, (meta, recs)));
    }
    Ok(read)
}

impl EmbeddedStore {
    /// Opens (or creates) the database in `dir`, creating the directory if needed.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Backend(format!("creating {}: {e}", dir.display())))?;
        let path = dir.join(DB_FILE);
        let db = Database::create(&path).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => StoreError::Backend(format!(
                "{} is locked: another statusd (or `statusd seed`) probably has the data \
                 directory {} open; stop it, or give this one another --data-dir",
                path.display(),
                dir.display()
            )),
            e => StoreError::Backend(format!("opening {}: {e}", path.display())),
        })?;
        // Create the tables up front so readers never see "table does not exist".
        let tx = db.begin_write().map_err(backend)?;
        tx.open_table(LISTS).map_err(backend)?;
        tx.open_table(ENTRIES).map_err(backend)?;
        tx.open_table(CREDS).map_err(backend)?;
        tx.open_table(CIDS).map_err(backend)?;
        tx.commit().map_err(backend)?;
        Ok(EmbeddedStore {
            db: Arc::new(RwLock::new(db)),
            path: Arc::new(path),
            reopen: Arc::default(),
            hints: Arc::default(),
            allocated: Arc::default(),
        })
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let db = self.db.clone();
        let path = self.path.clone();
        let reopen = self.reopen.clone();
        super::note_requests(1);
        tokio::task::spawn_blocking(move || {
            if reopen.load(Ordering::Acquire) {
                reopen_db(&db, &path, &reopen)?;
            }
            let guard = db
                .read()
                .map_err(|_| StoreError::Backend("database lock poisoned".into()))?;
            let res = f(&guard);
            if let Err(e) = &res {
                if needs_reopen(e) {
                    reopen.store(true, Ordering::Release);
                }
            }
            res
        })
        .await
        .map_err(|e| StoreError::Backend(format!("blocking task failed: {e}")))?
    }

    /// Notes a commit to list `id` (`None`: a list was created).
    fn notify(&self, id: Option<&str>) {
        self.hints.note(id);
    }

    fn lists_sync(db: &Database) -> Result<Vec<ListMeta>, StoreError> {
        let tx = db.begin_read().map_err(backend)?;
        every_meta(&tx.open_table(LISTS).map_err(backend)?)
    }

    fn load_sync(db: &Database, id: &str) -> Result<(ListMeta, StatusList), StoreError> {
        let tx = db.begin_read().map_err(backend)?;
        let lists = tx.open_table(LISTS).map_err(backend)?;
        let meta = meta_of(&lists, id)?;
        let bits = meta.bits()?;
        let entries = tx.open_table(ENTRIES).map_err(backend)?;
        let mut pairs = Vec::new();
        for row in entries.range((id, 0)..=(id, u32::MAX)).map_err(backend)? {
            let (k, v) = row.map_err(backend)?;
            let (_, idx) = k.value();
            let value = v.value();
            if value == 0 || value > bits.max_value() || idx >= meta.size {
                return Err(StoreError::Corrupt {
                    list: id.to_owned(),
                    reason: format!(
                        "entry {idx} holds {value:#04x}, invalid for {bits}-bit list of {}",
                        meta.size
                    ),
                });
            }
            pairs.push((idx, value));
        }
        let list = StatusList::from_sorted_nonzero(bits, meta.size, pairs)?;
        Ok((meta, list))
    }
}

/// Applies `changes` to list `id` inside `tx` and bumps its version; with `expect`, only if
/// the version is still that one. `also` runs before the metadata is written, with it, to
/// write the registry's part of the same commit. Returning an error leaves `tx` to be dropped
/// uncommitted: nothing of the batch is applied.
fn write_changes(
    tx: &WriteTransaction,
    id: &str,
    expect: Option<u64>,
    changes: &[Change],
    also: impl FnOnce(&mut ListMeta) -> Result<(), StoreError>,
) -> Result<Applied, StoreError> {
    let mut lists = tx.open_table(LISTS).map_err(backend)?;
    let mut meta = meta_of(&lists, id)?;
    if expect.is_some_and(|v| v != meta.version) {
        return Err(StoreError::Conflict(id.to_owned()));
    }
    if meta.life.is_retired() {
        return Err(StoreError::Retired(id.to_owned()));
    }
    let bits: Bits = meta.bits()?;
    let mut entries = tx.open_table(ENTRIES).map_err(backend)?;
    let mut previous = Vec::with_capacity(changes.len());
    for c in changes {
        let old = entries
            .get((id, c.idx))
            .map_err(backend)?
            .map_or(Status::VALID, |v| Status(v.value()));
        check_change(bits, meta.size, old, *c)?;
        if c.status == Status::VALID {
            entries.remove((id, c.idx)).map_err(backend)?;
        } else {
            entries.insert((id, c.idx), c.status.0).map_err(backend)?;
        }
        previous.push(old);
    }
    also(&mut meta)?;
    meta.version += 1;
    meta.updated_ms = now_ms();
    meta.updated_at = meta.updated_ms / 1000;
    let bytes = serde_json::to_vec(&meta).map_err(|e| StoreError::Backend(e.to_string()))?;
    lists.insert(id, bytes.as_slice()).map_err(backend)?;
    Ok(Applied {
        version: meta.version,
        previous,
    })
}

/// The list's allocated indices from the `creds` table.
fn scan_allocated(db: &Database, id: &str) -> Result<RoaringBitmap, StoreError> {
    let tx = db.begin_read().map_err(backend)?;
    let creds = tx.open_table(CREDS).map_err(backend)?;
    let mut out = RoaringBitmap::new();
    for row in creds.range((id, 0)..=(id, u32::MAX)).map_err(backend)? {
        let (k, _) = row.map_err(backend)?;
        out.insert(k.value().1);
    }
    Ok(out)
}

fn version_of(db: &Database, id: &str) -> Result<u64, StoreError> {
    let tx = db.begin_read().map_err(backend)?;
    let lists = tx.open_table(LISTS).map_err(backend)?;
    match lists.get(id).map_err(backend)? {
        Some(v) => Ok(decode_meta(id, v.value())?.version),
        None => Err(StoreError::UnknownList(id.to_owned())),
    }
}

impl Registry for EmbeddedStore {
    async fn allocated(&self, list: &str) -> Result<(u64, RoaringBitmap), StoreError> {
        let id = list.to_owned();
        let cache = self.allocated.clone();
        self.blocking(move |db| {
            let mut cache = cache
                .lock()
                .map_err(|_| StoreError::Backend("allocation lock poisoned".into()))?;
            let version = version_of(db, &id)?;
            if !cache.contains_key(&id) {
                let bitmap = scan_allocated(db, &id)?;
                cache.insert(id.clone(), bitmap);
            }
            Ok((version, cache[&id].clone()))
        })
        .await
    }

    async fn records(&self, list: &str, idxs: &[u32]) -> Result<Records, StoreError> {
        let id = list.to_owned();
        let idxs = idxs.to_vec();
        self.blocking(move |db| {
            // One read transaction: the records are exactly those of the version read.
            let tx = db.begin_read().map_err(backend)?;
            let lists = tx.open_table(LISTS).map_err(backend)?;
            let meta = meta_of(&lists, &id)?;
            let creds = tx.open_table(CREDS).map_err(backend)?;
            let mut out = Vec::with_capacity(idxs.len());
            for idx in idxs {
                out.push(
                    creds
                        .get((id.as_str(), idx))
                        .map_err(backend)?
                        .map(|v| v.value().to_vec()),
                );
            }
            Ok((meta.version, out))
        })
        .await
    }

    async fn list_records(&self, list: &str, idxs: &[u32]) -> Result<MetaRecords, StoreError> {
        let id = list.to_owned();
        let idxs = idxs.to_vec();
        let mut read = self
            .blocking(move |db| read_lists(db, &id, idxs, false))
            .await?;
        Ok(read.swap_remove(0).1)
    }

    async fn list_records_following(
        &self,
        list: &str,
        idxs: &[u32],
    ) -> Result<Vec<(String, MetaRecords)>, StoreError> {
        let id = list.to_owned();
        let idxs = idxs.to_vec();
        self.blocking(move |db| read_lists(db, &id, idxs, true))
            .await
    }

    /// Exact, not merely a subset: only this process writes the database, and every commit
    /// updates the cache under the same lock.
    fn allocated_cached(&self, list: &str) -> Option<RoaringBitmap> {
        self.allocated.lock().ok()?.get(list).cloned()
    }

    async fn commit(&self, list: &str, txn: &Txn) -> Result<u64, StoreError> {
        let versions = self
            .commit_joint(&[(list.to_owned(), txn.clone())], &[])
            .await?;
        Ok(versions[0])
    }

    fn commits_jointly(&self) -> bool {
        true
    }

    async fn commit_joint(
        &self,
        txns: &[(String, Txn)],
        binds: &[(String, Location)],
    ) -> Result<Vec<u64>, StoreError> {
        let written: Vec<String> = txns.iter().map(|(id, _)| id.clone()).collect();
        let txns = txns.to_vec();
        let binds = binds.to_vec();
        let cache = self.allocated.clone();
        let versions = self
            .blocking(move |db| {
                // Held across the commit: the bitmaps and the table never disagree.
                let mut cache = cache
                    .lock()
                    .map_err(|_| StoreError::Backend("allocation lock poisoned".into()))?;
                let mut claimed = Vec::with_capacity(txns.len());
                for (id, txn) in &txns {
                    if !cache.contains_key(id) {
                        let bitmap = scan_allocated(db, id)?;
                        cache.insert(id.clone(), bitmap);
                    }
                    let bitmap = &cache[id];
                    let mut mine = RoaringBitmap::new();
                    for &idx in &txn.claim {
                        if bitmap.contains(idx) || !mine.insert(idx) {
                            return Err(StoreError::Conflict(id.clone()));
                        }
                    }
                    claimed.push(mine);
                }
                // One write transaction (one fsync) for every list and binding; an error drops
                // it, and with it everything written so far.
                let tx = db.begin_write().map_err(backend)?;
                let mut versions = Vec::with_capacity(txns.len());
                for ((id, txn), mine) in txns.iter().zip(&claimed) {
                    let applied =
                        write_changes(&tx, id, Some(txn.expect_version), &txn.changes, |meta| {
                            if let Some(bad) = mine.iter().find(|&i| i >= meta.size) {
                                return Err(crate::status::StatusError::IndexOutOfRange {
                                    idx: bad.into(),
                                    size: meta.size,
                                }
                                .into());
                            }
                            meta.allocated += mine.len();
                            meta.life.expires_max = meta.life.extended(txn.extends);
                            let mut creds = tx.open_table(CREDS).map_err(backend)?;
                            for (idx, record) in &txn.records {
                                if *idx >= meta.size {
                                    return Err(crate::status::StatusError::IndexOutOfRange {
                                        idx: (*idx).into(),
                                        size: meta.size,
                                    }
                                    .into());
                                }
                                creds
                                    .insert((id.as_str(), *idx), record.as_slice())
                                    .map_err(backend)?;
                            }
                            Ok(())
                        })?;
                    versions.push(applied.version);
                }
                {
                    let mut cids = tx.open_table(CIDS).map_err(backend)?;
                    for (cid, at) in &binds {
                        if cids.get(cid.as_str()).map_err(backend)?.is_some() {
                            let list = txns.first().map_or_else(String::new, |(id, _)| id.clone());
                            return Err(StoreError::Conflict(list));
                        }
                        cids.insert(cid.as_str(), at.to_string().as_str())
                            .map_err(backend)?;
                    }
                }
                tx.commit().map_err(backend)?;
                for ((id, _), mine) in txns.iter().zip(claimed) {
                    *cache.get_mut(id).expect("inserted above") |= mine;
                }
                Ok(versions)
            })
            .await?;
        for id in &written {
            self.notify(Some(id));
        }
        Ok(versions)
    }

    async fn locate(&self, ids: &[String]) -> Result<Vec<Option<Location>>, StoreError> {
        let ids = ids.to_vec();
        self.blocking(move |db| {
            let tx = db.begin_read().map_err(backend)?;
            locate_in(&tx, &ids)
        })
        .await
    }

    /// One read transaction for both.
    async fn locate_with_metas(
        &self,
        ids: &[String],
        metas: MetasOf<'_>,
    ) -> Result<(Vec<ListMeta>, Vec<Option<Binding>>), StoreError> {
        let ids = ids.to_vec();
        let these = match metas {
            MetasOf::These(lists) => Some(lists.to_vec()),
            MetasOf::Every => None,
        };
        self.blocking(move |db| {
            let tx = db.begin_read().map_err(backend)?;
            let lists = tx.open_table(LISTS).map_err(backend)?;
            let metas = match these {
                Some(these) => some_metas(&lists, &these)?.into_iter().flatten().collect(),
                None => every_meta(&lists)?,
            };
            let found = locate_in(&tx, &ids)?;
            Ok((
                metas,
                found.into_iter().map(|l| l.map(Binding::from)).collect(),
            ))
        })
        .await
    }

    /// The places alone: this store reads every list a record links to in one transaction,
    /// so it keeps no hints.
    async fn bind(&self, binds: &[(String, Binding)]) -> Result<Vec<Location>, StoreError> {
        let binds: Vec<(String, Location)> = binds
            .iter()
            .map(|(cid, b)| (cid.clone(), b.at.clone()))
            .collect();
        let bound = self
            .blocking(move |db| {
                // One transaction (one fsync) for the whole batch.
                let tx = db.begin_write().map_err(backend)?;
                let mut out = Vec::with_capacity(binds.len());
                {
                    let mut cids = tx.open_table(CIDS).map_err(backend)?;
                    for (cid, at) in binds {
                        let existing = cids
                            .get(cid.as_str())
                            .map_err(backend)?
                            .map(|v| v.value().to_owned());
                        out.push(match existing {
                            Some(v) => Location::parse(&v).ok_or_else(|| {
                                StoreError::Backend(format!(
                                    "credential index entry {v:?} is corrupt"
                                ))
                            })?,
                            None => {
                                cids.insert(cid.as_str(), at.to_string().as_str())
                                    .map_err(backend)?;
                                at
                            }
                        });
                    }
                }
                tx.commit().map_err(backend)?;
                Ok(out)
            })
            .await?;
        Ok(bound)
    }

    async fn rebind(
        &self,
        id: &str,
        stale: &Location,
        at: &Binding,
    ) -> Result<Location, StoreError> {
        let (id, stale, at) = (id.to_owned(), stale.to_string(), at.at.clone());
        self.blocking(move |db| {
            let tx = db.begin_write().map_err(backend)?;
            let bound = {
                let mut cids = tx.open_table(CIDS).map_err(backend)?;
                let existing = cids
                    .get(id.as_str())
                    .map_err(backend)?
                    .map(|v| v.value().to_owned());
                match existing {
                    Some(v) if v != stale => Location::parse(&v).ok_or_else(|| {
                        StoreError::Backend(format!("credential index entry {v:?} is corrupt"))
                    })?,
                    _ => {
                        cids.insert(id.as_str(), at.to_string().as_str())
                            .map_err(backend)?;
                        at
                    }
                }
            };
            tx.commit().map_err(backend)?;
            Ok(bound)
        })
        .await
    }
}

impl Retire for EmbeddedStore {
    async fn retire(&self, id: &str, expect_version: u64, at: u64) -> Result<bool, StoreError> {
        let id = id.to_owned();
        let cache = self.allocated.clone();
        let retired = self
            .blocking(move |db| {
                let tx = db.begin_write().map_err(backend)?;
                {
                    let mut lists = tx.open_table(LISTS).map_err(backend)?;
                    let mut meta = meta_of(&lists, &id)?;
                    if meta.life.is_retired() {
                        return Ok(false);
                    }
                    if meta.version != expect_version {
                        return Err(StoreError::Conflict(id));
                    }
                    meta.life.retired_at = Some(at);
                    meta.version += 1;
                    meta.updated_ms = now_ms();
                    meta.updated_at = meta.updated_ms / 1000;
                    let bytes = serde_json::to_vec(&meta)
                        .map_err(|e| StoreError::Backend(e.to_string()))?;
                    lists
                        .insert(id.as_str(), bytes.as_slice())
                        .map_err(backend)?;
                }
                tx.commit().map_err(backend)?;
                if let Ok(mut cache) = cache.lock() {
                    cache.remove(&id);
                }
                Ok(true)
            })
            .await?;
        if retired {
            self.notify(None);
        }
        Ok(retired)
    }

    /// Deletes the list's entries; its records (`creds`: the audit trail, and the allocated
    /// indices) and credential ids (`cids`) stay.
    async fn purge(&self, id: &str, at: u64) -> Result<bool, StoreError> {
        let id = id.to_owned();
        self.blocking(move |db| {
            let tx = db.begin_write().map_err(backend)?;
            {
                let mut lists = tx.open_table(LISTS).map_err(backend)?;
                let mut meta = meta_of(&lists, &id)?;
                if !meta.life.is_retired() {
                    return Err(StoreError::Backend(format!(
                        "list {id:?} is not retired; only a retired list's data is deleted"
                    )));
                }
                if meta.life.purged_at.is_some() {
                    return Ok(false);
                }
                let mut entries = tx.open_table(ENTRIES).map_err(backend)?;
                entries
                    .retain_in((id.as_str(), 0)..=(id.as_str(), u32::MAX), |_, _| false)
                    .map_err(backend)?;
                meta.life.purged_at = Some(at);
                let bytes =
                    serde_json::to_vec(&meta).map_err(|e| StoreError::Backend(e.to_string()))?;
                lists
                    .insert(id.as_str(), bytes.as_slice())
                    .map_err(backend)?;
            }
            tx.commit().map_err(backend)?;
            Ok(true)
        })
        .await
    }
}

impl Store for EmbeddedStore {
    async fn lists(&self) -> Result<Vec<ListMeta>, StoreError> {
        self.blocking(Self::lists_sync).await
    }

    async fn meta(&self, id: &str) -> Result<Option<ListMeta>, StoreError> {
        let id = id.to_owned();
        self.blocking(move |db| {
            let tx = db.begin_read().map_err(backend)?;
            let lists = tx.open_table(LISTS).map_err(backend)?;
            match meta_of(&lists, &id) {
                Ok(meta) => Ok(Some(meta)),
                Err(StoreError::UnknownList(_)) => Ok(None),
                Err(e) => Err(e),
            }
        })
        .await
    }

    async fn metas(&self, ids: &[String]) -> Result<Vec<Option<ListMeta>>, StoreError> {
        let ids = ids.to_vec();
        self.blocking(move |db| {
            let tx = db.begin_read().map_err(backend)?;
            some_metas(&tx.open_table(LISTS).map_err(backend)?, &ids)
        })
        .await
    }

    async fn load(&self, id: &str) -> Result<(ListMeta, StatusList), StoreError> {
        let id = id.to_owned();
        self.blocking(move |db| Self::load_sync(db, &id)).await
    }

    async fn create_list(&self, new: NewList) -> Result<ListMeta, StoreError> {
        check_id(&new.id)?;
        if let Some(p) = &new.purpose {
            check_id(p)?;
        }
        // Validates bits and size the same way every list is built.
        StatusList::new(new.bits, new.size)?;
        let meta = self
            .blocking(move |db| {
                let tx = db.begin_write().map_err(backend)?;
                let meta = {
                    let mut lists = tx.open_table(LISTS).map_err(backend)?;
                    if lists.get(new.id.as_str()).map_err(backend)?.is_some() {
                        return Err(StoreError::ListExists(new.id));
                    }
                    let meta = ListMeta {
                        id: new.id.clone(),
                        bits: new.bits.get(),
                        size: new.size,
                        version: 0,
                        updated_at: now_ms() / 1000,
                        updated_ms: now_ms(),
                        purpose: new.purpose.clone(),
                        allocated: 0,
                        life: super::Lifetime::new_list(),
                    };
                    let bytes = serde_json::to_vec(&meta)
                        .map_err(|e| StoreError::Backend(e.to_string()))?;
                    lists
                        .insert(new.id.as_str(), bytes.as_slice())
                        .map_err(backend)?;
                    meta
                };
                tx.commit().map_err(backend)?;
                Ok(meta)
            })
            .await?;
        self.notify(None);
        Ok(meta)
    }

    async fn apply(&self, id: &str, changes: &[Change]) -> Result<Applied, StoreError> {
        let hinted = id;
        let id = id.to_owned();
        let changes = changes.to_vec();
        let applied = self
            .blocking(move |db| {
                let tx = db.begin_write().map_err(backend)?;
                let applied = write_changes(&tx, &id, None, &changes, |_| Ok(()))?;
                tx.commit().map_err(backend)?;
                Ok(applied)
            })
            .await?;
        self.notify(Some(hinted));
        Ok(applied)
    }

    /// The embedded store keeps no change log: a changed list is reloaded from its rows, which
    /// costs O(non-VALID entries) and reads no more than the change log would for busy lists.
    async fn changes_since(
        &self,
        _id: &str,
        _version: u64,
    ) -> Result<Option<(u64, Vec<Change>)>, StoreError> {
        Ok(None)
    }

    async fn entries(&self, id: &str, idxs: &[u32]) -> Result<(u64, Vec<Status>), StoreError> {
        let id = id.to_owned();
        let idxs = idxs.to_vec();
        self.blocking(move |db| {
            let tx = db.begin_read().map_err(backend)?;
            let lists = tx.open_table(LISTS).map_err(backend)?;
            let meta = meta_of(&lists, &id)?;
            let entries = tx.open_table(ENTRIES).map_err(backend)?;
            let mut out = Vec::with_capacity(idxs.len());
            for idx in idxs {
                if idx >= meta.size {
                    return Err(crate::status::StatusError::IndexOutOfRange {
                        idx: idx.into(),
                        size: meta.size,
                    }
                    .into());
                }
                out.push(
                    entries
                        .get((id.as_str(), idx))
                        .map_err(backend)?
                        .map_or(Status::VALID, |v| Status(v.value())),
                );
            }
            Ok((meta.version, out))
        })
        .await
    }

    async fn changed(&self, timeout: Duration) -> Hint {
        self.hints.wait(timeout).await
    }
}
