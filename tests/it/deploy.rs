//! The deployment files (`deploy/`, `docs/operations.md`) against the code they describe:
//!
//! * the image's `HEALTHCHECK` command line, run as written, probes a real statusd;
//! * every metric, and every label value matched exactly, in the alert rules and the Grafana
//!   dashboard is in a running statusd's `/metrics` (one documented exception: the list-fill
//!   gauge that arrives with the issuer API);
//! * every `STATUSD_*` variable named in `deploy/` or the operations guide is one statusd reads;
//! * the guide's configuration table lists every variable of `src/config.rs`, with its flag and
//!   default, and nothing else.
//!
//! `scripts/validate-deploy` checks the same files' syntax and schemas offline; these tests
//! check that they fit the service.

use crate::support::{config, get, start_with, TempDir};
use statusd::app;
use statusd::status::Bits;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Output;

/// Labels Prometheus attaches to every scraped series; statusd itself never exports them.
const TARGET_LABELS: [&str; 2] = ["job", "instance"];

/// The variable read outside `src/config.rs`: the log filter, by the tracing set-up in
/// `src/cli.rs` (before any configuration is parsed).
const READ_BY_CLI: &str = "STATUSD_LOG";

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo(path)).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

// ---------------------------------------------------------------------------------------------
// HEALTHCHECK

/// The argv of the Dockerfile's exec-form `HEALTHCHECK … CMD [...]` (continuation lines joined).
fn healthcheck_argv() -> Vec<String> {
    let text = read("deploy/Dockerfile").replace("\\\n", " ");
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("HEALTHCHECK"))
        .expect("deploy/Dockerfile has a HEALTHCHECK");
    let json = line
        .split_once(" CMD ")
        .map(|(_, cmd)| cmd.trim())
        .expect("HEALTHCHECK … CMD [...]");
    serde_json::from_str(json).expect("HEALTHCHECK CMD is an exec-form JSON array")
}

/// Runs the image's health check command against `admin` instead of 127.0.0.1:9090.
fn run_healthcheck(admin: &str, path: &str) -> Output {
    let argv = healthcheck_argv();
    assert!(
        argv[0].ends_with("/statusd") && argv[1] == "health",
        "{argv:?}"
    );
    let args: Vec<String> = argv[1..]
        .iter()
        .map(|a| a.replace("127.0.0.1:9090", admin).replace("/readyz", path))
        .collect();
    assert!(
        args.iter().any(|a| a.contains(admin)),
        "the HEALTHCHECK names no http://127.0.0.1:9090 URL to redirect: {argv:?}"
    );
    crate::support::statusd()
        .args(&args)
        .output()
        .expect("run statusd health")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A loopback port nothing listens on.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_healthcheck_probes_the_admin_plane() {
    let dir = TempDir::new("healthcheck");
    let r = start_with(&dir.0, &[("1", Bits::Two, 1024, vec![(5, 1)])], &[]).await;
    let admin = r.admin_addr.to_string();
    let (ready, live, missing) = tokio::task::spawn_blocking({
        let admin = admin.clone();
        move || {
            (
                run_healthcheck(&admin, "/readyz"),
                run_healthcheck(&admin, "/livez"),
                run_healthcheck(&admin, "/nope"),
            )
        }
    })
    .await
    .unwrap();
    assert_eq!(ready.status.code(), Some(0), "{}", stderr(&ready));
    assert_eq!(String::from_utf8_lossy(&ready.stdout), "ready\n");
    assert_eq!(live.status.code(), Some(0), "{}", stderr(&live));
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        stderr(&missing).contains("HTTP 404"),
        "{}",
        stderr(&missing)
    );
    r.stop().await;

    // A replica whose store never answers: alive, never ready, and the probe says why.
    let dir = TempDir::new("healthcheck-unready");
    let redis = format!("redis://127.0.0.1:{}", closed_port());
    let r = app::start(&config(&dir.0, &["--redis-url", &redis]))
        .await
        .expect("statusd starts while its store is down");
    let admin = r.admin_addr.to_string();
    let (ready, live) = tokio::task::spawn_blocking({
        let admin = admin.clone();
        move || {
            (
                run_healthcheck(&admin, "/readyz"),
                run_healthcheck(&admin, "/livez"),
            )
        }
    })
    .await
    .unwrap();
    assert_eq!(ready.status.code(), Some(1));
    assert!(
        stderr(&ready).contains("HTTP 503") && stderr(&ready).contains("not-ready"),
        "{}",
        stderr(&ready)
    );
    assert_eq!(live.status.code(), Some(0), "{}", stderr(&live));
    r.stop().await;

    // Nothing listening: exit 1 with the connection error.
    let gone = format!("127.0.0.1:{}", closed_port());
    let out = tokio::task::spawn_blocking(move || run_healthcheck(&gone, "/readyz"))
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("Connection refused"),
        "{}",
        stderr(&out)
    );
}

// ---------------------------------------------------------------------------------------------
// Metrics named by the alert rules and the dashboard

/// One matcher of a selector: `label op "value"`.
#[derive(Debug)]
struct Matcher {
    label: String,
    op: String,
    value: String,
}

/// A metric named in a rule or a query, with the matchers of its selector.
#[derive(Debug)]
struct Reference {
    name: String,
    matchers: Vec<Matcher>,
}

/// Every `statusd_*` metric name in `text`, with its `{…}` matchers when a selector follows.
fn references(text: &str) -> Vec<Reference> {
    let is_name = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("statusd_") {
        let preceded = rest[..at].chars().next_back().is_some_and(is_name);
        let tail = &rest[at..];
        let len = tail.find(|c: char| !is_name(c)).unwrap_or(tail.len());
        rest = &tail[len..];
        // `xstatusd_…` is another name; a bare `statusd_` is the prefix in prose (`statusd_*`).
        if preceded || len == "statusd_".len() {
            continue;
        }
        let mut matchers = Vec::new();
        if let Some(sel) = rest.strip_prefix('{') {
            let end = sel.find('}').expect("selector closes");
            matchers = parse_matchers(&sel[..end]);
        }
        out.push(Reference {
            name: tail[..len].to_owned(),
            matchers,
        });
    }
    out
}

/// `a="x",b=~"y|z"` → matchers; items that are not `label op "value"` (prose such as `{list}`)
/// are skipped.
fn parse_matchers(sel: &str) -> Vec<Matcher> {
    let mut out = Vec::new();
    let mut rest = sel;
    while !rest.trim().is_empty() {
        let item_end = {
            // Split at the first comma outside quotes.
            let mut quoted = false;
            let mut end = rest.len();
            for (i, c) in rest.char_indices() {
                match c {
                    '"' => quoted = !quoted,
                    ',' if !quoted => {
                        end = i;
                        break;
                    }
                    _ => {}
                }
            }
            end
        };
        let item = rest[..item_end].trim();
        rest = rest.get(item_end + 1..).unwrap_or("");
        let Some(q) = item.find('"') else { continue };
        let (lhs, value) = (item[..q].trim(), item[q + 1..].trim_end_matches('"'));
        let op_at = lhs.find(['=', '!']).unwrap_or(lhs.len());
        out.push(Matcher {
            label: lhs[..op_at].trim().to_owned(),
            op: lhs[op_at..].trim().to_owned(),
            value: value.to_owned(),
        });
    }
    out
}

/// Every string value in a JSON document.
fn json_strings(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::String(s) => out.push(s.clone()),
        serde_json::Value::Array(a) => a.iter().for_each(|v| json_strings(v, out)),
        serde_json::Value::Object(m) => m.values().for_each(|v| json_strings(v, out)),
        _ => {}
    }
}

/// Sample name → the label sets of its series, from the Prometheus text exposition.
fn exposition(text: &str) -> BTreeMap<String, Vec<BTreeMap<String, String>>> {
    let mut out: BTreeMap<String, Vec<BTreeMap<String, String>>> = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let name_end = line.find(['{', ' ']).expect("sample line");
        let labels = match line[name_end..].strip_prefix('{') {
            Some(sel) => parse_matchers(&sel[..sel.rfind('}').expect("closing brace")])
                .into_iter()
                .map(|m| (m.label, m.value))
                .collect(),
            None => BTreeMap::new(),
        };
        out.entry(line[..name_end].to_owned())
            .or_default()
            .push(labels);
    }
    out
}

/// Why `r` does not fit the exposition, if it does not.
fn unexported(
    r: &Reference,
    exported: &BTreeMap<String, Vec<BTreeMap<String, String>>>,
) -> Vec<String> {
    let Some(series) = exported.get(&r.name) else {
        return vec![format!("{} is not exported", r.name)];
    };
    let has = |label: &str, value: &str| {
        series
            .iter()
            .any(|s| s.get(label).is_some_and(|v| v == value))
    };
    let mut problems = Vec::new();
    for m in r
        .matchers
        .iter()
        .filter(|m| !TARGET_LABELS.contains(&m.label.as_str()))
    {
        if !series.iter().any(|s| s.contains_key(&m.label)) {
            problems.push(format!("{} has no label {:?}", r.name, m.label));
            continue;
        }
        // Exact values, and regular expressions that are plain alternatives, must exist.
        let plain = |v: &str| {
            v.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '|')
        };
        let values: Vec<&str> = match m.op.as_str() {
            "=" => vec![m.value.as_str()],
            "=~" if plain(&m.value) => m.value.split('|').collect(),
            _ => vec![],
        };
        for v in values {
            if !has(&m.label, v) {
                problems.push(format!("{} has no series with {}={v:?}", r.name, m.label));
            }
        }
    }
    problems
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_and_dashboard_use_only_exported_metrics() {
    let dir = TempDir::new("deploy-metrics");
    let r = start_with(
        &dir.0,
        &[("1", Bits::Two, 131_072, vec![(1, 1), (2, 2)])],
        &[],
    )
    .await;
    let (status, _, body) = get(&format!("http://{}/metrics", r.admin_addr), &[]).await;
    assert_eq!(status, 200);
    let text = std::str::from_utf8(&body).unwrap();
    let exported = exposition(text);
    r.stop().await;
    // The expiry gauge the token-expiry alerts watch is the served tokens' exp: just signed,
    // so about now + the default 24 h lifetime.
    let expiry: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("statusd_token_expiry_timestamp_seconds "))
        .expect("statusd_token_expiry_timestamp_seconds is exported")
        .parse()
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        (now + 86_400.0 - 120.0..=now + 86_400.0).contains(&expiry),
        "earliest exp {expiry} at {now}"
    );

    let alerts = read("deploy/prometheus/alerts.yaml");
    let dashboard: serde_json::Value =
        serde_json::from_str(&read("deploy/grafana/statusd.json")).expect("the dashboard is JSON");
    let mut dashboard_strings = Vec::new();
    json_strings(&dashboard, &mut dashboard_strings);

    let mut problems = BTreeSet::new();
    let mut names = BTreeSet::new();
    for (file, text) in std::iter::once(("deploy/prometheus/alerts.yaml", alerts.as_str())).chain(
        dashboard_strings
            .iter()
            .map(|s| ("deploy/grafana/statusd.json", s.as_str())),
    ) {
        for r in references(text) {
            names.insert(r.name.clone());
            for p in unexported(&r, &exported) {
                problems.insert(format!("{file}: {p}"));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "metrics used by the alert rules or the dashboard that statusd does not export:\n{}",
        problems.into_iter().collect::<Vec<_>>().join("\n")
    );
    // The scan found what the files use: guards against a parser that finds nothing.
    for expected in [
        "statusd_http_requests_total",
        "statusd_http_request_duration_seconds_bucket",
        "statusd_last_sync_timestamp_seconds",
        "statusd_snapshot_age_seconds",
        "statusd_propagation_seconds_bucket",
        "statusd_refresh_errors_total",
        "statusd_token_expiry_timestamp_seconds",
        "statusd_list_allocated_ratio",
    ] {
        assert!(
            names.contains(expected),
            "{expected} not found among {names:?}"
        );
    }
}

#[test]
fn reference_scanner_reads_selectors() {
    let refs = references(
        r#"sum(rate(statusd_http_requests_total{job="statusd",route=~"a|b",outcome!="5xx"}[5m])) / xstatusd_no statusd_*"#,
    );
    assert_eq!(refs.len(), 1, "{refs:?}");
    let m: Vec<_> = refs[0]
        .matchers
        .iter()
        .map(|m| (m.label.as_str(), m.op.as_str(), m.value.as_str()))
        .collect();
    assert_eq!(
        m,
        [
            ("job", "=", "statusd"),
            ("route", "=~", "a|b"),
            ("outcome", "!=", "5xx")
        ]
    );
    let exported = exposition(
        "# HELP x\nstatusd_http_requests_total{outcome=\"2xx\",route=\"a\"} 1\nstatusd_up 1\n",
    );
    let problems = unexported(&refs[0], &exported);
    assert_eq!(
        problems,
        ["statusd_http_requests_total has no series with route=\"b\""]
    );
    assert_eq!(
        unexported(&references("statusd_upp")[0], &exported),
        ["statusd_upp is not exported"]
    );
}

// ---------------------------------------------------------------------------------------------
// Configuration: src/config.rs, docs/operations.md and the deployment files

/// A variable of `src/config.rs`: its flag and its default, as written there.
#[derive(Debug)]
struct Setting {
    flag: String,
    default: Option<String>,
}

/// `env = "STATUSD_…"` attributes of `src/config.rs` with the field that follows each.
fn config_settings() -> BTreeMap<String, Setting> {
    let text = read("src/config.rs");
    let lines: Vec<&str> = text.lines().collect();
    let mut out = BTreeMap::new();
    for (i, line) in lines.iter().enumerate() {
        let Some((_, after)) = line.split_once("env = \"") else {
            continue;
        };
        let var = after[..after.find('"').unwrap()].to_owned();
        let default = if let Some((_, d)) = line.split_once("default_value = \"") {
            Some(d[..d.find('"').unwrap()].to_owned())
        } else {
            line.split_once("default_value_t = ")
                .map(|(_, d)| d.trim_end_matches([')', ']', ' ']).replace('_', ""))
        };
        let field = lines[i + 1..]
            .iter()
            .take(3)
            .find_map(|l| {
                l.trim()
                    .strip_prefix("pub ")?
                    .split_once(':')
                    .map(|(f, _)| f.to_owned())
            })
            .unwrap_or_else(|| panic!("src/config.rs:{}: no field after {var}", i + 1));
        out.insert(
            var,
            Setting {
                flag: format!("--{}", field.replace('_', "-")),
                default,
            },
        );
    }
    out
}

/// Every `STATUSD_[A-Z0-9_]+` token in `text`.
fn variables(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("STATUSD_") {
        let tail = &rest[at..];
        let len = tail
            .find(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(tail.len());
        out.insert(tail[..len].trim_end_matches('_').to_owned());
        rest = &tail[len..];
    }
    out
}

#[test]
fn operations_guide_configuration_table_matches_config_rs() {
    let settings = config_settings();
    assert!(
        settings.len() >= 19,
        "parsed too few settings: {settings:?}"
    );
    assert!(
        read("src/cli.rs").contains(&format!("\"{READ_BY_CLI}\"")),
        "{READ_BY_CLI} is no longer read by src/cli.rs"
    );
    let section = crate::support::configuration_reference();
    // Variable → (flag cell, default cell) of each table row.
    let mut rows: BTreeMap<String, (String, String)> = BTreeMap::new();
    for line in section.lines().filter(|l| l.starts_with('|')) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let Some(var) = cells.get(2).and_then(|c| variables(c).into_iter().next()) else {
            continue;
        };
        assert_eq!(
            cells.len(),
            6,
            "a row has flag, variable, default, meaning: {line}"
        );
        rows.insert(var, (cells[1].to_owned(), cells[3].to_owned()));
    }
    let mut problems = Vec::new();
    for (var, s) in &settings {
        match rows.get(var) {
            None => problems.push(format!("{var} ({}) is missing from the table", s.flag)),
            Some((flag, default)) => {
                if flag.trim_matches('`') != s.flag {
                    problems.push(format!(
                        "{var}: the table says flag {flag}, src/config.rs {}",
                        s.flag
                    ));
                }
                if let Some(d) = &s.default {
                    if !default.contains(d.as_str()) {
                        problems.push(format!("{var}: the table's default {default} is not {d:?}"));
                    }
                }
            }
        }
    }
    for var in rows.keys() {
        if !settings.contains_key(var) && var != READ_BY_CLI {
            problems.push(format!(
                "{var} is in the table but statusd does not read it"
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "docs/operations.md vs src/config.rs:\n{}",
        problems.join("\n")
    );
}

/// Files under `dir`, recursively, skipping key material.
fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            if !path.ends_with("secrets") {
                files(&path, out);
            }
        } else {
            out.push(path);
        }
    }
}

#[test]
fn deployment_files_name_only_variables_statusd_reads() {
    let mut known: BTreeSet<String> = config_settings().into_keys().collect();
    known.insert(READ_BY_CLI.to_owned());
    // The client commands' own variables (`statusd credentials …` reads STATUSD_ADMIN_URL and
    // STATUSD_ADMIN_TOKEN): declared as clap `env`s in src/cli.rs.
    let cli = read("src/cli.rs");
    let mut readable = known.clone();
    readable.extend(
        cli.split("env = \"")
            .skip(1)
            .filter_map(|rest| rest.split('"').next())
            .map(str::to_owned),
    );
    let mut paths = vec![repo("docs/operations.md")];
    files(&repo("deploy"), &mut paths);
    let mut problems = Vec::new();
    for path in paths {
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        for var in variables(&text) {
            if !readable.contains(&var) {
                problems.push(format!("{}: {var}", path.display()));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "variables statusd does not read:\n{}",
        problems.join("\n")
    );
    // The Kubernetes ConfigMap spells out every setting but the demo switch and the issuer
    // (which follows the public URL), so a new setting is a decision for production too.
    let configmap = variables(&read("deploy/k8s/base/configmap.yaml"));
    let unset: Vec<&str> = known.difference(&configmap).map(String::as_str).collect();
    assert_eq!(
        unset,
        ["STATUSD_DEMO", "STATUSD_ISSUER"],
        "settings deploy/k8s/base/configmap.yaml does not set"
    );
}

#[test]
fn dockerfile_healthcheck_uses_the_admin_default_port() {
    // The image leaves the admin plane on its default port; the health check probes that port.
    let argv = healthcheck_argv();
    let settings = config_settings();
    let admin_default = settings["STATUSD_ADMIN_LISTEN"].default.as_deref().unwrap();
    let port = admin_default.rsplit(':').next().unwrap();
    assert!(
        argv.iter()
            .any(|a| a == &format!("http://127.0.0.1:{port}/readyz")),
        "{argv:?} does not probe the default admin port {port}"
    );
}
