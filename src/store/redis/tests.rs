//! URL handling, strict parsing of replies and the mapping of script errors.

use super::connection::{parse_target, Target};
use super::parse::{parse_changes, parse_meta, script_error};
use super::*;
use crate::status::Bits;
use redis::ErrorKind;

#[test]
fn urls() {
    assert_eq!(
        parse_target("redis://127.0.0.1:6379/2").unwrap(),
        Target::Standalone("redis://127.0.0.1:6379/2".into())
    );
    assert_eq!(
        parse_target("redis+cluster://a:1,b:2").unwrap(),
        Target::Cluster(vec!["redis://a:1".into(), "redis://b:2".into()])
    );
    assert_eq!(
        parse_target("redis+cluster://u:p@a:1, b:2").unwrap(),
        Target::Cluster(vec!["redis://u:p@a:1".into(), "redis://u:p@b:2".into()])
    );
    assert_eq!(
        parse_target("redis://a:1,redis://b:2").unwrap(),
        Target::Cluster(vec!["redis://a:1".into(), "redis://b:2".into()])
    );
    assert_eq!(
        parse_target("rediss://a:1").unwrap(),
        Target::Standalone("rediss://a:1".into())
    );
    assert_eq!(
        parse_target("rediss+cluster://u:p@a:1,b:2").unwrap(),
        Target::Cluster(vec!["rediss://u:p@a:1".into(), "rediss://u:p@b:2".into()])
    );
    assert_eq!(
        parse_target("rediss://a:1,rediss://b:2").unwrap(),
        Target::Cluster(vec!["rediss://a:1".into(), "rediss://b:2".into()])
    );
    for mixed in ["redis://a:1,rediss://b:2", "rediss://a:1,redis://b:2"] {
        let e = parse_target(mixed).unwrap_err().to_string();
        assert!(e.contains("not a mix"), "{e}");
    }
    assert!(parse_target("redis+cluster://").is_err());
    assert!(parse_target("redis://a:1,http://b:2").is_err());
}

#[test]
fn meta_is_parsed_strictly() {
    let hash = |pairs: &[(&str, &str)]| {
        Value::Array(
            pairs
                .iter()
                .flat_map(|(k, v)| {
                    [
                        Value::BulkString(k.as_bytes().to_vec()),
                        Value::BulkString(v.as_bytes().to_vec()),
                    ]
                })
                .collect(),
        )
    };
    let ok = [
        ("bits", "2"),
        ("size", "64"),
        ("version", "3"),
        ("updated_at", "9"),
    ];
    let meta = parse_meta("a", &hash(&ok)).unwrap().unwrap();
    assert_eq!((meta.bits, meta.size, meta.version), (2, 64, 3));
    assert!(parse_meta("a", &Value::Array(vec![])).unwrap().is_none());
    for (field, bad) in [
        ("bits", "3"),
        ("size", "0"),
        ("size", "3"),
        ("size", "99999999999"),
        ("version", "-1"),
        ("version", "1.5"),
        ("updated_at", ""),
    ] {
        let pairs: Vec<_> = ok
            .iter()
            .map(|&(k, v)| if k == field { (k, bad) } else { (k, v) })
            .collect();
        assert!(
            matches!(
                parse_meta("a", &hash(&pairs)),
                Err(StoreError::Corrupt { .. })
            ),
            "{field}={bad}"
        );
    }
    assert!(matches!(
        parse_meta("a", &hash(&ok[..3])),
        Err(StoreError::Corrupt { .. })
    ));
}

#[test]
fn feed_changes_are_checked() {
    let mut out = Vec::new();
    assert!(parse_changes(b"1=2,7=1", Bits::Two, 8, &mut out).is_some());
    assert_eq!(out.len(), 2);
    assert!(parse_changes(b"", Bits::Two, 8, &mut out).is_some());
    for bad in [&b"8=1"[..], b"1=4", b"1", b"x=1", b"1=1,", b"-1=1", b"1=+1"] {
        assert!(
            parse_changes(bad, Bits::Two, 8, &mut out).is_none(),
            "{bad:?}"
        );
    }
}

#[test]
fn script_errors_map_to_store_errors() {
    let c = |idx, v| Change {
        idx,
        status: Status(v),
    };
    let changes = [c(3, 2), c(70, 1)];
    let err = |msg: &str| RedisError::from((ErrorKind::Extension, "script", msg.to_string()));
    assert!(matches!(
        script_error("a", &changes, &err("ERR STATUSD out-of-range 1 64")),
        Some(StoreError::Status(StatusError::IndexOutOfRange {
            idx: 70,
            size: 64
        }))
    ));
    assert!(matches!(
        script_error("a", &changes, &err("ERR STATUSD too-wide 0 1")),
        Some(StoreError::Status(StatusError::ValueTooWide {
            value: 2,
            bits: 1
        }))
    ));
    assert!(matches!(
        script_error("a", &changes, &err("ERR STATUSD terminal 0")),
        Some(StoreError::Terminal {
            idx: 3,
            to: Status(2)
        })
    ));
    assert!(matches!(
        script_error("a", &changes, &err("ERR STATUSD unknown-list")),
        Some(StoreError::UnknownList(_))
    ));
    assert!(script_error("a", &changes, &err("ERR STATUSD terminal 5")).is_none());
    assert!(script_error("a", &changes, &err("WRONGTYPE nope")).is_none());
}
