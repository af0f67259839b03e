//! Admin bearer tokens: loaded once from `STATUSD_ADMIN_TOKENS`, compared in constant time.
//!
//! The file has one token per line, `<name> <scopes> <token>`, scopes comma-separated from
//! `read`, `write` and `admin` (`admin` implies `write`, `write` implies `read`); blank lines and
//! lines starting with `#` are ignored. Only SHA-256 digests of the tokens are kept in memory,
//! every digest is compared on every request (no early exit), and neither tokens nor digests are
//! ever logged: the name is what the audit trail records.

use sha2::{Digest, Sha256};
use std::path::Path;
use subtle::ConstantTimeEq;

/// Shortest token accepted: 128 bits of base64 or hex.
pub const MIN_TOKEN_LEN: usize = 22;

/// What a token may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    Read,
    Write,
    Admin,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
            Scope::Admin => "admin",
        }
    }

    fn parse(s: &str) -> Option<Scope> {
        match s {
            "read" => Some(Scope::Read),
            "write" => Some(Scope::Write),
            "admin" => Some(Scope::Admin),
            _ => None,
        }
    }
}

/// The caller a valid token identifies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub name: String,
    /// The highest scope granted; lower ones are implied.
    pub scope: Scope,
}

impl Caller {
    pub fn may(&self, needed: Scope) -> bool {
        self.scope >= needed
    }
}

struct Entry {
    digest: [u8; 32],
    caller: Caller,
}

/// The configured tokens.
#[derive(Default)]
pub struct Tokens {
    entries: Vec<Entry>,
}

/// Why a tokens file cannot be used (line numbers are 1-based; tokens are never echoed).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokensError {
    #[error("{path}: {reason}")]
    Read { path: String, reason: String },
    #[error("line {line}: {reason}")]
    Line { line: usize, reason: String },
}

fn digest(token: &[u8]) -> [u8; 32] {
    Sha256::digest(token).into()
}

impl Tokens {
    pub fn load(path: &Path) -> Result<Tokens, TokensError> {
        let text = std::fs::read_to_string(path).map_err(|e| TokensError::Read {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        Tokens::parse(&text).map_err(|e| TokensError::Read {
            path: path.display().to_string(),
            reason: e.to_string(),
        })
    }

    pub fn parse(text: &str) -> Result<Tokens, TokensError> {
        let mut entries: Vec<Entry> = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line_no = n + 1;
            let bad = |reason: String| TokensError::Line {
                line: line_no,
                reason,
            };
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [name, scopes, token] = fields.as_slice() else {
                return Err(bad(format!(
                    "expected `<name> <scopes> <token>`, found {} fields",
                    fields.len()
                )));
            };
            if !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.@".contains(&b))
                || name.len() > 64
            {
                return Err(bad(format!(
                    "token name {name:?}: use up to 64 characters from A-Z a-z 0-9 - _ . @"
                )));
            }
            let mut scope = None;
            for s in scopes.split(',') {
                let parsed = Scope::parse(s)
                    .ok_or_else(|| bad(format!("unknown scope {s:?} (use read, write, admin)")))?;
                scope = scope.max(Some(parsed));
            }
            let scope = scope.ok_or_else(|| bad("no scope".into()))?;
            if token.len() < MIN_TOKEN_LEN {
                return Err(bad(format!(
                    "token of {name:?} is shorter than {MIN_TOKEN_LEN} characters"
                )));
            }
            let d = digest(token.as_bytes());
            if entries.iter().any(|e| e.digest == d) {
                return Err(bad(format!("token of {name:?} is used twice")));
            }
            if entries.iter().any(|e| e.caller.name == *name) {
                return Err(bad(format!("token name {name:?} is used twice")));
            }
            entries.push(Entry {
                digest: d,
                caller: Caller {
                    name: (*name).to_owned(),
                    scope,
                },
            });
        }
        Ok(Tokens { entries })
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The caller `Authorization: Bearer <token>` identifies, comparing against every token.
    pub fn authenticate(&self, presented: &[u8]) -> Option<Caller> {
        let d = digest(presented);
        let mut found: Option<&Entry> = None;
        for e in &self.entries {
            if bool::from(e.digest.ct_eq(&d)) {
                found = Some(e);
            }
        }
        found.map(|e| e.caller.clone())
    }
}

/// The token of an `Authorization` header value, if it is a well-formed bearer credential.
pub fn bearer(header: &[u8]) -> Option<&[u8]> {
    let (scheme, rest) = header.split_at_checked(7)?;
    if !scheme.eq_ignore_ascii_case(b"bearer ") {
        return None;
    }
    let token = rest.trim_ascii();
    (!token.is_empty() && token.iter().all(|b| b.is_ascii_graphic())).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "# issuer tokens\n\
        mois-issuance write s3cr3t-token-value-0123456789\n\
        \n\
        auditor read  another-token-value-0123456789\n\
        ops admin,read root-token-value-012345678901\n";

    #[test]
    fn parses_and_authenticates() {
        let t = Tokens::parse(FILE).unwrap();
        let c = t.authenticate(b"s3cr3t-token-value-0123456789").unwrap();
        assert_eq!(c.name, "mois-issuance");
        assert!(c.may(Scope::Read) && c.may(Scope::Write) && !c.may(Scope::Admin));
        let a = t.authenticate(b"another-token-value-0123456789").unwrap();
        assert!(a.may(Scope::Read) && !a.may(Scope::Write));
        assert!(t
            .authenticate(b"root-token-value-012345678901")
            .unwrap()
            .may(Scope::Admin));
        assert_eq!(t.authenticate(b"s3cr3t-token-value-012345678"), None);
        assert_eq!(t.authenticate(b""), None);
    }

    #[test]
    fn precise_errors_without_echoing_tokens() {
        let e = Tokens::parse("a read\n").err().unwrap();
        assert_eq!(
            e.to_string(),
            "line 1: expected `<name> <scopes> <token>`, found 2 fields"
        );
        let e = Tokens::parse("a sudo tok-0123456789012345678901\n")
            .err()
            .unwrap();
        assert!(e.to_string().contains("unknown scope \"sudo\""), "{e}");
        let e = Tokens::parse("a read short\n").err().unwrap();
        assert!(!e.to_string().contains("short\""), "{e}");
        let e =
            Tokens::parse("a read tok-0123456789012345678901\nb read tok-0123456789012345678901\n")
                .err()
                .unwrap();
        assert_eq!(e.to_string(), "line 2: token of \"b\" is used twice");
    }

    #[test]
    fn bearer_header() {
        assert_eq!(bearer(b"Bearer abc"), Some(&b"abc"[..]));
        assert_eq!(bearer(b"bearer   abc  "), Some(&b"abc"[..]));
        assert_eq!(bearer(b"Basic abc"), None);
        assert_eq!(bearer(b"Bearer "), None);
        assert_eq!(bearer(b"Bearer a b"), None);
        assert_eq!(bearer(b"Bear"), None);
    }
}
