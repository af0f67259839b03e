"""Helpers of loadtest/faults (Python 3 standard library only, loopback only).

  faults.py known URL LISTS SIZE N OUT        pick N entries from lists 2..LISTS (list 1 holds the
                                             marker), about half of them non-VALID, with their
                                             values as replica URL publishes them; JSON to OUT
  faults.py marker URL SIZE                  print an index of list 1 that is VALID
  faults.py sample OUT STOP ADMIN...         every 0.5 s until the file STOP exists: each
                                             replica's /readyz code and metrics, as TSV
  faults.py catchup OUT LABEL LIST IDX VALUE TIMEOUT WRITE SINCE URL...
                                             WRITE = "redis-cli -p PORT --eval ..." to run first
                                             (or "-"); then poll every replica's lookup until it
                                             shows VALUE; times count from the write's
                                             acknowledgement, or from SINCE (Unix time) if WRITE
                                             is "-"; one JSON line appended to OUT
  faults.py report ...                       see report() below
"""
import http.client
import json
import os
import random
import shlex
import subprocess
import sys
import time
import urllib.parse


class Conn:
    """A keep-alive HTTP/1.1 connection to one loopback base URL."""

    def __init__(self, base, timeout=3.0):
        u = urllib.parse.urlsplit(base)
        assert u.hostname in ("127.0.0.1", "localhost"), f"loopback only: {base}"
        self.host, self.port, self.timeout = u.hostname, u.port, timeout
        self.c = None

    def get(self, path, method="GET", body=None, headers=None):
        for attempt in (0, 1):
            try:
                if self.c is None:
                    self.c = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
                self.c.request(method, path, body=body, headers=headers or {})
                r = self.c.getresponse()
                return r.status, r.read()
            except (OSError, http.client.HTTPException):
                if self.c is not None:
                    self.c.close()
                self.c = None
                if attempt:
                    return 0, b""
        return 0, b""


def values(conn, lst, idxs):
    st, body = conn.get(f"/statuses/{lst}", "POST", json.dumps({"idx": idxs}),
                        {"Content-Type": "application/json"})
    if st != 200:
        sys.exit(f"batch lookup on list {lst}: HTTP {st}")
    doc = json.loads(body)
    items = doc if isinstance(doc, list) else next(v for v in doc.values() if isinstance(v, list))
    return {it["idx"]: it["value"] for it in items}


def known(url, lists, size, n, out):
    rng = random.Random(20261126)
    conn = Conn(url)
    n = int(n)
    want_nv, want_v = n // 2, n - n // 2
    nonvalid, valid = [], []
    lists = int(lists)
    for _ in range(200):
        if len(nonvalid) >= want_nv and len(valid) >= want_v:
            break
        lst = str(rng.randint(2, lists)) if lists > 1 else "1"
        idxs = rng.sample(range(int(size)), 1000)
        for idx, v in values(conn, lst, idxs).items():
            if v != 0 and len(nonvalid) < want_nv:
                nonvalid.append([lst, idx, v])
            elif v == 0 and len(valid) < want_v:
                valid.append([lst, idx, v])
    with open(out, "w") as f:
        json.dump(nonvalid + valid, f)
    print(f"{len(nonvalid)} non-VALID and {len(valid)} VALID entries")


def marker(url, size):
    conn = Conn(url)
    rng = random.Random(7)
    idxs = rng.sample(range(int(size)), 100)
    print(next(i for i, v in values(conn, "1", idxs).items() if v == 0))


def metric(text, name):
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return line.rsplit(" ", 1)[1]
    return ""


def sample(out, stop, *admins):
    conns = [Conn(a, timeout=2.0) for a in admins]
    names = ["statusd_refresh_errors_total", "statusd_snapshot_age_seconds",
             "statusd_last_sync_timestamp_seconds", "statusd_lists", "statusd_entries_non_valid"]
    with open(out, "w", buffering=1) as f:
        while not os.path.exists(stop):
            t = time.time()
            for i, c in enumerate(conns):
                ready, _ = c.get("/readyz")
                st, body = c.get("/metrics")
                text = body.decode() if st == 200 else ""
                f.write("\t".join([f"{t:.3f}", str(i + 1), str(ready)] + [metric(text, m) for m in names]) + "\n")
            time.sleep(max(0.0, 0.5 - (time.time() - t)))


def catchup(out, label, lst, idx, value, timeout, write, since, *urls):
    rec = {"label": label, "value": int(value)}
    t_start = time.time()
    if write != "-":
        r = subprocess.run(shlex.split(write), capture_output=True, text=True, timeout=30)
        rec["write"] = (r.stdout + r.stderr).strip().replace("\n", " ")[:80]
        if r.returncode != 0 or "ERR" in rec["write"]:
            rec["error"] = "write failed"
    t0 = time.time() if since == "-" else float(since)
    rec["t0"] = t0
    rec["write_ms"] = round(1000 * (t0 - t_start), 1)
    conns = [Conn(u, timeout=1.0) for u in urls]
    seen = [None] * len(urls)
    deadline = t0 + float(timeout)
    while None in seen and time.time() < deadline and "error" not in rec:
        for i, c in enumerate(conns):
            if seen[i] is None:
                st, body = c.get(f"/statuses/{lst}/{idx}")
                if st == 200 and json.loads(body).get("value") == int(value):
                    seen[i] = round(time.time() - t0, 3)
        time.sleep(0.005)
    rec["seen_s"] = seen
    with open(out, "a") as f:
        f.write(json.dumps(rec) + "\n")


DESCRIBE = {
    "baseline": "no fault; marker change written (control)",
    "down": "Redis killed (SIGKILL)",
    "restarted": "Redis restarted from its AOF",
    "paused": "Redis frozen (SIGSTOP)",
    "resumed": "SIGCONT",
    "empty": "Redis killed, data deleted, started empty",
    "restored": "Redis killed, backup AOF put back, started",
    "steady": "no fault; marker change",
}


def tsv(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [line.rstrip("\n").split("\t") for line in f if line.strip()]


def report(work, out):
    meta = dict(tsv(os.path.join(work, "meta.tsv")))
    with open(os.path.join(work, "k6.json")) as f:
        k6 = json.load(f)
    m = k6["metrics"]
    phases = meta["phases"].split()
    t0, plen = float(meta["t0"]), float(meta["phase_s"])
    nrep, lists = int(meta["replicas"]), int(meta["lists"])
    hz = int(meta["clk_tck"])
    events = {}
    for r in tsv(os.path.join(work, "events.tsv")):
        i = phases.index(r[0])
        events[r[0]] = (float(r[1]), f"{r[2]}, at +{float(r[1]) - t0 - i * plen:.1f} s")
    samples = [(float(r[0]), int(r[1]), r[2], r[3:]) for r in tsv(os.path.join(work, "samples.tsv"))]
    cpu = tsv(os.path.join(work, "cpu.tsv"))
    catchups = []
    with open(os.path.join(work, "catchup.jsonl")) as f:
        catchups = [json.loads(line) for line in f if line.strip()]

    def val(name, stat, default=0):
        return m.get(name, {}).get("values", {}).get(stat, default)

    def num(x):
        try:
            return float(x)
        except ValueError:
            return None

    failures = []
    rows = []
    counts = {"bad_status": 0, "server_errors": 0, "wrong_values": 0, "no_answer": 0}
    for i, p in enumerate(phases):
        start, end = t0 + i * plen, t0 + (i + 1) * plen
        reads = val(f"http_reqs{{phase:{p}}}", "count")
        d = f"http_req_duration{{phase:{p}}}"
        c = {k: val(f"{k}{{phase:{p}}}", "count") for k in counts}
        for k in counts:
            counts[k] += c[k]
        # Readiness per replica: its code at the phase start and every change after.
        ready, errs, stale = [], [], []
        for r in range(1, nrep + 1):
            ss = [s for s in samples if s[1] == r and start <= s[0] < end]
            if not ss:
                ready.append(f"r{r} -")
                continue
            desc, last = ss[0][2], ss[0][2]
            for s in ss[1:]:
                if s[2] != last:
                    desc += f"→{s[2]} at +{s[0] - start:.1f} s"
                    last = s[2]
            ready.append(f"r{r} {desc}")
            e = [num(s[3][0]) for s in ss if num(s[3][0]) is not None]
            prev = [num(s[3][0]) for s in samples if s[1] == r and s[0] < start and num(s[3][0]) is not None]
            base = prev[-1] if prev else (e[0] if e else 0)
            errs.append(f"{(e[-1] - base) if e else 0:.0f}")
            st = [s[0] - num(s[3][2]) for s in ss if num(s[3][2])]
            age = [num(s[3][1]) for s in ss if num(s[3][1]) is not None]
            stale.append((f"{max(st):.1f}" if st else "-") + " / " + (f"{max(age):.1f}" if age else "-"))
        cp = [row for row in cpu if row[0] == p]
        nxt = cpu[cpu.index(cp[0]) + 1] if cp and cpu.index(cp[0]) + 1 < len(cpu) else None
        if cp and nxt:
            a, b = cp[0], nxt
            secs = float(b[1]) - float(a[1])
            dt = [int(b[k]) - int(a[k]) for k in range(2, 7)]
            other = max(0, dt[0] - sum(dt[1:]))
            pct = lambda t: f"{100 * t / hz / secs:.0f}"
            cpus = f"{pct(dt[1])} / {pct(dt[2])} / {pct(dt[3])} / **{pct(other)}**"
        else:
            cpus = "-"
        rows.append(
            f"| {p} | {events[p][1] if p in events else DESCRIBE.get(p, '')}{'; marker change' if p in ('restarted', 'resumed') else ''} "
            f"| {reads:,.0f} | {val(d, 'med'):.2f} / {val(d, 'p(99)'):.2f} / {val(d, 'max'):.0f} "
            f"| {c['bad_status']:.0f} | {c['server_errors']:.0f} | {c['no_answer']:.0f} | {c['wrong_values']:.0f} "
            f"| {'; '.join(ready)} | {' / '.join(errs)} | {'; '.join(stale)} | {cpus} |"
        )
        for k, v in c.items():
            if v:
                failures.append(f"{p}: {v:.0f} {k.replace('_', ' ')}")
    for extra in ("warmup", "tail"):
        for k in counts:
            v = val(f"{k}{{phase:{extra}}}", "count")
            if v:
                failures.append(f"{extra}: {v:.0f} {k.replace('_', ' ')}")

    # Catch-up of the marker changes.
    crow = []
    for c in catchups:
        seen = c.get("seen_s", [])
        what = "reload of the restored (older) list" if c["label"] == "restored" else \
            f"write of {'SUSPENDED' if c['value'] == 2 else 'VALID'} (redis-cli took {c.get('write_ms', 0):.0f} ms)"
        if c["label"] in events and c["label"] != "restored":
            what += f", {c['t0'] - events[c['label']][0]:.2f} s after Redis answered"
        crow.append(f"| {c['label']} | {what} | " + " / ".join(
            "**not seen**" if s is None else f"{1000 * s:.0f} ms" for s in seen) + " |")
        if c.get("error"):
            failures.append(f"marker {c['label']}: {c['error']} ({c.get('write', '')})")
        if None in seen:
            failures.append(f"marker {c['label']}: not seen on every replica within {meta['catchup_max']} s")
    labels = [c["label"] for c in catchups]
    for want in ("baseline", "restarted", "resumed", "restored", "steady"):
        if want not in labels:
            failures.append(f"marker {want}: no measurement")

    # Published lists and non-VALID entries never dropped; every replica ready at the end.
    pub = []
    for r in range(1, nrep + 1):
        ss = [s for s in samples if s[1] == r and num(s[3][3]) is not None]
        if not ss:
            failures.append(f"replica {r}: no metrics sampled")
            continue
        nl = [num(s[3][3]) for s in ss]
        nv = [num(s[3][4]) for s in ss]
        pub.append(f"r{r}: lists {min(nl):.0f}–{max(nl):.0f}, non-VALID entries {min(nv):,.0f}–{max(nv):,.0f} "
                   f"({len(ss)} samples)")
        if min(nl) < lists:
            failures.append(f"replica {r} published {min(nl):.0f} lists (< {lists})")
        if min(nv) < nv[0]:
            failures.append(f"replica {r} published fewer non-VALID entries ({min(nv):.0f}) than at start ({nv[0]:.0f})")
        last = [s for s in samples if s[1] == r][-1]
        if last[2] != "200":
            failures.append(f"replica {r}: /readyz {last[2]} at the end")

    reads = val("http_reqs", "count")
    d = m.get("http_req_duration", {}).get("values", {})
    verdict = "PASS" if not failures else "FAIL"
    head = [
        f"# loadtest/faults: {verdict}",
        "",
        f"- started {meta['started']}, finished {meta['finished']}",
        f"- machine: {meta['machine']}",
        f"- commit: {meta['commit']}",
        f"- command: `{meta['command']}`",
        f"- tools: {meta['tools']}",
        f"- Redis: appendonly yes, appendfsync {meta['appendfsync']}, no RDB snapshots; used_memory after the seed "
        f"{meta.get('redis_used_memory_mib', '?')} MiB; backup (AOF rewritten, then copied) {meta.get('backup_size', '?')}",
        f"- {lists} lists x {meta['size']} entries seeded in {meta.get('seed_seconds', '?')} s; {nrep} replicas (release "
        f"build, --max-staleness {meta['max_staleness']}) ready {meta.get('cold_start_seconds', '?')} s after start, "
        f"RSS {' / '.join(meta.get('statusd_rss_mib', '?').split())} MiB",
        f"- reads: k6 faults.js, {meta['rate']}/s per replica (constant arrival rate), 70 % lookups of "
        f"known entries ({meta.get('known', '?')}, from lists 2..{lists}), 20 % list tokens, 10 % the aggregation; phases of {meta['phase_s']} s",
        "",
        "## Per phase",
        "",
        "Reads are counted in the phase they started in. *Not 200/304* includes 5xx and *no answer* "
        "(k6 timeout 10 s or connection error). Readiness: each replica's `/readyz` code at the phase start and "
        "every change (sampled every 0.5 s). Refresh errors: increase of `statusd_refresh_errors_total` per "
        "replica. Staleness / snapshot age: per replica, the largest now − `statusd_last_sync_timestamp_seconds` and the largest `statusd_snapshot_age_seconds` sampled. CPU in % of one "
        "CPU over the phase: the replicas together / Redis / k6 / **other processes** (the machine's busy time "
        "minus those and the sampler; this script's own short-lived helpers, such as curl and the catch-up probes, "
        "count as other).",
        "",
        "| phase | what happened | reads | p50 / p99 / max ms | not 200/304 | 5xx | no answer | wrong values "
        "| /readyz | refresh errors | staleness / snapshot age, s | CPU % replicas / Redis / k6 / other |",
        "|---|---|---:|---|---:|---:|---:|---:|---|---|---|---|",
    ]
    body = rows + [
        "",
        f"Whole run (incl. {meta['warm']} s of warm-up before the first phase): {reads:,.0f} reads, p50 {d.get('med', 0):.2f} ms, "
        f"p99 {d.get('p(99)', 0):.2f} ms, max {d.get('max', 0):.0f} ms; dropped iterations (k6 could not start "
        f"them on time) {val('dropped_iterations', 'count'):.0f}.",
        "",
        "## Catch-up after recovery",
        "",
        "Marker: one VALID entry of list 1 flipped SUSPENDED/VALID through `src/store/redis_apply.lua` "
        "(`redis-cli --eval`), right after Redis answered again; then every replica's lookup polled every 5 ms "
        "(keep-alive). Time from the write's acknowledgement (or, for *restored*, from Redis answering with "
        "the backup) to the first lookup showing the value, per replica.",
        "",
        "| after | change | " + " / ".join(f"replica {r}" for r in range(1, nrep + 1)) + " |",
        "|---|---|---|",
    ] + crow + [
        "",
        "## Published state",
        "",
        "From each replica's `statusd_lists` and `statusd_entries_non_valid` over the whole run (the marker adds "
        "one non-VALID entry while SUSPENDED):",
        "",
    ] + [f"- {x}" for x in pub] + [
        f"- \"lists missing from the store\" logged (per replica log): {meta.get('missing_logged', '?')}; "
        f"\"list version went backwards; reloading in full\": {meta.get('backwards_logged', '?')}",
        "",
        "## Verdict",
        "",
        verdict + (": " + "; ".join(failures) if failures else
                   ": no read failed or returned a wrong value in any phase, every marker change reached every "
                   "replica, no replica published fewer lists or non-VALID entries, every replica ready at the end"),
    ]
    with open(out, "w") as f:
        f.write("\n".join(head + body) + "\n")
    write_series(m, meta, phases, plen, out)
    print("\n".join(rows + [""] + crow + [""] + pub + ["", verdict] + failures))
    return 0 if not failures else 1


def write_series(m, meta, phases, plen, out):
    """Read latency per slice (1 s) from the first phase on, from k6's per-slice submetrics
    (faults.js), into the machine-readable file beside the result file, for loadtest/charts."""
    slice_s = float(meta.get("slice_s", 1))
    series = []
    for i in range(int(round(len(phases) * plen / slice_s))):
        v = m.get(f"http_req_duration{{slice:{i}}}", {}).get("values")
        if v is None:
            continue
        series.append({"t": round((i + 0.5) * slice_s, 3), "p50_ms": round(v["med"], 3),
                       "p99_ms": round(v["p(99)"], 3), "max_ms": round(v["max"], 3)})
    with open(out[: -len(".md")] + ".json", "w") as f:
        json.dump({"result": os.path.basename(out), "phases": phases, "phase_s": plen, "slice_s": slice_s,
                   "series": series}, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "report":
        sys.exit(report(*args))
    {"known": known, "marker": marker, "sample": sample, "catchup": catchup}[cmd](*args)
