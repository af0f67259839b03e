//! Strict JSON for every request body statusd reads, on both planes: the issuer API's bodies
//! (`src/admin/api.rs`) and the public batch lookup's (`POST /statuses/{list_id}`, `src/http/`).
//!
//! RFC 8259 leaves duplicate object keys to the parser, and parsers disagree: serde_json's
//! `Value` keeps the last one, derived structs refuse known fields but not nested ones, other
//! stacks keep the first. A body that one component (a gateway, an audit log, a WAF) reads as
//! `suspend` and statusd reads as `revoke` must not be accepted at all, so [`check`] walks the
//! whole document once, before anything is built from it, and refuses any object that names a
//! key twice, at any depth, comparing keys after unescaping (`"op"` and `"\u006fp"` are the same
//! key). The walk allocates no tree: it keeps the keys of the objects currently open (borrowed
//! from the body unless they contain escapes) and counters.
//!
//! The same pass bounds what the typed parse that follows may build ([`Limits`]): the array of
//! items under one top-level key is counted as it is read, so a batch with too many items is
//! refused at item `max + 1` without building anything, and the JSON values of each item are
//! counted too, so that no item, however it is shaped, makes the parse amplify the body (a
//! tree of small values costs tens of times their text). Nesting is bounded by serde_json's
//! recursion limit (128), in both passes.

use crate::problem::Problem;
use serde::de::{
    self, DeserializeOwned, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor,
};
use serde::Deserialize;
use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;

/// Keys longer than this are cut in problem details.
const SHOWN_KEY: usize = 64;

/// What the first pass enforces besides unique keys.
#[derive(Clone, Copy, Debug, Default)]
pub struct Limits {
    /// The array under a top-level key whose items are limited.
    pub items: Option<Items>,
}

/// Limits on the items of the array under top-level key `key`: at most `max` of them
/// (else [`Problem::TooLarge`] with `what`), each holding at most `max_values` JSON values
/// (scalars, arrays and objects, itself included; keys not counted), else
/// [`Problem::TooLarge`] with `values_what`.
#[derive(Clone, Copy, Debug)]
pub struct Items {
    pub key: &'static str,
    pub max: usize,
    pub what: &'static str,
    pub max_values: usize,
    pub values_what: &'static str,
}

/// Why a body was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JsonError {
    /// Not JSON, or not the JSON the route expects (serde_json's message).
    Syntax(String),
    /// An object names `key` twice; `at` says where (`operations[3]`, or `the top level`).
    DuplicateKey { key: String, at: String },
    /// The counted array has more than `limit` items.
    TooManyItems { what: &'static str, limit: usize },
    /// An item of the counted array has more than `limit` values.
    TooManyValues { what: &'static str, limit: usize },
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JsonError::Syntax(e) => f.write_str(e),
            JsonError::DuplicateKey { key, at } => {
                let shown: String = key.chars().take(SHOWN_KEY).collect();
                let cut = if shown.len() < key.len() { "…" } else { "" };
                // `{:?}` escapes control and format characters, so the detail shows exactly
                // which key it was without carrying them.
                write!(
                    f,
                    "the key {shown:?}{cut} appears more than once in one object ({at}); \
                     send every key once"
                )
            }
            JsonError::TooManyItems { what, limit } | JsonError::TooManyValues { what, limit } => {
                write!(f, "{what} is limited to {limit}")
            }
        }
    }
}

impl JsonError {
    /// The problem+json answer: `context` prefixes serde_json's message for [`JsonError::Syntax`]
    /// (400 `bad-body`); a duplicate key is 400 `duplicate-json-key`; too many items or values
    /// is 413 `too-large`.
    pub fn problem(self, context: &str) -> Problem {
        match self {
            JsonError::Syntax(e) => Problem::BadBody(format!("{context}: {e}")),
            e @ JsonError::DuplicateKey { .. } => Problem::DuplicateJsonKey(e.to_string()),
            JsonError::TooManyItems { what, limit } | JsonError::TooManyValues { what, limit } => {
                Problem::TooLarge { what, limit }
            }
        }
    }
}

/// Parses `body` as `T` after [`check`] has passed.
pub fn from_slice<T: DeserializeOwned>(body: &[u8], limits: Limits) -> Result<T, JsonError> {
    check(body, limits)?;
    serde_json::from_slice(body).map_err(|e| JsonError::Syntax(e.to_string()))
}

/// The first pass: refuses malformed JSON, duplicate keys at any depth and bodies over
/// `limits`, without building anything from the body.
pub fn check(body: &[u8], limits: Limits) -> Result<(), JsonError> {
    let mut state = State {
        limits,
        item_values: None,
        problem: None,
    };
    let mut de = serde_json::Deserializer::from_slice(body);
    let walked = Walk {
        st: &mut state,
        role: Role::Root,
    }
    .deserialize(&mut de)
    .and_then(|()| de.end());
    match (walked, state.problem) {
        (_, Some(p)) => Err(p.into_error(&limits)),
        (Err(e), None) => Err(JsonError::Syntax(e.to_string())),
        (Ok(()), None) => Ok(()),
    }
}

struct State {
    limits: Limits,
    /// The values of the counted array's current item, while one is read.
    item_values: Option<usize>,
    problem: Option<Found>,
}

/// A violation found deep in the document; `path` is filled in (innermost first) as the error
/// unwinds, so the walk keeps no path while nothing is wrong.
struct Found {
    kind: FoundKind,
    path: Vec<Segment>,
}

enum FoundKind {
    Duplicate(String),
    TooManyItems,
    TooManyValues,
}

enum Segment {
    Key(String),
    Index(usize),
}

impl Found {
    fn into_error(self, limits: &Limits) -> JsonError {
        match self.kind {
            FoundKind::Duplicate(key) => JsonError::DuplicateKey {
                key,
                at: path_text(&self.path),
            },
            FoundKind::TooManyItems => {
                let items = limits
                    .items
                    .expect("only a counted array has too many items");
                JsonError::TooManyItems {
                    what: items.what,
                    limit: items.max,
                }
            }
            FoundKind::TooManyValues => {
                let items = limits
                    .items
                    .expect("only a counted array's items are counted");
                JsonError::TooManyValues {
                    what: items.values_what,
                    limit: items.max_values,
                }
            }
        }
    }
}

/// `operations[3].reason`-style path of `path` (innermost first).
fn path_text(path: &[Segment]) -> String {
    let mut at = String::new();
    for seg in path.iter().rev() {
        match seg {
            Segment::Key(k) => {
                let shown: String = k.chars().take(SHOWN_KEY).collect();
                if !is_plain(&shown) {
                    at.push_str(&format!("[{shown:?}]"));
                } else {
                    if !at.is_empty() {
                        at.push('.');
                    }
                    at.push_str(&shown);
                }
            }
            Segment::Index(i) => at.push_str(&format!("[{i}]")),
        }
    }
    if at.is_empty() {
        at.push_str("the top level");
    }
    at
}

fn is_plain(k: &str) -> bool {
    !k.is_empty()
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Where a value sits, as far as [`Limits`] cares.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Root,
    /// The array whose items are counted.
    Counted,
    Other,
}

/// Walks one value.
struct Walk<'s> {
    st: &'s mut State,
    role: Role,
}

impl Walk<'_> {
    fn count<E: de::Error>(&mut self) -> Result<(), E> {
        if let Some(n) = &mut self.st.item_values {
            *n += 1;
            if *n > self.st.limits.items.map_or(usize::MAX, |i| i.max_values) {
                return Err(self.fail(FoundKind::TooManyValues));
            }
        }
        Ok(())
    }

    fn fail<E: de::Error>(&mut self, kind: FoundKind) -> E {
        self.st.problem = Some(Found {
            kind,
            path: Vec::new(),
        });
        E::custom("refused")
    }
}

impl<'de> DeserializeSeed<'de> for Walk<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

macro_rules! scalar {
    ($($name:ident: $ty:ty),*) => {$(
        fn $name<E: de::Error>(mut self, _: $ty) -> Result<(), E> {
            self.count()
        }
    )*};
}

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    scalar!(visit_bool: bool, visit_i64: i64, visit_u64: u64, visit_f64: f64, visit_str: &str);

    fn visit_unit<E: de::Error>(mut self) -> Result<(), E> {
        self.count()
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
        self.count()?;
        let counted = self.role == Role::Counted;
        let max = self.st.limits.items.map_or(usize::MAX, |i| i.max);
        let mut n = 0usize;
        loop {
            if counted && n == max {
                // One more item is one too many: refuse before reading it.
                let more = seq.next_element_seed(Peek)?;
                if more.is_some() {
                    return Err(self.fail(FoundKind::TooManyItems));
                }
                return Ok(());
            }
            if counted {
                self.st.item_values = Some(0);
            }
            let item = Walk {
                st: &mut *self.st,
                role: Role::Other,
            };
            let next = seq.next_element_seed(item);
            if counted {
                self.st.item_values = None;
            }
            match next {
                Ok(Some(())) => n += 1,
                Ok(None) => return Ok(()),
                Err(e) => {
                    if let Some(p) = &mut self.st.problem {
                        p.path.push(Segment::Index(n));
                    }
                    return Err(e);
                }
            }
        }
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<(), A::Error> {
        self.count()?;
        let mut keys = Keys::default();
        while let Some(key) = map.next_key_seed(KeySeed)? {
            if keys.contains(&key) {
                let e = self.fail(FoundKind::Duplicate(key.into_owned()));
                return Err(e);
            }
            let role = match (self.role, self.st.limits.items) {
                (Role::Root, Some(items)) if key == items.key => Role::Counted,
                _ => Role::Other,
            };
            let value = Walk {
                st: &mut *self.st,
                role,
            };
            if let Err(e) = map.next_value_seed(value) {
                if let Some(p) = &mut self.st.problem {
                    p.path.push(Segment::Key(key.into_owned()));
                }
                return Err(e);
            }
            keys.insert(key);
        }
        Ok(())
    }
}

/// Reads whether an array has another item, skipping it without building it.
struct Peek;

impl<'de> DeserializeSeed<'de> for Peek {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        de::IgnoredAny::deserialize(d).map(|_| ())
    }
}

/// A key, borrowed from the body unless it holds escapes.
struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(KeySeed)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v))
    }
}

/// The keys of one open object: a short list while it is small (request objects have a
/// handful of keys), a hash set beyond, so a huge object costs linear time, not quadratic.
#[derive(Default)]
struct Keys<'de> {
    few: Vec<Cow<'de, str>>,
    many: Option<HashSet<Cow<'de, str>>>,
}

const FEW: usize = 16;

impl<'de> Keys<'de> {
    fn contains(&self, key: &str) -> bool {
        match &self.many {
            Some(set) => set.contains(key),
            None => self.few.iter().any(|k| k == key),
        }
    }

    fn insert(&mut self, key: Cow<'de, str>) {
        match &mut self.many {
            Some(set) => {
                set.insert(key);
            }
            None => {
                self.few.push(key);
                if self.few.len() > FEW {
                    self.many = Some(self.few.drain(..).collect());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value as Json;

    fn dup(body: &str) -> (String, String) {
        match check(body.as_bytes(), Limits::default()) {
            Err(JsonError::DuplicateKey { key, at }) => (key, at),
            other => panic!("{body}: {other:?}"),
        }
    }

    #[test]
    fn duplicate_keys_are_refused_at_any_depth_after_unescaping() {
        assert_eq!(
            dup(r#"{"op":"suspend","credential_id":"c","op":"revoke"}"#),
            ("op".into(), "the top level".into())
        );
        assert_eq!(
            dup(r#"{"operations":[{"op":"a"},{"op":"a","\u006fp":"b"}]}"#),
            ("op".into(), "operations[1]".into())
        );
        assert_eq!(
            dup(r#"{"a":{"b":[1,{"c":{"x":1,"x":2}}]}}"#),
            ("x".into(), "a.b[1].c".into())
        );
        assert_eq!(
            dup(r#"{"a b":{"":1,"":2}}"#),
            ("".into(), r#"["a b"]"#.into())
        );
        // More keys than the short list holds: the hash set takes over.
        let many: Vec<String> = (0..100).map(|i| format!("\"k{i}\":{i}")).collect();
        let body = format!("{{{},\"k7\":0}}", many.join(","));
        assert_eq!(dup(&body), ("k7".into(), "the top level".into()));
        let e = JsonError::DuplicateKey {
            key: format!("{}\u{202e}", "k".repeat(100)),
            at: "the top level".into(),
        };
        let shown = e.to_string();
        assert!(
            shown.contains(&format!("\"{}\"…", "k".repeat(64))),
            "{shown}"
        );
        assert!(!shown.contains('\u{202e}'));
    }

    #[test]
    fn unique_keys_in_sibling_objects_pass_and_parse() {
        let body = br#"{"operations":[{"op":"a","x":[{"op":1},{"op":2}]},{"op":"b"}],"n":null}"#;
        assert_eq!(check(body, Limits::default()), Ok(()));
        let v: Json = from_slice(body, Limits::default()).unwrap();
        assert_eq!(v["operations"][1]["op"], "b");
        for ok in ["1", "\"s\"", "[]", "{}", "true", " [ {} , [] ] "] {
            assert_eq!(check(ok.as_bytes(), Limits::default()), Ok(()), "{ok}");
        }
    }

    #[test]
    fn malformed_json_and_deep_nesting_are_syntax_errors() {
        for bad in [
            &b"{"[..],
            b"{\"a\":1}x",
            b"[1,]",
            b"{\"a\":\"\xff\"}",
            b"",
            b"{\"\\ud800\":1}",
        ] {
            assert!(
                matches!(check(bad, Limits::default()), Err(JsonError::Syntax(_))),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(matches!(
            check(deep.as_bytes(), Limits::default()),
            Err(JsonError::Syntax(e)) if e.contains("recursion limit")
        ));
    }

    #[test]
    fn the_counted_array_is_refused_at_one_item_too_many() {
        let limits = Limits {
            items: Some(Items {
                key: "idx",
                max: 3,
                what: "a batch lookup",
                max_values: usize::MAX,
                values_what: "-",
            }),
        };
        assert_eq!(check(br#"{"idx":[1,2,3]}"#, limits), Ok(()));
        assert_eq!(
            check(br#"{"idx":[1,2,3,4]}"#, limits),
            Err(JsonError::TooManyItems {
                what: "a batch lookup",
                limit: 3
            })
        );
        // Only the top-level key is counted.
        assert_eq!(check(br#"{"x":{"idx":[1,2,3,4]}}"#, limits), Ok(()));
        // The count stops the walk: what follows the extra item is never read.
        assert!(matches!(
            check(br#"{"idx":[1,2,3,4,5 this is not JSON"#, limits),
            Err(JsonError::TooManyItems { .. })
        ));
        assert_eq!(
            JsonError::TooManyItems {
                what: "a batch lookup",
                limit: 3
            }
            .problem("x"),
            Problem::TooLarge {
                what: "a batch lookup",
                limit: 3
            }
        );
    }

    #[test]
    fn the_values_of_each_counted_item_are_capped() {
        let limits = Limits {
            items: Some(Items {
                key: "ops",
                max: 100,
                what: "-",
                max_values: 5,
                values_what: "the values of one op",
            }),
        };
        let too_many_values = JsonError::TooManyValues {
            what: "the values of one op",
            limit: 5,
        };
        let too_many = Err(too_many_values.clone());
        // The array, then four numbers.
        assert_eq!(
            check(br#"{"ops":[[1,2,3,4],{"a":1,"b":[]}]}"#, limits),
            Ok(())
        );
        assert_eq!(check(br#"{"ops":[1,[1,2,3,4,5]]}"#, limits), too_many);
        assert_eq!(
            check(br#"{"ops":[{"a":{"b":{"c":{"d":{"e":{}}}}}}]}"#, limits),
            too_many
        );
        // Values outside the items are not counted.
        assert_eq!(check(br#"{"x":[1,2,3,4,5,6],"ops":[]}"#, limits), Ok(()));
        assert_eq!(
            too_many_values.problem("x"),
            Problem::TooLarge {
                what: "the values of one op",
                limit: 5
            }
        );
    }

    #[test]
    fn problems_name_the_key_and_the_type() {
        let p = JsonError::DuplicateKey {
            key: "op".into(),
            at: "operations[3]".into(),
        }
        .problem("invalid JSON body");
        let Problem::DuplicateJsonKey(detail) = &p else {
            panic!("{p:?}")
        };
        assert_eq!(p.status(), 400);
        assert!(detail.contains("\"op\"") && detail.contains("operations[3]"));
        assert_eq!(
            JsonError::Syntax("eof".into()).problem("invalid JSON body"),
            Problem::BadBody("invalid JSON body: eof".into())
        );
    }

    /// A JSON document as generated: objects may repeat keys, and each key may be written with
    /// `\u` escapes.
    #[derive(Clone, Debug)]
    enum Doc {
        Null,
        Num(u8),
        Str(String),
        Arr(Vec<Doc>),
        Obj(Vec<(String, bool, Doc)>),
    }

    fn write(d: &Doc, out: &mut String) {
        match d {
            Doc::Null => out.push_str("null"),
            Doc::Num(n) => out.push_str(&n.to_string()),
            Doc::Str(s) => out.push_str(&serde_json::to_string(s).unwrap()),
            Doc::Arr(items) => {
                out.push('[');
                for (i, x) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write(x, out);
                }
                out.push(']');
            }
            Doc::Obj(members) => {
                out.push('{');
                for (i, (k, escaped, v)) in members.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    if *escaped {
                        out.push('"');
                        for c in k.encode_utf16() {
                            out.push_str(&format!("\\u{c:04x}"));
                        }
                        out.push('"');
                    } else {
                        out.push_str(&serde_json::to_string(k).unwrap());
                    }
                    out.push(':');
                    write(v, out);
                }
                out.push('}');
            }
        }
    }

    fn has_duplicate(d: &Doc) -> bool {
        match d {
            Doc::Arr(items) => items.iter().any(has_duplicate),
            Doc::Obj(members) => {
                let keys: HashSet<&str> = members.iter().map(|(k, _, _)| k.as_str()).collect();
                keys.len() < members.len() || members.iter().any(|(_, _, v)| has_duplicate(v))
            }
            _ => false,
        }
    }

    fn doc() -> impl proptest::strategy::Strategy<Value = Doc> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(Doc::Null),
            any::<u8>().prop_map(Doc::Num),
            "[a-z\\u{e9}\\u{202e}\"]{0,3}".prop_map(Doc::Str),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Doc::Arr),
                // Keys from a small alphabet, so that repeats are common.
                proptest::collection::vec(("[ab\\u{e9}]{0,2}", any::<bool>(), inner), 0..6)
                    .prop_map(Doc::Obj),
            ]
        })
    }

    proptest::proptest! {
        /// The strict parser refuses exactly the documents with a key repeated in one object
        /// (after unescaping), and reads the others as serde_json does.
        #[test]
        fn duplicates_are_found_exactly(d in doc()) {
            let mut text = String::new();
            write(&d, &mut text);
            let strict = from_slice::<Json>(text.as_bytes(), Limits::default());
            if has_duplicate(&d) {
                proptest::prop_assert!(
                    matches!(strict, Err(JsonError::DuplicateKey { .. })),
                    "{text}: {strict:?}"
                );
            } else {
                let plain: Json = serde_json::from_str(&text).unwrap();
                proptest::prop_assert_eq!(strict, Ok(plain), "{}", text);
            }
        }
    }
}
