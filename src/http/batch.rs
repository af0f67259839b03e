//! The batch lookup (`POST /statuses/{list_id}`), the one route of the public plane that reads
//! a body: its head is checked before the body is read ([`batch_target`]), the body is strict
//! JSON holding at most [`MAX_BATCH`] indices, and the answer is one JSON document written
//! without a tree.

use super::respond::{cors, response, JSON, NO_STORE};
use super::route::{list_id, lookup_list};
use super::{Inner, Resp};
use crate::problem::Problem;
use crate::wire::{head, strict_json};
use bytes::Bytes;
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap};
use hyper::Request;
use std::sync::Arc;

/// Most indices one batch lookup may ask for.
pub const MAX_BATCH: usize = 1000;
/// Largest batch lookup body: 1,000 ten-digit indices with separators fit comfortably.
pub const MAX_BATCH_BODY: usize = 16 * 1024;

impl Inner {
    /// Reads the body of a batch lookup whose head passed [`batch_target`], and answers it.
    pub(super) async fn batch(self: Arc<Self>, id: String, req: Request<Incoming>) -> Resp {
        let (parts, body) = req.into_parts();
        let read = head::read_body(
            body,
            &parts.headers,
            MAX_BATCH_BODY,
            self.settings.body_timeout,
        )
        .await;
        read.and_then(|bytes| self.batch_answer(&id, &bytes))
            .unwrap_or_else(|p| p.response())
    }

    /// The batch lookup once its body is read: parse, look up every index, one JSON body.
    pub(super) fn batch_answer(&self, id: &str, bytes: &[u8]) -> Result<Resp, Problem> {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Batch {
            idx: Vec<u64>,
        }
        // Strict JSON (a duplicate key is refused), the indices counted as they are read.
        let limits = strict_json::Limits {
            items: Some(strict_json::Items {
                key: "idx",
                max: MAX_BATCH,
                what: "a batch lookup",
                // Each index is parsed as a number at once; nothing to bound.
                max_values: usize::MAX,
                values_what: "an index",
            }),
        };
        let batch: Batch = strict_json::from_slice(bytes, limits)
            .map_err(|e| e.problem("expected {\"idx\":[non-negative integers]}"))?;
        if batch.idx.len() > MAX_BATCH {
            return Err(Problem::TooLarge {
                what: "a batch lookup",
                limit: MAX_BATCH,
            });
        }
        let snap = self.snapshots.load_full();
        let list = lookup_list(&snap, id, false)?;
        let mut out = Vec::with_capacity(32 + batch.idx.len() * 56);
        out.extend_from_slice(b"{\"list_id\":\"");
        out.extend_from_slice(id.as_bytes());
        out.extend_from_slice(b"\",\"statuses\":[");
        for (n, &idx) in batch.idx.iter().enumerate() {
            let status = list.list.get(idx).map_err(|_| Problem::IndexOutOfRange {
                size: list.list.size(),
            })?;
            if n > 0 {
                out.push(b',');
            }
            self.push_lookup(&mut out, id, idx, status);
        }
        out.extend_from_slice(b"]}");
        let mut r = response(Bytes::from(out), 4);
        let h = r.headers_mut();
        h.insert(header::CONTENT_TYPE, JSON);
        h.insert(header::CACHE_CONTROL, NO_STORE);
        cors(h);
        Ok(r)
    }
}

/// What a batch lookup's head must pass before its body is read (after [`head::check`]): the
/// list id of `POST /statuses/{list_id}`, and a JSON content type (if one is declared).
pub(super) fn batch_target<'p>(id: &'p str, headers: &HeaderMap) -> Result<&'p str, Problem> {
    let id = list_id(id)?;
    if head::declares_json(headers) == Some(false) {
        return Err(Problem::UnsupportedMediaType);
    }
    Ok(id)
}
