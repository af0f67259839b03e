//! The Redis names statusd uses (docs/redis.md): the list set, the change channel, and every
//! key of a list, each carrying the hash tag `{<id>}` so a list lives in one cluster slot.

/// The set of every list id.
pub const LISTS_KEY: &str = "statusd:lists";

/// The pub/sub channel that carries a list id after every applied batch.
pub const CHANNEL: &str = "statusd:changes";

/// `statusd:{<id>}:meta`
pub fn meta_key(id: &str) -> String {
    format!("statusd:{{{id}}}:meta")
}

/// `statusd:{<id>}:data`
pub fn data_key(id: &str) -> String {
    format!("statusd:{{{id}}}:data")
}

/// `statusd:{<id>}:feed`
pub fn feed_key(id: &str) -> String {
    format!("statusd:{{{id}}}:feed")
}

/// `statusd:{<id>}:creds`: the issuer registry's records of the list (hash: index → record).
pub fn creds_key(id: &str) -> String {
    format!("statusd:{{{id}}}:creds")
}

/// `statusd:{<id>}:alloc`: every index the issuer API ever allocated (bitmap, `SETBIT` order).
pub fn alloc_key(id: &str) -> String {
    format!("statusd:{{{id}}}:alloc")
}

/// `statusd:{<id>}:reissued`: per index, the new credential id a reissue of the credential
/// there took it for (hash: index → id; Redis Cluster only, see `Registry::mark_reissues`).
pub fn reissued_key(id: &str) -> String {
    format!("statusd:{{{id}}}:reissued")
}

/// `statusd:cid:<credential id>`: where a credential lives (`<list>/<index>`).
pub fn cid_key(cid: &str) -> String {
    format!("statusd:cid:{cid}")
}
