//! The verifier's on-disk HTTP cache: one entry per (URL, Accept), a body file and a JSON
//! metadata file, written atomically (temporary file, then rename).
//!
//! Owns storage and freshness bookkeeping only. It never decides what is fresh on its own:
//! the verifier sets `fresh_until` from the verified token's `ttl` and `exp` (which take
//! priority over `Cache-Control`, draft §8.2), and re-verifies every body it reads back, so a
//! tampered cache file is refused like a tampered response.

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use std::path::{Path, PathBuf};

/// What is kept beside a cached body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    pub url: String,
    pub accept: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub etag: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub content_type: Option<String>,
    /// Unix seconds of the last 200 or 304 from the origin.
    pub fetched_at: u64,
    /// Unix seconds until which the entry may be used without asking the origin.
    pub fresh_until: u64,
}

/// One cached response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub meta: Meta,
    pub body: Vec<u8>,
}

/// The cache directory.
#[derive(Clone, Debug)]
pub struct Cache {
    dir: PathBuf,
}

impl Cache {
    /// A cache in `dir` (created on first write).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Cache { dir: dir.into() }
    }

    /// `$STATUSD_CACHE_DIR`, else `$XDG_CACHE_HOME/statusd`, else `~/.cache/statusd`.
    pub fn default_dir() -> PathBuf {
        let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
        if let Some(d) = env("STATUSD_CACHE_DIR") {
            return d.into();
        }
        if let Some(d) = env("XDG_CACHE_HOME") {
            return Path::new(&d).join("statusd");
        }
        match env("HOME") {
            Some(h) => Path::new(&h).join(".cache").join("statusd"),
            None => std::env::temp_dir().join("statusd-cache"),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn paths(&self, url: &str, accept: &str) -> (PathBuf, PathBuf) {
        let mut h = Sha256::new();
        h.update(url.as_bytes());
        h.update([0]);
        h.update(accept.as_bytes());
        let name: String = h.finalize()[..16]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        (
            self.dir.join(format!("{name}.json")),
            self.dir.join(format!("{name}.body")),
        )
    }

    /// The entry for (`url`, `accept`), if one is stored and readable. A damaged entry reads
    /// as absent: it is refetched, never trusted.
    pub fn get(&self, url: &str, accept: &str) -> Option<Entry> {
        let (meta_path, body_path) = self.paths(url, accept);
        let meta: Meta = serde_json::from_slice(&std::fs::read(meta_path).ok()?).ok()?;
        if meta.url != url || meta.accept != accept {
            return None;
        }
        let body = std::fs::read(body_path).ok()?;
        Some(Entry { meta, body })
    }

    /// Stores `entry`, replacing any previous one.
    pub fn put(&self, entry: &Entry) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let (meta_path, body_path) = self.paths(&entry.meta.url, &entry.meta.accept);
        write_atomic(&body_path, &entry.body)?;
        write_atomic(
            &meta_path,
            &serde_json::to_vec_pretty(&entry.meta).expect("serialising metadata cannot fail"),
        )
    }

    /// Where the body of (`url`, `accept`) is stored (for tests and operators).
    pub fn body_path(&self, url: &str, accept: &str) -> PathBuf {
        self.paths(url, accept).1
    }
}

fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

/// `max-age` of a `Cache-Control` value, unless `no-store` / `no-cache` forbid reuse.
pub fn max_age(cache_control: &str) -> Option<u64> {
    let mut age = None;
    for d in cache_control.split(',').map(str::trim) {
        let lower = d.to_ascii_lowercase();
        if lower == "no-store" || lower == "no-cache" {
            return Some(0);
        }
        if let Some(v) = lower.strip_prefix("max-age=") {
            age = v.trim_matches('"').parse().ok();
        }
    }
    age
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_keying_by_accept() {
        let dir = std::env::temp_dir().join(format!("statusd-cache-{}", rand::random::<u64>()));
        let c = Cache::new(&dir);
        let e = Entry {
            meta: Meta {
                url: "http://a/1".into(),
                accept: "x".into(),
                etag: Some("\"e\"".into()),
                content_type: None,
                fetched_at: 10,
                fresh_until: 20,
            },
            body: b"token".to_vec(),
        };
        assert_eq!(c.get("http://a/1", "x"), None);
        c.put(&e).unwrap();
        assert_eq!(c.get("http://a/1", "x"), Some(e.clone()));
        assert_eq!(c.get("http://a/1", "y"), None);
        std::fs::write(c.paths("http://a/1", "x").0, b"{broken").unwrap();
        assert_eq!(
            c.get("http://a/1", "x"),
            None,
            "a damaged entry reads as absent"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn cache_control_max_age() {
        assert_eq!(
            max_age("public, max-age=300, stale-while-revalidate=60"),
            Some(300)
        );
        assert_eq!(max_age("no-store"), Some(0));
        assert_eq!(max_age("public"), None);
    }
}
