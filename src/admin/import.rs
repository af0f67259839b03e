//! Bulk registration (`statusd credentials import FILE`): a JSON Lines file of `register`
//! operations sent through the issuer API's batch route (`POST /v1/credentials/batch`), a few
//! batches in flight at once, with a progress bar, retries of transient failures, a file of the
//! refused lines and an exit status that says which of these happened.
//!
//! It owns reading and checking the file, batching, retrying and the summary. It never touches
//! a store: every registration passes the server's rules, audit trail and index allocation like
//! any other client's.
//!
//! **Resuming.** Registration is idempotent by credential id: registering an id that is already
//! bound, with the same kind, parent and pool, answers `exists` (whatever the request id or
//! reason), at the index it already has. So an interrupted import is resumed by running the
//! same command again: every line is sent again, the registered ones come back `exists` and
//! nothing is registered twice. The same holds for a batch whose answer was lost to a dropped
//! connection: it is simply sent again.
//!
//! **A batch is all or nothing on the server** until its items are valid: an invalid item makes
//! the server refuse the whole batch (422 `batch-invalid`, listing the bad items) and apply none
//! of it. The importer records those items as refused and sends the rest again.

use crate::admin::client::{Client, SendError};
use crate::issuer::{Operation, Registration, MAX_BATCH};
use crate::progress;
use crate::wire::strict_json::{self, Limits};
use indicatif::ProgressBar;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use std::collections::HashSet;
use std::io::{BufRead as _, BufReader, BufWriter, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Some lines were refused (listed in the refused file); every other line is registered.
pub const EXIT_REFUSED: u8 = 3;
/// The file cannot be read, is empty, or is not JSON Lines at all (sysexits EX_DATAERR).
pub const EXIT_BAD_INPUT: u8 = 65;
/// The admin API stayed unreachable or unavailable past `--retry-for` (sysexits EX_TEMPFAIL):
/// the import stopped; run the same command again to resume.
pub const EXIT_UNAVAILABLE: u8 = 75;
/// The admin API refused the token (401 or 403; sysexits EX_NOPERM).
pub const EXIT_UNAUTHORIZED: u8 = 77;
/// Stopped by Ctrl-C (after the batches in flight were answered); rerun to resume.
pub const EXIT_INTERRUPTED: u8 = 130;
/// Any other failure: an answer the importer does not understand, the refused file cannot be
/// written, a batch larger than the server accepts.
pub const EXIT_FAILURE: u8 = crate::cli::EXIT_FAILURE;

/// Registrations per request by default: big enough that a request's overhead is small, small
/// enough that an answer (about 1.5 kB per item with its status claims) stays near 1.5 MB.
pub const DEFAULT_BATCH: usize = 1_000;
/// Batches in flight by default: enough to keep the server busy while one answer is read.
pub const DEFAULT_CONCURRENCY: usize = 4;
/// How many non-blank lines at the start of the file decide whether it is JSON Lines at all.
const SNIFF_LINES: usize = 100;
/// Refused lines shown on standard error (all of them are in the refused file).
const SHOWN_REFUSALS: u64 = 10;

/// What to import and how.
#[derive(Clone, Debug)]
pub struct Options {
    pub file: PathBuf,
    /// Where refused lines are written (JSON Lines), created or truncated at the start.
    pub refused: PathBuf,
    /// Registrations per request, 1 to [`MAX_BATCH`].
    pub batch_size: usize,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// How long one batch keeps being retried through transient failures before the import
    /// stops with [`EXIT_UNAVAILABLE`].
    pub retry_for: Duration,
    /// The first line to send (1: the whole file); the lines before it are skipped unread, and
    /// the refused file is appended to rather than created anew.
    pub from_line: u64,
}

impl Options {
    /// The refused file's default: `FILE.refused.jsonl` beside the input.
    pub fn default_refused(file: &Path) -> PathBuf {
        let mut name = file.as_os_str().to_owned();
        name.push(".refused.jsonl");
        PathBuf::from(name)
    }
}

/// Why the import could not start.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The input file is unusable ([`EXIT_BAD_INPUT`]).
    #[error("{0}")]
    BadInput(String),
    /// The refused file cannot be written.
    #[error("{path}: {source}")]
    Output {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What an import did, printed as one JSON object on standard output.
#[derive(Debug, Default, Serialize)]
pub struct Summary {
    pub file: PathBuf,
    /// Operations read (non-blank lines), refused ones included.
    pub lines: u64,
    /// Newly registered.
    pub registered: u64,
    /// Registered before (a rerun, or a repeated line): the server answered `exists`.
    pub existing: u64,
    pub refused: u64,
    pub refused_file: PathBuf,
    /// Lines before `--from-line`, skipped unread.
    pub skipped: u64,
    /// Every line of the file was answered (registered, existing or refused).
    pub complete: bool,
    /// When the import stopped early: every line before this one is answered, so a rerun with
    /// `--from-line` this skips them (a rerun without it sends them again, answered `exists`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resume_from: Option<u64>,
    pub seconds: f64,
    /// Lines answered per second.
    pub per_second: f64,
    /// Why the import stopped early.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The exit status (see the `EXIT_*` constants).
    pub exit_code: u8,
}

/// One line of the refused file.
#[derive(Debug, Serialize, Deserialize)]
pub struct Refusal {
    /// 1-based line number in the input file.
    pub line: u64,
    /// The operation as read (the line's text when it is not JSON).
    pub item: Json,
    pub problem: LineProblem,
}

/// Why a line was refused: the server's problem type, status and detail, or the importer's own
/// (`bad-item`, status absent) for a line it could not read.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LineProblem {
    #[serde(rename = "type")]
    pub type_uri: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    pub detail: String,
}

impl LineProblem {
    fn local(detail: String) -> Self {
        LineProblem {
            type_uri: "urn:statusd:problem:bad-item".into(),
            status: None,
            detail,
        }
    }
}

/// A registration and the line it came from.
#[derive(Clone, Debug)]
struct Item {
    line: u64,
    reg: Registration,
}

/// Reads one line: `Ok(None)` for a blank line, `Err` for a line refused before sending.
fn parse_line(text: &[u8]) -> Result<Option<Registration>, (Json, String)> {
    let text = text.strip_suffix(b"\n").unwrap_or(text);
    let text = text.strip_suffix(b"\r").unwrap_or(text);
    if text.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    strict_json::check(text, Limits::default()).map_err(|e| {
        let why = e.to_string().replace(" at line 1 column ", " at column ");
        let shown = Json::String(String::from_utf8_lossy(text).into_owned());
        (shown, format!("not JSON: {why}"))
    })?;
    let as_read = || serde_json::from_slice::<Json>(text).expect("checked as JSON above");
    // The common line, a registration without `op`, is parsed straight into its type; any
    // other goes through a tree, for `op` and for a precise reason.
    let op = match serde_json::from_slice::<Registration>(text) {
        Ok(reg) => Operation::Register(reg),
        Err(_) => {
            let item = as_read();
            let Json::Object(object) = &item else {
                return Err((item, "not a JSON object".into()));
            };
            let mut op = object.clone();
            op.entry("op")
                .or_insert_with(|| Json::String("register".into()));
            match serde_json::from_value::<Operation>(Json::Object(op)) {
                Ok(op) => op,
                Err(e) => return Err((item, format!("not a register operation: {e}"))),
            }
        }
    };
    if !matches!(op, Operation::Register(_)) {
        let why = format!(
            "only register operations are imported; {:?} goes to its own route or to \
             POST /v1/credentials/batch",
            op.name()
        );
        return Err((as_read(), why));
    }
    if let Err(p) = op.check() {
        return Err((as_read(), p.detail));
    }
    let Operation::Register(reg) = op else {
        unreachable!("checked to be a registration above")
    };
    Ok(Some(reg))
}

/// Counts the file's lines and checks, on its first non-blank lines, that it is JSON Lines at
/// all: one malformed line is refused later, but a file none of whose first lines is a JSON
/// object (a JSON array, a CSV, a binary) is refused whole.
fn scan(path: &Path) -> Result<u64, ImportError> {
    let unreadable =
        |e: std::io::Error| ImportError::BadInput(format!("cannot read {}: {e}", path.display()));
    let mut r = BufReader::with_capacity(1 << 16, std::fs::File::open(path).map_err(unreadable)?);
    let mut lines = 0u64;
    let mut seen = 0usize;
    let mut objects = 0usize;
    let mut first_problem = None;
    let mut starts_with_bracket = false;
    let mut buf = Vec::new();
    while seen < SNIFF_LINES {
        buf.clear();
        if r.read_until(b'\n', &mut buf).map_err(unreadable)? == 0 {
            break;
        }
        lines += 1;
        match parse_line(&buf) {
            Ok(None) => continue,
            Ok(Some(_)) => objects += 1,
            Err((Json::Object(_), _)) => objects += 1,
            Err((_, why)) => {
                if seen == 0 {
                    starts_with_bracket = buf.trim_ascii_start().starts_with(b"[");
                }
                first_problem.get_or_insert((lines, why));
            }
        }
        seen += 1;
    }
    if seen == 0 {
        return Err(ImportError::BadInput(format!(
            "{}: no line to import (the file is empty or blank)",
            path.display()
        )));
    }
    if objects == 0 {
        let (line, why) = first_problem.expect("a non-blank line that is not an object");
        let hint = if starts_with_bracket {
            "; it looks like a JSON array: write one object per line (e.g. `jq -c '.[]'`)"
        } else {
            ""
        };
        return Err(ImportError::BadInput(format!(
            "{} is not JSON Lines: none of its first {seen} non-blank lines is a JSON object \
             (line {line}: {why}){hint}",
            path.display()
        )));
    }
    // The rest is only counted, for the progress bar; a last line without a newline counts.
    let mut chunk = vec![0u8; 1 << 16];
    let mut last = None;
    loop {
        let n = r.read(&mut chunk).map_err(unreadable)?;
        if n == 0 {
            break;
        }
        lines += chunk[..n].iter().filter(|&&b| b == b'\n').count() as u64;
        last = Some(chunk[n - 1]);
    }
    if last.is_some_and(|b| b != b'\n') {
        lines += 1;
    }
    Ok(lines)
}

/// The input file, read one line at a time.
struct Lines {
    reader: BufReader<std::fs::File>,
    /// Lines before this one are skipped unread.
    from: u64,
    /// The number of the last line read.
    line: u64,
    buf: Vec<u8>,
}

enum Read {
    Skipped,
    Item(Item),
    Refused(Refusal),
    Blank,
    End,
}

impl Lines {
    fn open(path: &Path, from: u64) -> Result<Lines, ImportError> {
        let file = std::fs::File::open(path)
            .map_err(|e| ImportError::BadInput(format!("cannot read {}: {e}", path.display())))?;
        Ok(Lines {
            reader: BufReader::with_capacity(1 << 16, file),
            from,
            line: 0,
            buf: Vec::new(),
        })
    }

    fn next(&mut self) -> std::io::Result<Read> {
        self.buf.clear();
        if self.reader.read_until(b'\n', &mut self.buf)? == 0 {
            return Ok(Read::End);
        }
        self.line += 1;
        if self.line < self.from {
            return Ok(Read::Skipped);
        }
        Ok(match parse_line(&self.buf) {
            Ok(None) => Read::Blank,
            Ok(Some(reg)) => Read::Item(Item {
                line: self.line,
                reg,
            }),
            Err((item, why)) => Read::Refused(Refusal {
                line: self.line,
                item,
                problem: LineProblem::local(why),
            }),
        })
    }
}

/// What the batch tasks share.
struct Shared {
    client: Client,
    pb: ProgressBar,
    retry_for: Duration,
    registered: AtomicU64,
    existing: AtomicU64,
    /// Set when the import stops: batches in flight stop retrying.
    stopping: AtomicBool,
}

/// Why a batch task stopped before its items were all answered.
struct Stop {
    exit: u8,
    error: String,
}

/// What one batch task reports back.
#[derive(Default)]
struct Report {
    refused: Vec<Refusal>,
    stop: Option<Stop>,
    /// The first line of the batch left unanswered, when it stopped.
    unanswered: Option<u64>,
}

impl Report {
    /// The report of a batch that ends with `todo` unanswered.
    fn left(mut self, todo: &[Item]) -> Self {
        self.unanswered = todo.iter().map(|i| i.line).min();
        self
    }
}

/// `{"operations": [...]}` for `items`.
fn body(items: &[Item]) -> bytes::Bytes {
    #[derive(Serialize)]
    #[serde(tag = "op", rename_all = "snake_case")]
    enum Op<'a> {
        Register(&'a Registration),
    }
    #[derive(Serialize)]
    struct Body<'a> {
        operations: Vec<Op<'a>>,
    }
    let ops = items.iter().map(|i| Op::Register(&i.reg)).collect();
    bytes::Bytes::from(
        serde_json::to_vec(&Body { operations: ops }).expect("registrations serialise"),
    )
}

/// The parts of a batch answer the importer reads (the assignments are skipped unread).
#[derive(Deserialize)]
struct Results {
    results: Vec<ItemResult>,
}

#[derive(Deserialize)]
struct ItemResult {
    index: usize,
    #[serde(default)]
    result: Option<String>,
    #[serde(default)]
    error: Option<ItemError>,
}

#[derive(Deserialize)]
struct ItemError {
    #[serde(rename = "type")]
    type_uri: String,
    status: u16,
    detail: String,
}

/// A problem+json answer's fields.
#[derive(Default, Deserialize)]
struct ProblemBody {
    #[serde(default, rename = "type")]
    type_uri: String,
    #[serde(default)]
    title: String,
    #[serde(default)]
    detail: String,
    #[serde(default)]
    errors: Vec<BatchError>,
}

#[derive(Deserialize)]
struct BatchError {
    index: usize,
    #[serde(rename = "type")]
    type_uri: String,
    detail: String,
}

/// A pause before retry `attempt` (1, 2, …): 0.2 s doubling up to 10 s, with jitter so the
/// batches in flight do not all come back at once, and never shorter than the server's
/// `Retry-After`.
fn backoff(attempt: u32, retry_after: Option<Duration>) -> Duration {
    let cap = Duration::from_millis(200)
        .saturating_mul(1 << attempt.min(6))
        .min(Duration::from_secs(10));
    let jittered = cap.mul_f64(rand::random::<f64>().mul_add(0.5, 0.5));
    jittered.max(retry_after.unwrap_or_default())
}

/// Sends one batch until every item is answered (registered, existing or refused) or the
/// import must stop.
async fn send_batch(shared: Arc<Shared>, mut todo: Vec<Item>) -> Report {
    let mut report = Report::default();
    let mut failing_since: Option<Instant> = None;
    let mut attempt = 0u32;
    let first_line = todo.first().map_or(0, |i| i.line);
    while !todo.is_empty() {
        let stop = |exit, error: String, left: usize| Stop {
            exit,
            error: format!("batch from line {first_line} ({left} lines unanswered): {error}"),
        };
        let (why, retry_after) = match shared
            .client
            // Minimal answers: an item's result is all the import reads, and a registration's
            // full answer (its assignment) is 1.5 kB for the server to write and this to parse.
            .exchange_with(
                "POST",
                "/v1/credentials/batch",
                Some(body(&todo)),
                Some("return=minimal"),
            )
            .await
        {
            Err(SendError::Fatal(e)) => {
                report.stop = Some(stop(EXIT_FAILURE, format!("{e:#}"), todo.len()));
                return report.left(&todo);
            }
            Err(SendError::Transport(e)) => (format!("{e:#}"), None),
            Ok(a) if a.status.is_success() => {
                let results = match serde_json::from_slice::<Results>(&a.body) {
                    Ok(r) if r.results.len() == todo.len() => r.results,
                    _ => {
                        let shown =
                            String::from_utf8_lossy(&a.body[..a.body.len().min(300)]).into_owned();
                        report.stop = Some(stop(
                            EXIT_FAILURE,
                            format!("unexpected answer to the batch: {shown}"),
                            todo.len(),
                        ));
                        return report.left(&todo);
                    }
                };
                let sent = todo.len();
                let mut slots: Vec<Option<Item>> =
                    std::mem::take(&mut todo).into_iter().map(Some).collect();
                let mut again = Vec::new();
                let mut transient = None;
                for r in results {
                    let Some(item) = slots.get_mut(r.index).and_then(Option::take) else {
                        continue;
                    };
                    match (r.error, r.result.as_deref()) {
                        (Some(e), _) if e.status == 503 => {
                            transient.get_or_insert(e.detail);
                            again.push(item);
                        }
                        (Some(e), _) => report.refused.push(Refusal {
                            line: item.line,
                            item: serde_json::to_value(&item.reg).unwrap_or_default(),
                            problem: LineProblem {
                                type_uri: e.type_uri,
                                status: Some(e.status),
                                detail: e.detail,
                            },
                        }),
                        (None, Some("registered")) => {
                            shared.registered.fetch_add(1, Ordering::Relaxed);
                        }
                        (None, _) => {
                            shared.existing.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                // An item the answer skipped is sent again rather than lost.
                again.extend(slots.into_iter().flatten());
                shared.pb.inc((sent - again.len()) as u64);
                if again.is_empty() {
                    return report.left(&todo);
                }
                if again.len() < sent {
                    failing_since = None;
                    attempt = 0;
                }
                todo = again;
                let why = transient.unwrap_or_else(|| "no result for them".into());
                (
                    format!("{} item(s) answered 503: {why}", todo.len()),
                    Some(Duration::from_secs(1)),
                )
            }
            Ok(a) => {
                let p: ProblemBody = serde_json::from_slice(&a.body).unwrap_or_default();
                let status = a.status.as_u16();
                if status == 422 && p.type_uri.ends_with(":batch-invalid") && !p.errors.is_empty() {
                    // Nothing was applied: record the bad items, send the others again.
                    let bad: HashSet<usize> = p.errors.iter().map(|e| e.index).collect();
                    if bad.iter().any(|&i| i >= todo.len()) {
                        report.stop = Some(stop(
                            EXIT_FAILURE,
                            format!(
                                "the server refused items the batch does not have: {}",
                                p.detail
                            ),
                            todo.len(),
                        ));
                        return report.left(&todo);
                    }
                    for e in p.errors {
                        let item = &todo[e.index];
                        report.refused.push(Refusal {
                            line: item.line,
                            item: serde_json::to_value(&item.reg).unwrap_or_default(),
                            // The batch's 422 is not the item's own status.
                            problem: LineProblem {
                                type_uri: e.type_uri,
                                status: None,
                                detail: e.detail,
                            },
                        });
                    }
                    shared.pb.inc(bad.len() as u64);
                    todo = todo
                        .into_iter()
                        .enumerate()
                        .filter(|(i, _)| !bad.contains(i))
                        .map(|(_, item)| item)
                        .collect();
                    continue;
                }
                let what = format!("HTTP {status}: {}: {}", p.title, p.detail);
                match status {
                    401 | 403 => {
                        let hint = if status == 401 {
                            shared.client.unauthorized_hint()
                        } else {
                            "the token needs the \"write\" scope"
                        };
                        report.stop = Some(stop(
                            EXIT_UNAUTHORIZED,
                            format!("{what}; {hint}"),
                            todo.len(),
                        ));
                        return report.left(&todo);
                    }
                    413 => {
                        report.stop = Some(stop(
                            EXIT_FAILURE,
                            format!("{what}; use a smaller --batch-size"),
                            todo.len(),
                        ));
                        return report.left(&todo);
                    }
                    429 | 502 | 503 | 504 => (what, a.retry_after),
                    _ => {
                        report.stop = Some(stop(EXIT_FAILURE, what, todo.len()));
                        return report.left(&todo);
                    }
                }
            }
        };
        if shared.stopping.load(Ordering::Relaxed) {
            // Another batch stopped the import and said why; these lines stay unanswered.
            return report.left(&todo);
        }
        let since = *failing_since.get_or_insert_with(Instant::now);
        if since.elapsed() >= shared.retry_for {
            report.stop = Some(stop(
                EXIT_UNAVAILABLE,
                format!(
                    "still failing after {} of retries: {why}",
                    humantime::format_duration(Duration::from_secs(since.elapsed().as_secs()))
                ),
                todo.len(),
            ));
            return report.left(&todo);
        }
        attempt += 1;
        let wait = backoff(attempt, retry_after);
        // Retries 1, 2, 4, 8, … are shown: every failure streak is visible, not every retry.
        if attempt.is_power_of_two() {
            progress::note(
                &shared.pb,
                &format!(
                    "statusd: batch from line {first_line}: {why}; retry {attempt} in {:.1} s",
                    wait.as_secs_f64()
                ),
            );
        }
        tokio::time::sleep(wait).await;
    }
    report
}

/// The refused file, written as refusals arrive so an interrupted import leaves what it found.
struct RefusedFile {
    path: PathBuf,
    out: BufWriter<std::fs::File>,
}

impl RefusedFile {
    /// Creates the file anew, or appends to it (`append`, a resumed import: the refusals of
    /// the lines it skips stay).
    fn create(path: &Path, append: bool) -> Result<Self, ImportError> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .append(append)
            .truncate(!append)
            .open(path);
        let file = file.map_err(|source| ImportError::Output {
            path: path.to_owned(),
            source,
        })?;
        Ok(RefusedFile {
            path: path.to_owned(),
            out: BufWriter::new(file),
        })
    }

    /// Writes `r`, counts it, and shows the first few on standard error.
    fn add(
        &mut self,
        r: Refusal,
        pb: &ProgressBar,
        summary: &mut Summary,
    ) -> Result<(), ImportError> {
        summary.refused += 1;
        if summary.refused <= SHOWN_REFUSALS {
            let slug = r
                .problem
                .type_uri
                .trim_start_matches("urn:statusd:problem:");
            let line = format!(
                "statusd: line {} refused: {slug}: {}",
                r.line, r.problem.detail
            );
            progress::note(pb, &line);
        } else if summary.refused == SHOWN_REFUSALS + 1 {
            let line = format!(
                "statusd: more lines refused; every refused line is in {}",
                self.path.display()
            );
            progress::note(pb, &line);
        }
        let err = |source| ImportError::Output {
            path: self.path.clone(),
            source,
        };
        serde_json::to_writer(&mut self.out, &r).map_err(|e| err(e.into()))?;
        self.out.write_all(b"\n").map_err(err)
    }

    fn flush(&mut self) -> Result<(), ImportError> {
        self.out.flush().map_err(|source| ImportError::Output {
            path: self.path.clone(),
            source,
        })
    }
}

/// Runs an import to its end, or until it must stop (the summary says why). Fails only when it
/// cannot start: an unusable input file ([`ImportError::BadInput`]) or refused file.
pub async fn run(client: Client, opts: &Options) -> Result<Summary, ImportError> {
    assert!(
        (1..=MAX_BATCH).contains(&opts.batch_size),
        "batch size checked by the caller"
    );
    let total = scan(&opts.file)?;
    let mut lines = Lines::open(&opts.file, opts.from_line)?;
    let mut refused_file = RefusedFile::create(&opts.refused, opts.from_line > 1)?;
    let started = Instant::now();
    let pb = progress::bar(total, "lines");
    pb.set_message("importing");
    let shared = Arc::new(Shared {
        client,
        pb: pb.clone(),
        retry_for: opts.retry_for,
        registered: AtomicU64::new(0),
        existing: AtomicU64::new(0),
        stopping: AtomicBool::new(false),
    });
    let mut summary = Summary {
        file: opts.file.clone(),
        refused_file: opts.refused.clone(),
        ..Summary::default()
    };
    let mut inflight = tokio::task::JoinSet::new();
    // Lines that name a credential already in the batch being filled wait for the next one:
    // the server refuses an id twice in one batch, but answers a repeat in a later batch as
    // any retry (`exists`, or a conflict if its parameters differ).
    let mut carry: Vec<Item> = Vec::new();
    let mut end_of_file = false;
    // A batch of derived cards waiting for the batches before it.
    let mut held: Option<Vec<Item>> = None;
    let mut stop: Option<Stop> = None;
    // The first line a stopped batch left unanswered.
    let mut unanswered = u64::MAX;
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    loop {
        if stop.is_none() {
            if let Some(batch) = held.take_if(|_| inflight.is_empty()) {
                inflight.spawn(send_batch(shared.clone(), batch));
            }
        }
        while held.is_none()
            && stop.is_none()
            && !(end_of_file && carry.is_empty())
            && inflight.len() < opts.concurrency
        {
            let mut batch = Vec::with_capacity(opts.batch_size);
            let mut ids = HashSet::with_capacity(opts.batch_size);
            let mut later = Vec::new();
            for item in carry.drain(..) {
                if batch.len() < opts.batch_size && ids.insert(item.reg.credential_id.clone()) {
                    batch.push(item);
                } else {
                    later.push(item);
                }
            }
            carry = later;
            while batch.len() < opts.batch_size && !end_of_file {
                let read = lines.next().map_err(|e| {
                    ImportError::BadInput(format!(
                        "reading {} after line {}: {e}",
                        opts.file.display(),
                        lines.line
                    ))
                })?;
                match read {
                    Read::End => end_of_file = true,
                    Read::Skipped => {
                        summary.skipped += 1;
                        pb.inc(1);
                    }
                    Read::Blank => pb.inc(1),
                    Read::Refused(r) => {
                        summary.lines += 1;
                        pb.inc(1);
                        refused_file.add(r, &pb, &mut summary)?;
                    }
                    Read::Item(item) => {
                        summary.lines += 1;
                        if ids.insert(item.reg.credential_id.clone()) {
                            batch.push(item);
                        } else {
                            carry.push(item);
                        }
                    }
                }
            }
            if batch.is_empty() {
                break;
            }
            // A derived card needs its parent registered: its batch waits until every batch
            // before it is answered (a file lists parents first; one batch may hold both).
            if batch.iter().any(|i| i.reg.parent.is_some()) && !inflight.is_empty() {
                held = Some(batch);
                break;
            }
            inflight.spawn(send_batch(shared.clone(), batch));
        }
        let joined = tokio::select! {
            j = inflight.join_next() => j,
            _ = &mut interrupted, if stop.is_none() => {
                progress::note(&pb, "statusd: interrupted; waiting for the batches in flight");
                stop = Some(Stop {
                    exit: EXIT_INTERRUPTED,
                    error: "interrupted".into(),
                });
                shared.stopping.store(true, Ordering::Relaxed);
                continue;
            }
        };
        let Some(joined) = joined else { break };
        let report = match joined {
            Ok(r) => r,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => panic!("a batch task was cancelled: {e}"),
        };
        for r in report.refused {
            refused_file.add(r, &pb, &mut summary)?;
        }
        unanswered = unanswered.min(report.unanswered.unwrap_or(u64::MAX));
        refused_file.flush()?;
        if let Some(s) = report.stop {
            // The first reason is kept; batches still in flight finish on their own.
            if stop.is_none() {
                progress::note(&pb, &format!("statusd: stopping: {}", s.error));
                shared.stopping.store(true, Ordering::Relaxed);
                stop = Some(s);
            }
        }
        pb.set_message(format!(
            "{} registered, {} existing, {} refused",
            shared.registered.load(Ordering::Relaxed),
            shared.existing.load(Ordering::Relaxed),
            summary.refused
        ));
    }
    refused_file.flush()?;
    pb.finish_and_clear();
    summary.registered = shared.registered.load(Ordering::Relaxed);
    summary.existing = shared.existing.load(Ordering::Relaxed);
    summary.seconds = (started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0;
    let answered = summary.registered + summary.existing + summary.refused;
    summary.per_second = (answered as f64 / started.elapsed().as_secs_f64().max(1e-3)).round();
    match stop {
        Some(s) => {
            // Every line before the first one left unanswered (in a stopped batch, a held or
            // deferred one, or not read yet) is answered.
            let mut resume = unanswered;
            for item in held.iter().flatten().chain(&carry) {
                resume = resume.min(item.line);
            }
            if !end_of_file {
                resume = resume.min(lines.line + 1);
            }
            summary.resume_from = (resume != u64::MAX).then_some(resume);
            summary.exit_code = s.exit;
            summary.error = Some(format!(
                "{}; stopped with {answered} operations answered, every line before line {} \
                 among them; to resume, run the same command again with --from-line {} (or \
                 without it: registered lines are answered `exists`, nothing is registered \
                 twice)",
                s.error,
                summary.resume_from.unwrap_or(total + 1),
                summary.resume_from.unwrap_or(total + 1),
            ));
        }
        None => {
            summary.complete = true;
            summary.exit_code = if summary.refused > 0 { EXIT_REFUSED } else { 0 };
        }
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(line: &str) -> String {
        match parse_line(line.as_bytes()) {
            Err((_, why)) => why,
            other => panic!("{line:?} was accepted: {other:?}"),
        }
    }

    #[test]
    fn a_line_is_a_registration_with_or_without_op() {
        let r = parse_line(b"{\"credential_id\":\"ic-1\",\"kind\":\"physical\"}\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(
            (r.credential_id.as_str(), r.kind.as_str()),
            ("ic-1", "physical")
        );
        let r = parse_line(br#"{"op":"register","credential_id":"m-1","kind":"mobile","parent":"ic-1","request_id":"r1"}"#)
            .unwrap()
            .unwrap();
        assert_eq!(r.parent.as_deref(), Some("ic-1"));
        // The credential's own expiry, as in the batch API.
        let r = parse_line(
            br#"{"credential_id":"mc-1","kind":"mobile","parent":"ic-1","expires_at":"2029-06-30T23:59:59Z"}"#,
        )
        .unwrap()
        .unwrap();
        assert_eq!(r.expires_at.as_deref(), Some("2029-06-30T23:59:59Z"));
        assert!(parse_line(b"  \t\n").unwrap().is_none());
    }

    #[test]
    fn malformed_lines_are_refused_with_a_precise_reason() {
        assert_eq!(
            refused("{\"credential_id\":"),
            "not JSON: EOF while parsing a value at column 17"
        );
        assert!(refused("[1]").contains("not a JSON object"));
        assert!(
            refused(r#"{"credential_id":"a","kind":"physical","colour":"red"}"#)
                .contains("unknown field `colour`")
        );
        assert!(refused(r#"{"credential_id":"a"}"#).contains("missing field `kind`"));
        assert!(
            refused(r#"{"credential_id":"a","kind":"physical","kind":"mobile"}"#)
                .contains("appears more than once")
        );
        assert!(
            refused(r#"{"op":"revoke","credential_id":"a","reason":"x"}"#)
                .contains("only register operations")
        );
        assert!(
            refused(r#"{"credential_id":"has space","kind":"physical"}"#)
                .contains("credential_id must be")
        );
        assert!(refused("\u{00e9}t\u{00e9}").starts_with("not JSON"));
        assert!(
            refused(r#"{"credential_id":"a","kind":"physical","expires_at":"2029-06-30"}"#)
                .contains("expires_at \"2029-06-30\" is not an RFC 3339 UTC time")
        );
    }

    fn file(text: &[u8]) -> (Tmp, PathBuf) {
        let dir = std::env::temp_dir().join(format!("statusd-import-{:x}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("in.jsonl");
        std::fs::write(&path, text).unwrap();
        (Tmp(dir), path)
    }

    struct Tmp(PathBuf);
    impl Drop for Tmp {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn scan_counts_lines_and_refuses_what_is_not_json_lines() {
        let ok = b"{\"credential_id\":\"a\",\"kind\":\"physical\"}\n";
        let mut big = ok.repeat(250);
        big.extend_from_slice(b"garbage\n\n{\"credential_id\":\"b\",\"kind\":\"physical\"}");
        let (_t, p) = file(&big);
        assert_eq!(scan(&p).unwrap(), 253);
        let (_t, p) = file(b"garbage\n{\"credential_id\":\"a\",\"kind\":\"physical\"}\n");
        assert_eq!(
            scan(&p).unwrap(),
            2,
            "one bad line does not make a bad file"
        );
        for (text, want) in [
            (&b""[..], "no line to import"),
            (b"\n \n", "no line to import"),
            (b"id,kind\nic-1,physical\n", "is not JSON Lines"),
            (
                b"[{\"credential_id\":\"a\",\"kind\":\"physical\"}]\n",
                "jq -c",
            ),
        ] {
            let (_t, p) = file(text);
            match scan(&p) {
                Err(ImportError::BadInput(e)) => assert!(e.contains(want), "{e}"),
                other => panic!("{text:?}: {other:?}"),
            }
        }
        match scan(Path::new("/nonexistent/statusd-import")) {
            Err(ImportError::BadInput(e)) => assert!(e.contains("cannot read"), "{e}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn backoff_grows_is_capped_and_honours_retry_after() {
        for attempt in 1..20 {
            let d = backoff(attempt, None);
            assert!(d <= Duration::from_secs(10), "{attempt}: {d:?}");
            assert!(d >= Duration::from_millis(200), "{attempt}: {d:?}");
        }
        assert!(backoff(1, Some(Duration::from_secs(3))) >= Duration::from_secs(3));
    }

    #[test]
    fn the_batch_body_is_what_the_batch_api_parses() {
        let items: Vec<Item> = ["ic-1", "ic-2"]
            .iter()
            .enumerate()
            .map(|(i, id)| Item {
                line: i as u64 + 1,
                reg: parse_line(
                    format!(r#"{{"credential_id":"{id}","kind":"physical","reason":"launch"}}"#)
                        .as_bytes(),
                )
                .unwrap()
                .unwrap(),
            })
            .collect();
        let ops = crate::admin::api::parse_batch(&body(&items)).unwrap();
        assert_eq!(ops.len(), 2);
        assert_eq!(ops[1], Operation::Register(items[1].reg.clone()));
    }
}
