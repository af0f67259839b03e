//! The last good snapshot on disk: what a replica serves when it starts while its store is down.
//!
//! Only list state is kept (metadata and the roaring form of each list, and the ids of the
//! retired lists, which keep answering 410); tokens are re-signed from it at start, so no stale
//! signature is ever served. The file is written atomically
//! (temporary file, fsync, rename, fsync of the directory) and validated like any untrusted
//! input when read back.

use super::Snapshot;
use crate::status::{sparse, StatusList};
use crate::store::ListMeta;
use ciborium::Value as Cbor;
use std::collections::HashMap;
use std::io::Write as _;
use std::path::Path;

/// File name inside the data directory.
pub const FILE: &str = "last-good.snapshot";
const MAGIC: &str = "statusd-last-good/1";

/// What [`read`] found: the published lists, and the retired ones (absent from files written
/// before retirement existed: none).
#[derive(Debug, Default)]
pub struct Persisted {
    pub lists: Vec<(ListMeta, StatusList)>,
    pub retired: Vec<Box<str>>,
}

/// Why the file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not a statusd snapshot file: {reason}")]
    Format { path: String, reason: String },
}

/// Each list's entry as last written, by list id: its metadata (which names its version) and
/// its encoded state. A list whose metadata is unchanged since the last write is not encoded
/// again, so a write after a few changes costs the lists that changed, not all of them.
#[derive(Debug, Default)]
pub struct Written(HashMap<Box<str>, (String, Vec<u8>)>);

/// Writes every list of `snap` to `path` atomically, encoding only the lists `written` does
/// not hold at their current metadata.
pub fn write(path: &Path, snap: &Snapshot, written: &mut Written) -> Result<(), PersistError> {
    let io = |source| PersistError::Io {
        path: path.display().to_string(),
        source,
    };
    written.0.retain(|id, _| snap.lists.contains_key(id));
    let lists = snap
        .lists
        .values()
        .map(|ls| {
            let meta = serde_json::to_string(&ls.meta).expect("meta serialises");
            let entry = match written.0.get(ls.meta.id.as_str()) {
                Some((m, list)) if *m == meta => list.clone(),
                _ => {
                    let list = sparse::encode(&ls.list);
                    written
                        .0
                        .insert(ls.meta.id.as_str().into(), (meta.clone(), list.clone()));
                    list
                }
            };
            Cbor::Map(vec![
                (Cbor::Text("meta".into()), Cbor::Text(meta)),
                (Cbor::Text("list".into()), Cbor::Bytes(entry)),
            ])
        })
        .collect();
    let doc = Cbor::Map(vec![
        (Cbor::Text("format".into()), Cbor::Text(MAGIC.into())),
        (Cbor::Text("lists".into()), Cbor::Array(lists)),
        (
            Cbor::Text("retired".into()),
            Cbor::Array(
                snap.retired
                    .iter()
                    .map(|id| Cbor::Text(id.to_string()))
                    .collect(),
            ),
        ),
    ]);
    let bytes = crate::status::ietf::cbor_to_vec(&doc);
    let tmp = path.with_extension("tmp");
    if let Some(dir) = path.parent() {
        // On Redis nothing else creates the data directory.
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let written = std::fs::File::create(&tmp).and_then(|mut f| {
        f.write_all(&bytes)?;
        f.sync_all()
    });
    if let Err(e) = written.and_then(|()| std::fs::rename(&tmp, path)) {
        // A full disk fails here: the previous file is untouched, and the partial temporary
        // file is removed so that it does not hold the space a later write needs.
        let _ = std::fs::remove_file(&tmp);
        return Err(io(e));
    }
    if let Some(dir) = path.parent() {
        // Make the rename itself durable.
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

/// Reads a file written by [`write()`]; `Ok(None)` when there is none.
pub fn read(path: &Path) -> Result<Option<Persisted>, PersistError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(PersistError::Io {
                path: path.display().to_string(),
                source,
            })
        }
    };
    let bad = |reason: String| PersistError::Format {
        path: path.display().to_string(),
        reason,
    };
    let doc: Cbor = ciborium::from_reader(bytes.as_slice()).map_err(|e| bad(e.to_string()))?;
    let field = |m: &Cbor, k: &str| -> Option<Cbor> {
        m.as_map()?
            .iter()
            .find(|(key, _)| key.as_text() == Some(k))
            .map(|(_, v)| v.clone())
    };
    if field(&doc, "format")
        .and_then(|f| f.as_text().map(str::to_owned))
        .as_deref()
        != Some(MAGIC)
    {
        return Err(bad("missing or unknown format marker".into()));
    }
    let lists = field(&doc, "lists")
        .and_then(|l| l.as_array().cloned())
        .ok_or_else(|| bad("no lists array".into()))?;
    let mut out = Vec::with_capacity(lists.len());
    for entry in lists {
        let meta_text = field(&entry, "meta")
            .and_then(|m| m.as_text().map(str::to_owned))
            .ok_or_else(|| bad("list without meta".into()))?;
        let meta: ListMeta =
            serde_json::from_str(&meta_text).map_err(|e| bad(format!("meta: {e}")))?;
        let body = field(&entry, "list")
            .and_then(|l| l.as_bytes().cloned())
            .ok_or_else(|| bad("list without data".into()))?;
        let list = sparse::decode(&body).map_err(|e| bad(format!("list {}: {e}", meta.id)))?;
        if list.bits().get() != meta.bits || list.size() != meta.size {
            return Err(bad(format!(
                "list {}: data does not match its metadata",
                meta.id
            )));
        }
        out.push((meta, list));
    }
    let mut retired = Vec::new();
    for id in field(&doc, "retired")
        .map(|r| {
            r.as_array()
                .cloned()
                .ok_or_else(|| bad("retired is not an array".into()))
        })
        .transpose()?
        .unwrap_or_default()
    {
        let id = id
            .as_text()
            .filter(|id| crate::store::check_id(id).is_ok())
            .ok_or_else(|| bad("a retired list id is not a list id".into()))?;
        retired.push(id.into());
    }
    Ok(Some(Persisted {
        lists: out,
        retired,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_creates_the_data_directory() {
        let base = std::env::temp_dir().join(format!("statusd-persist-{}", std::process::id()));
        let path = base.join("not-yet").join(FILE);
        let _ = std::fs::remove_dir_all(&base);
        write(&path, &Snapshot::empty(), &mut Written::default())
            .expect("written into a new directory");
        assert_eq!(read(&path).unwrap().map(|p| p.lists.len()), Some(0));
        std::fs::remove_dir_all(&base).unwrap();
    }

    /// Retired lists keep answering 410 after a start while the store is down.
    #[test]
    fn retired_lists_are_kept() {
        let dir =
            std::env::temp_dir().join(format!("statusd-persist-retired-{}", std::process::id()));
        let path = dir.join(FILE);
        let snap = Snapshot {
            retired: std::sync::Arc::new(["default-1".into(), "default-2".into()].into()),
            ..Snapshot::empty()
        };
        write(&path, &snap, &mut Written::default()).unwrap();
        let mut retired: Vec<String> = read(&path)
            .unwrap()
            .unwrap()
            .retired
            .into_iter()
            .map(Into::into)
            .collect();
        retired.sort();
        assert_eq!(retired, ["default-1", "default-2"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A write after changes encodes the changed lists again and reuses the others: what is
    /// read back is every list at its latest state, never a stale encoding.
    #[test]
    fn a_rewrite_holds_every_list_at_its_latest_state() {
        use crate::status::{Bits, Status};
        let dir =
            std::env::temp_dir().join(format!("statusd-persist-rewrite-{}", std::process::id()));
        let path = dir.join(FILE);
        let list = |id: &str, version: u64, suspended: &[u64]| {
            let meta: ListMeta = serde_json::from_value(serde_json::json!({
                "id": id, "bits": 2, "size": 1024, "version": version, "updated_at": 0
            }))
            .unwrap();
            let mut l = StatusList::new(Bits::Two, 1024).unwrap();
            for &i in suspended {
                l.set(i, Status::SUSPENDED).unwrap();
            }
            let snap = super::super::build::unsigned(meta, l, "k");
            (Box::<str>::from(id), std::sync::Arc::new(snap))
        };
        let snap = |lists: Vec<(Box<str>, std::sync::Arc<super::super::ListSnapshot>)>| Snapshot {
            lists: lists.into_iter().collect(),
            ..Snapshot::empty()
        };
        let read_back = || {
            let mut got: Vec<(String, u64, Vec<u64>)> = read(&path)
                .unwrap()
                .unwrap()
                .lists
                .into_iter()
                .map(|(m, l)| {
                    let s: Vec<u64> = (0..1024)
                        .filter(|&i| l.get(i).unwrap() == Status::SUSPENDED)
                        .collect();
                    (m.id, m.version, s)
                })
                .collect();
            got.sort();
            got
        };
        let mut written = Written::default();
        write(
            &path,
            &snap(vec![list("a", 1, &[3]), list("b", 1, &[5])]),
            &mut written,
        )
        .unwrap();
        write(
            &path,
            &snap(vec![list("a", 2, &[3, 9]), list("b", 1, &[5])]),
            &mut written,
        )
        .unwrap();
        assert_eq!(
            read_back(),
            [("a".into(), 2, vec![3, 9]), ("b".into(), 1, vec![5])]
        );
        // A list gone from the snapshot leaves the file and the record of what was written.
        write(&path, &snap(vec![list("a", 2, &[3, 9])]), &mut written).unwrap();
        assert_eq!(read_back(), [("a".into(), 2, vec![3, 9])]);
        assert_eq!(written.0.len(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Issue #20, item 3: on a full disk the write fails with the typed error, the previous
    /// file stays readable, no partial temporary file is left, and the next write after space
    /// returns succeeds. Mounts its own tmpfs (tests run as root); fails if it cannot.
    #[test]
    fn full_disk_keeps_the_previous_file() {
        use std::process::Command;
        let dir = std::env::temp_dir().join(format!("statusd-persist-full-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
            .arg(&dir)
            .status()
            .expect("run mount");
        assert!(
            mounted.success(),
            "cannot mount a tmpfs (the test needs root)"
        );
        struct Unmount<'a>(&'a Path);
        impl Drop for Unmount<'_> {
            fn drop(&mut self) {
                let _ = Command::new("umount").arg(self.0).status();
                let _ = std::fs::remove_dir(self.0);
            }
        }
        let _unmount = Unmount(&dir);
        let path = dir.join(FILE);
        write(&path, &Snapshot::empty(), &mut Written::default()).expect("first write");
        let before = std::fs::read(&path).unwrap();
        let filler = dir.join("filler");
        {
            let mut f = std::fs::File::create(&filler).unwrap();
            while f.write(&[0u8; 4096]).is_ok_and(|n| n > 0) {}
        }
        match write(&path, &Snapshot::empty(), &mut Written::default()) {
            Err(PersistError::Io { source, .. }) => {
                assert!(crate::store::is_disk_full(&source), "{source}")
            }
            other => panic!("a write on a full disk answered {other:?}"),
        }
        assert_eq!(
            std::fs::read(&path).unwrap(),
            before,
            "previous file changed"
        );
        assert!(
            !path.with_extension("tmp").exists(),
            "partial file left behind"
        );
        assert_eq!(read(&path).unwrap().map(|p| p.lists.len()), Some(0));
        std::fs::remove_file(&filler).unwrap();
        write(&path, &Snapshot::empty(), &mut Written::default())
            .expect("write after space returns");
    }
}
