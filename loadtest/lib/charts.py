"""SVG charts from the result files in loadtest/results/ (run by `loadtest/charts`).

    charts.py [--results DIR] [--out DIR]

Every chart is drawn with matplotlib from the numbers a load test wrote into its result file
(and, where the test writes one, the machine-readable file beside it: same name, `.json` or
`.csv`); nothing is typed in by hand. For each chart the newest result file of its kind is used
(result files are named `<tool>-<UTC time>.md`, so the newest sorts last), and the chart names
that file and its commit. A result file that lacks a figure a chart needs, or holds one that does
not parse, stops the script with exit status 1 and a message naming the file: a chart is never
drawn from half the data. The SVGs are reproducible byte for byte (no date, fixed ids, text kept
as text) with the pinned matplotlib of loadtest/charts, so a committed chart that differs from
what this script draws was edited by hand or not regenerated (`loadtest/charts --test` checks).
"""
import argparse
import json
import os
import re
import statistics
import sys

import matplotlib

matplotlib.use("svg")
import matplotlib.pyplot as plt  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.normpath(os.path.join(HERE, "..", "results"))

# Colours: statusd always orange, the thing it is compared with always blue.
BASE, OURS, GREY, RED = "#4c72b0", "#dd8452", "#8c8c8c", "#c44e52"


class Malformed(Exception):
    """A result file lacks a figure a chart needs, or holds one that does not parse."""


# --- reading result files ---------------------------------------------------------------------
class Result:
    """One result file: its text, its name and the machine-readable file beside it, if any."""

    def __init__(self, path):
        self.path = path
        self.name = os.path.basename(path)
        with open(path, encoding="utf-8") as f:
            self.text = f.read()
        stem = path[: -len(".md")]
        self.sidecar = next((stem + e for e in (".json", ".csv") if os.path.exists(stem + e)), None)

    def fail(self, what):
        raise Malformed(f"{self.name}: {what}")

    def find(self, pattern, what, flags=0):
        m = re.search(pattern, self.text, flags)
        if not m:
            self.fail(f"no {what}")
        return m

    def table(self, first_header):
        """Rows (lists of cells) of the Markdown table whose header row starts with
        `| first_header |`; the header row itself is `self.header`."""
        lines = self.text.splitlines()
        for i, line in enumerate(lines):
            if line.startswith(f"| {first_header} |"):
                if i + 1 >= len(lines) or not re.match(r"^\|[-:| ]+\|$", lines[i + 1]):
                    self.fail(f"table '{first_header}' has no separator row")
                header = cells(line)
                rows = []
                for row in lines[i + 2:]:
                    if not row.startswith("|"):
                        break
                    r = cells(row)
                    if len(r) != len(header):
                        self.fail(f"table '{first_header}': row has {len(r)} cells, header {len(header)}: {row}")
                    rows.append(r)
                if not rows:
                    self.fail(f"table '{first_header}' has no rows")
                return header, rows
        self.fail(f"table starting with '| {first_header} |'")

    def commit(self):
        m = re.search(r"(?:commit|git):? `?([0-9a-f]{7,40})", self.text)
        return m.group(1) if m else "unknown commit"

    def knob(self, name, default=None):
        """A knob from the command line the file records (`NAME=value`)."""
        m = re.search(rf"\b{name}=([^\s`']+)", self.text)
        if m:
            return m.group(1)
        if default is None:
            self.fail(f"no {name}= in the recorded command")
        return default

    def source(self):
        return f"{self.name} (commit {self.commit()})"


def cells(line):
    return [c.strip() for c in line.strip().strip("|").split("|")]


def number(r, text, what):
    """The first number in text (thousands separators and ** allowed)."""
    text = text.replace("**", "").strip()
    m = re.search(r"-?[0-9][0-9,]*(?:\.[0-9]+)?", text)
    if not m:
        r.fail(f"{what}: no number in '{text}'")
    return float(m.group(0).replace(",", ""))


def newest(results, tool):
    pat = re.compile(rf"^{re.escape(tool)}-\d{{4}}-\d\d-\d\dT\d{{6}}Z\.md$")
    names = sorted(n for n in os.listdir(results) if pat.match(n))
    if not names:
        raise Malformed(f"no {tool}-<UTC time>.md in {results}")
    return Result(os.path.join(results, names[-1]))


def newest_full_ab(results):
    """The newest wrk A/B of statusd that ran every scenario at full load (a rerun of one
    scenario is not the picture, nor an A/A calibration run, `B_SERVER=baseline`, nor a paced
    run, `PACE_MS` > 0, whose req/s are the pace)."""
    pat = re.compile(r"^wrk-ab-\d{4}-\d\d-\d\dT\d{6}Z\.md$")
    full_load = []
    for n in sorted((n for n in os.listdir(results) if pat.match(n)), reverse=True):
        r = Result(os.path.join(results, n))
        if re.search(r"\bB_SERVER=baseline\b|\bPACE_MS=[1-9]", r.text):
            continue
        m = re.search(r"\bSCENARIOS='([^']*)'", r.text)
        if m is None or len(m.group(1).split()) >= 3:
            return r
        full_load.append(r)
    # None ran every scenario: the newest full-load run of statusd, else the newest file.
    return full_load[0] if full_load else newest(results, "wrk-ab")


def newest_each(results, tool, key):
    """The newest file of a tool for each distinct value of key(result), oldest key first."""
    pat = re.compile(rf"^{re.escape(tool)}-\d{{4}}-\d\d-\d\dT\d{{6}}Z\.md$")
    chosen = {}
    for n in sorted(n for n in os.listdir(results) if pat.match(n)):
        r = Result(os.path.join(results, n))
        chosen[key(r)] = r
    if not chosen:
        raise Malformed(f"no {tool}-<UTC time>.md in {results}")
    return chosen


# --- drawing ----------------------------------------------------------------------------------
def setup():
    plt.rcParams.update({
        "svg.hashsalt": "statusd-charts",  # fixed element ids: the same data draws the same file
        "svg.fonttype": "none",  # text stays text (smaller, searchable, no glyph outlines)
        "font.family": "DejaVu Sans",  # shipped with matplotlib: the same metrics everywhere
        "font.size": 9,
        "axes.spines.top": False,
        "axes.spines.right": False,
        "axes.grid": True,
        "grid.alpha": 0.3,
        "legend.frameon": False,
    })


def save(fig, out, name, sources):
    fig.text(0.01, 0.005, "data: " + "; ".join(sources) + " — drawn by loadtest/charts",
             fontsize=7, color=GREY, ha="left", va="bottom")
    path = os.path.join(out, name)
    fig.savefig(path, format="svg", metadata={"Date": None})
    plt.close(fig)
    return path


def bar_labels(ax, bars, fmt):
    for b in bars:
        ax.annotate(fmt(b.get_height()), (b.get_x() + b.get_width() / 2, b.get_height()),
                    ha="center", va="bottom", fontsize=7, xytext=(0, 2), textcoords="offset points")


def ratio_panel(ax, names, rounds, judged, target, title, judged_label):
    """statusd ÷ baseline per scenario: every round's ratio, the judged one, the target."""
    for i, per in enumerate(rounds):
        ax.scatter([i] * len(per), per, color=GREY, s=14, zorder=3, label="one round" if i == 0 else None)
        ax.scatter([i], [judged[i]], color=OURS, marker="D", s=36, zorder=4,
                   label=judged_label if i == 0 else None)
        ax.annotate(f"{judged[i]:.3f}", (i, judged[i]), xytext=(8, -3), textcoords="offset points", fontsize=7)
    ax.axhline(target, color=RED, lw=1, ls="--", label=f"target {target:.2f}")
    ax.axhline(1.0, color=BASE, lw=1, label="baseline")
    ax.set_xticks(list(range(len(names))), [n.split("\n")[0] for n in names], fontsize=7)
    ax.set_xlim(-0.5, len(names) - 0.5)
    ax.set_ylabel("statusd ÷ baseline")
    ax.set_title(title)
    ax.legend(fontsize=6, loc="best")


# --- the charts -------------------------------------------------------------------------------
def throughput(results, out):
    """wrk A/B: statusd against the bare hyper baseline, req/s and server CPU per request."""
    r = newest_full_ab(results)
    header, rows = r.table("scenario")
    col = {h: i for i, h in enumerate(header)}
    # Since 2026-12-08 the verdict is on the median of the per-round (paired) ratios, for req/s
    # and for CPU per request alike; older files judged the ratio of the medians.
    paired = "median ratio" in col
    if paired:
        ratio_col, per_col, judged_col = "ratio of medians", "per-round ratios", "median ratio"
        need = [ratio_col, per_col, judged_col, "per-round CPU/req ratios", "median CPU/req ratio"]
    else:
        ratio_col, per_col, judged_col = "ratio", "per-round ratios (median)", "ratio"
        need = [ratio_col, per_col]
    need += ["baseline req/s", "statusd req/s", "server CPU/req baseline", "server CPU/req statusd"]
    for n in need:
        if n not in col:
            r.fail(f"summary table lacks column '{n}'")
    target = float(r.knob("TARGET"))

    def per_round(row, name):
        per = row[col[name]].split("(")[0].split()
        if not per:
            r.fail(f"no {name} for {row[0]}")
        return [number(r, p, name) for p in per]

    names, a, b, ratio, judged, rounds, ca, cb, cjudged, crounds = ([] for _ in range(10))
    for row in rows:
        names.append(re.sub(r" \(\d+ B\)$", "", row[0]).replace(" GET ", "\nGET ").replace(" If-", "\nIf-"))
        a.append(number(r, row[col["baseline req/s"]], "baseline req/s"))
        b.append(number(r, row[col["statusd req/s"]], "statusd req/s"))
        ratio.append(number(r, row[col[ratio_col]], "ratio"))
        judged.append(number(r, row[col[judged_col]], judged_col))
        rounds.append(per_round(row, per_col))
        ca.append(number(r, row[col["server CPU/req baseline"]], "CPU/req"))
        cb.append(number(r, row[col["server CPU/req statusd"]], "CPU/req"))
        if paired:
            cjudged.append(number(r, row[col["median CPU/req ratio"]], "median CPU/req ratio"))
            crounds.append(per_round(row, "per-round CPU/req ratios"))
    for i in range(len(rows)):
        if a[i] <= 0 or abs(b[i] / a[i] - ratio[i]) > 0.002:
            r.fail(f"ratio {ratio[i]} of '{rows[i][0]}' is not statusd / baseline ({b[i]} / {a[i]})")
        if paired:
            for what, per, med in (("req/s", rounds[i], judged[i]), ("CPU/req", crounds[i], cjudged[i])):
                if abs(statistics.median(per) - med) > 0.006:
                    r.fail(f"median {what} ratio {med} of '{rows[i][0]}' is not the median of its rounds")
    x = range(len(names))
    w = 0.38
    if paired:
        fig, (ax1, ax2, ax3, ax4) = plt.subplots(1, 4, figsize=(14, 3.8), gridspec_kw={"width_ratios": [3, 2, 2, 2]})
    else:
        fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(11, 3.8), gridspec_kw={"width_ratios": [3, 2, 2]})
    fig.suptitle(f"statusd against the bare hyper baseline (wrk, {r.knob('ROUNDS')} rounds x "
                 f"{r.knob('DURATION')}, PIN={r.knob('PIN')})", fontsize=10)
    bar_labels(ax1, ax1.bar([i - w / 2 for i in x], [v / 1000 for v in a], w, color=BASE, label="baseline"),
               lambda v: f"{v:.0f}k")
    bar_labels(ax1, ax1.bar([i + w / 2 for i in x], [v / 1000 for v in b], w, color=OURS, label="statusd"),
               lambda v: f"{v:.0f}k")
    ax1.set_xticks(list(x), names, fontsize=7)
    ax1.set_ylabel("requests/s (median over rounds)")
    ax1.set_ylim(0, max(a + b) / 1000 * 1.25)
    ax1.legend(loc="upper center", fontsize=7, ncol=2)
    ax1.set_title("throughput")
    ratio_panel(ax2, names, rounds, judged, target, "req/s ratio",
                "median of the rounds" if paired else "median req/s ratio")
    bar_labels(ax3, ax3.bar([i - w / 2 for i in x], ca, w, color=BASE, label="baseline"), lambda v: f"{v:.1f}")
    bar_labels(ax3, ax3.bar([i + w / 2 for i in x], cb, w, color=OURS, label="statusd"), lambda v: f"{v:.1f}")
    ax3.set_xticks(list(x), [n.split("\n")[0] for n in names], fontsize=7)
    ax3.set_ylabel("server CPU µs per request")
    ax3.set_title("server CPU per request")
    if paired:
        ratio_panel(ax4, names, crounds, cjudged, float(r.knob("CPU_TARGET")), "CPU/req ratio",
                    "median of the rounds")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    return save(fig, out, "throughput.svg", [r.source()])


def tls(results, out):
    """tls-ab: TLS against plain HTTP on the same statusd build."""
    r = newest(results, "tls-ab")
    header, rows = r.table("scenario")
    if header[:6] != ["scenario", "plain req/s", "TLS req/s", "TLS ÷ plain", "plain µs CPU/req", "TLS µs CPU/req"]:
        r.fail(f"unexpected columns {header}")
    names = [row[0] for row in rows]
    plain = [number(r, row[1], "plain req/s") for row in rows]
    tls_ = [number(r, row[2], "TLS req/s") for row in rows]
    ratio = [number(r, row[3], "ratio") for row in rows]
    cp = [number(r, row[4], "CPU/req") for row in rows]
    ct = [number(r, row[5], "CPU/req") for row in rows]
    x = range(len(names))
    w = 0.38
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.6))
    fig.suptitle(f"TLS against plain HTTP, one statusd build ({r.knob('ROUNDS')} rounds x {r.knob('DURATION')})",
                 fontsize=10)
    ax1.bar([i - w / 2 for i in x], [v / 1000 for v in plain], w, color=BASE, label="plain HTTP")
    bars = ax1.bar([i + w / 2 for i in x], [v / 1000 for v in tls_], w, color=OURS, label="TLS")
    for bar, q in zip(bars, ratio):
        ax1.annotate(f"× {q:.3f}", (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center",
                     va="bottom", fontsize=7, xytext=(0, 2), textcoords="offset points")
    ax1.set_xticks(list(x), names)
    ax1.set_ylabel("requests/s (thousands)")
    ax1.set_title("throughput (label: TLS ÷ plain)")
    ax1.legend(fontsize=7)
    bar_labels(ax2, ax2.bar([i - w / 2 for i in x], cp, w, color=BASE, label="plain HTTP"), lambda v: f"{v:.1f}")
    bar_labels(ax2, ax2.bar([i + w / 2 for i in x], ct, w, color=OURS, label="TLS"), lambda v: f"{v:.1f}")
    ax2.set_yscale("log")
    ax2.set_xticks(list(x), names)
    ax2.set_ylabel("statusd CPU µs per request (log)")
    ax2.set_title("server CPU per request")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    return save(fig, out, "tls.svg", [r.source()])


FAULT_PHASES = {"down", "paused", "empty", "restored"}


def unready_spans(cells, phase_s):
    """The (start, end) seconds, from the first phase, when some replica's /readyz answered
    other than 200, from each phase's readiness cell ("r1 200→503 at +5.4 s; r2 200")."""
    # A code alone is what the replica answered through the whole phase, so a change between two
    # phases' samples shows as a different code alone: it is placed at the phase's start.
    unready = []
    state = {}  # replica -> whether it was ready at the end of the phase before
    since = None
    for i, cell in enumerate(cells):
        events = []  # (t, replica, ready)
        for part in cell.split(";"):
            m = re.match(r"\s*(r\d+) (\d{3})(?:→(\d{3}) at \+([0-9.]+) s)?\s*$", part)
            if not m:
                continue
            name, first, last, at = m.groups()
            events.append((i * phase_s, name, first == "200"))
            if last is not None:
                events.append((i * phase_s + float(at), name, last == "200"))
        for t, name, ready in sorted(events, key=lambda e: e[0]):
            state[name] = ready
            all_ready = all(state.values())
            if not all_ready and since is None:
                since = t
            elif all_ready and since is not None:
                unready.append((since, t))
                since = None
    if since is not None:
        unready.append((since, len(cells) * phase_s))
    return unready


def faults(results, out):
    """loadtest/faults: read latency through the phases, with each replica's readiness."""
    r = newest(results, "faults")
    phase_s = float(r.knob("PHASE"))
    header, rows = r.table("phase")
    col = {h: i for i, h in enumerate(header)}
    for n in ("p50 / p99 / max ms", "/readyz", "reads"):
        if n not in col:
            r.fail(f"per-phase table lacks column '{n}'")
    phases, lat = [], []
    for row in rows:
        parts = row[col["p50 / p99 / max ms"]].split("/")
        if len(parts) != 3:
            r.fail(f"phase {row[0]}: latency '{row[col['p50 / p99 / max ms']]}' is not p50 / p99 / max")
        phases.append(row[0])
        lat.append([number(r, p, f"phase {row[0]} latency") for p in parts])
    unready = unready_spans([row[col["/readyz"]] for row in rows], phase_s)
    series = None
    if r.sidecar and r.sidecar.endswith(".json"):
        with open(r.sidecar, encoding="utf-8") as f:
            try:
                series = json.load(f)["series"]
                [(p["t"], p["p50_ms"], p["p99_ms"], p["max_ms"]) for p in series]
            except (ValueError, KeyError, TypeError) as e:
                r.fail(f"{os.path.basename(r.sidecar)}: no per-second series ({e})")
    fig, ax = plt.subplots(figsize=(10, 3.8))
    fig.suptitle(f"Read latency through Redis faults ({r.knob('REPLICAS')} replicas, "
                 f"{r.knob('RATE')} reads/s each, phases of {phase_s:.0f} s)", fontsize=10)
    edges = [i * phase_s for i in range(len(rows) + 1)]
    if series:
        t = [p["t"] for p in series]
        for key, c, lbl in (("max_ms", GREY, "max"), ("p99_ms", RED, "p99"), ("p50_ms", BASE, "p50")):
            ax.plot(t, [p[key] for p in series], color=c, lw=1.2, label=f"{lbl} (per second)")
    else:
        for k, c, lbl in ((2, GREY, "max"), (1, RED, "p99"), (0, BASE, "p50")):
            ax.stairs([v[k] for v in lat], edges, color=c, lw=1.6, label=f"{lbl} of the phase")
    ax.set_yscale("log")
    ax.set_ylabel("read latency, ms (log)")
    ax.set_xlabel("seconds since the first phase")
    for i, p in enumerate(phases):
        if p in FAULT_PHASES:
            ax.axvspan(edges[i], edges[i + 1], color=RED, alpha=0.06, lw=0)
        ax.text((edges[i] + edges[i + 1]) / 2, 1.01, p, transform=ax.get_xaxis_transform(), ha="center",
                va="bottom", fontsize=8, color=RED if p in FAULT_PHASES else "black")
    for j, (a, b) in enumerate(unready):
        ax.axvspan(a, b, ymin=0, ymax=0.04, color=RED, alpha=0.8, lw=0,
                   label="a replica's /readyz 503" if j == 0 else None)
    for e in edges[1:-1]:
        ax.axvline(e, color=GREY, lw=0.6)
    ax.set_xlim(edges[0], edges[-1])
    ax.set_ylim(0.1, None)
    # Between the p50s (under 1 ms) and the p99s (over 10 ms) the plot is empty: the legend.
    ax.legend(fontsize=7, loc="center", ncol=4, bbox_to_anchor=(0.5, 0.36))
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    sources = [r.source()] + ([os.path.basename(r.sidecar)] if series else [])
    return save(fig, out, "faults.svg", sources)


def drill(results, out):
    """loadtest/drill: when the writes were acknowledged and each replica published them, and
    lookup latency before and during the drill (over time, where the drill wrote a series)."""
    r = newest(results, "drill")
    m = r.find(r"```\n(\{.*?\})\n```", "drill JSON block", re.S)
    try:
        d = json.loads(m.group(1))
        ack = float(d["acknowledged_seconds"])
        published = [float(p["seconds"]) for p in d["published"]]
        revoked = int(d["revoked"])
    except (ValueError, KeyError, TypeError) as e:
        r.fail(f"drill JSON: {e}")
    if not published:
        r.fail("drill JSON: no replica published")
    _, rows = r.table(r.find(r"^\| (lookups on replica 1[^|]*) \|", "lookup table", re.M).group(1))
    wrk = {}
    for row in rows:
        kv = dict(re.findall(r"(\w+)=([0-9.]+)", row[1]))
        for k in ("rps", "p50_us", "p99_us", "max_us", "errors"):
            if k not in kv:
                r.fail(f"lookup row '{row[0]}' lacks {k}=")
        wrk[row[0].split(" (")[0]] = {k: float(v) for k, v in kv.items()}
    if set(wrk) != {"before the drill", "during the drill"}:
        r.fail(f"lookup rows {sorted(wrk)}: expected 'before the drill' and 'during the drill'")
    series = None
    if r.sidecar and r.sidecar.endswith(".csv"):
        series = read_csv(r, r.sidecar, ("t", "rps", "p50_us", "p99_us"))
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8), gridspec_kw={"width_ratios": [3, 2]})
    fig.suptitle(f"Mass revocation: {revoked:,} entries over {d.get('lists', '?')} lists at once, "
                 f"{len(published)} replicas", fontsize=10)
    if series:
        t = [float(s["t"]) for s in series]
        ax1.plot(t, [float(s["p50_us"]) / 1000 for s in series], "o-", ms=3, color=BASE, label="lookup p50")
        ax1.plot(t, [float(s["p99_us"]) / 1000 for s in series], "o-", ms=3, color=RED, label="lookup p99")
        ax1.set_ylabel("lookup latency on replica 1, ms")
        ax1.set_xlabel("seconds since the writes started")
        ax1.axvline(ack, color="black", lw=1, ls="--", label=f"Redis acknowledged all ({ack:.1f} s)")
        for i, p in enumerate(published):
            ax1.axvline(p, color=OURS, lw=1, label="a replica published all" if i == 0 else None)
        ax1.legend(fontsize=7)
        ax1.set_yscale("log")
        ax1.set_title("lookups through the drill (one point per wrk run)")
    else:
        labels = ["Redis acknowledged\nevery write"] + [f"replica {i + 1}\npublished every list"
                                                       for i in range(len(published))]
        vals = [ack] + published
        bars = ax1.barh(range(len(vals)), vals, color=[GREY] + [OURS] * len(published))
        for b, v in zip(bars, vals):
            ax1.annotate(f"{v:.1f} s", (v, b.get_y() + b.get_height() / 2), xytext=(3, 0),
                         textcoords="offset points", va="center", fontsize=7)
        ax1.set_yticks(range(len(vals)), labels, fontsize=7)
        ax1.invert_yaxis()
        ax1.set_xlabel("seconds since the writes started")
        ax1.set_title("time until done")
    x = range(3)
    w = 0.38
    keys = (("p50_us", "p50"), ("p99_us", "p99"), ("max_us", "max"))
    for off, (phase, c) in ((-w / 2, ("before the drill", BASE)), (w / 2, ("during the drill", OURS))):
        bar_labels(ax2, ax2.bar([i + off for i in x], [wrk[phase][k] / 1000 for k, _ in keys], w, color=c,
                                label=f"{phase}: {wrk[phase]['rps']:,.0f} req/s"), lambda v: f"{v:.1f}")
    ax2.set_xticks(list(x), [n for _, n in keys])
    ax2.set_yscale("log")
    ax2.set_ylabel("lookup latency, ms (log)")
    ax2.set_title(f"wrk lookups on replica 1, {r.knob('CONNS')} connections")
    ax2.legend(fontsize=7, loc="upper left")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    sources = [r.source()] + ([os.path.basename(r.sidecar)] if series else [])
    return save(fig, out, "drill.svg", sources)


def read_csv(r, path, need):
    import csv
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        r.fail(f"{os.path.basename(path)} has no rows")
    for row in rows:
        for k in need:
            try:
                float(row[k])
            except (KeyError, TypeError, ValueError):
                r.fail(f"{os.path.basename(path)}: row {row} lacks a number in column {k}")
    return rows


def propagation(results, out):
    """loadtest/propagation: the write→visible distribution, from statusd's own histogram
    (every change) and the driver's sampled latencies."""
    r = newest(results, "propagation")
    m = r.find(r"```json\n(\{.*?\})\n```", "driver JSON block", re.S)
    try:
        d = json.loads(m.group(1))
        pct = {k: float(d["latency_ms"][k]) for k in ("p50", "p90", "p99", "max")}
        samples = int(d["samples"])
    except (ValueError, KeyError, TypeError) as e:
        r.fail(f"driver JSON: {e}")
    buckets = [(le, float(v)) for le, v in
               re.findall(r'^statusd_propagation_seconds_bucket\{le="([^"]+)"\} ([0-9.e+]+)$', r.text, re.M)]
    count = r.find(r"^statusd_propagation_seconds_count ([0-9.e+]+)$", "statusd_propagation_seconds_count", re.M)
    total = float(count.group(1))
    if len(buckets) < 2 or buckets[-1][0] != "+Inf" or total <= 0:
        r.fail("statusd_propagation_seconds histogram incomplete (buckets up to +Inf and a count)")
    finite = [(float(le) * 1000, v / total) for le, v in buckets[:-1]]
    if any(b[1] < a[1] for a, b in zip(finite, finite[1:])):
        r.fail("statusd_propagation_seconds buckets are not cumulative")
    samples_ms = None
    if r.sidecar and r.sidecar.endswith(".csv"):
        samples_ms = sorted(float(x["latency_ms"]) for x in read_csv(r, r.sidecar, ("latency_ms",)))
    upto = next((i for i, (_, f) in enumerate(finite) if f >= 1.0), len(finite) - 1)
    shown = finite[: upto + 2]
    fig, ax = plt.subplots(figsize=(8, 3.8))
    fig.suptitle(f"Write → visible on a replica ({r.knob('RATE')} changes/s over {r.knob('LISTS')} lists "
                 f"of {int(r.knob('SIZE')):,}, {r.knob('DURATION')} s)", fontsize=10)
    ax.step([0] + [b for b, _ in shown], [0] + [100 * f for _, f in shown], where="post", color=OURS, lw=1.6,
            label=f"statusd_propagation_seconds: {total:,.0f} changes (bucket bounds)")
    if samples_ms:
        n = len(samples_ms)
        ax.plot(samples_ms, [100 * (i + 1) / n for i in range(n)], color=BASE, lw=1,
                label=f"driver's sample, every one of {n:,} changes")
    for k in ("p50", "p90", "p99"):
        q = {"p50": 50, "p90": 90, "p99": 99}[k]
        ax.plot([pct[k]], [q], "o", color=BASE, ms=5)
        ax.annotate(f"{k} {pct[k]:.1f} ms", (pct[k], q), xytext=(6, -10), textcoords="offset points",
                    fontsize=7, color=BASE)
    ax.plot([], [], "o", color=BASE, ms=5, label=f"driver's sample of {samples:,} changes: p50 / p90 / p99")
    ax.axvline(pct["max"], color=GREY, lw=0.8, ls="--", label=f"slowest sampled: {pct['max']:.0f} ms")
    ax.set_xscale("log")
    ax.set_xlabel("write acknowledged by Redis → visible on the replica, ms (log)")
    ax.set_ylabel("% of changes visible")
    ax.set_ylim(0, 102)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    return save(fig, out, "propagation.svg", [r.source()] + ([os.path.basename(r.sidecar)] if samples_ms else []))


def cdn(results, out):
    """loadtest/run cdn: the edge's hit ratio and the load that reaches statusd, per TTL."""
    runs = newest_each(results, "cdn", lambda r: int(r.knob("TTL")))
    ttls = sorted(runs, reverse=True)
    edge, origin, offload, statuses, hit = [], [], [], [], []
    for ttl in ttls:
        r = runs[ttl]
        _, rows = r.table("figure")
        fig_ = {row[0]: row[1] for row in rows}

        def get(prefix, r=r, fig_=fig_):
            v = next((v for k, v in fig_.items() if k.replace("**", "").startswith(prefix)), None)
            if v is None:
                r.fail(f"no '{prefix}' row")
            return v
        dur = number(r, r.knob("DURATION"), "DURATION")
        polls = get("polls")
        edge.append(number(r, polls.split("=")[-1], "polls/s"))
        reached = get("requests that reached statusd")
        warm = re.search(r"incl\. ([0-9,]+) warm-up", reached)
        if not warm:
            r.fail(f"'requests that reached statusd' lacks the warm-up count: {reached}")
        origin.append((number(r, reached, "origin requests") - number(r, warm.group(1), "warm-up")) / dur)
        offload.append(number(r, get("origin offload"), "origin offload"))
        h = get("edge hit ratio")
        hit.append(number(r, h, "edge hit ratio"))
        statuses.append({k: float(v.replace(",", "")) for k, v in re.findall(r"([A-Z]+) ([0-9,]+)", h)})
        if not statuses[-1]:
            r.fail(f"edge hit ratio lists no cache status: {h}")
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    fig.suptitle("The nginx edge in front of statusd (deploy/cdn/nginx.conf), 1,000 conditional polls/s",
                 fontsize=10)
    x = range(len(ttls))
    w = 0.38
    bar_labels(ax1, ax1.bar([i - w / 2 for i in x], edge, w, color=BASE, label="polls at the edge"),
               lambda v: f"{v:,.0f}/s")
    bar_labels(ax1, ax1.bar([i + w / 2 for i in x], origin, w, color=OURS, label="requests reaching statusd"),
               lambda v: f"{v:,.1f}/s")
    ax1.set_xticks(list(x), [f"ttl {t} s\noffload {o:.2f} %" for t, o in zip(ttls, offload)])
    ax1.set_ylim(0, max(edge) * 1.3)
    ax1.set_ylabel("requests/s after the warm-up")
    ax1.set_title("origin load")
    ax1.legend(fontsize=7, loc="upper center", ncol=2)
    kinds = ["HIT", "STALE", "UPDATING", "EXPIRED", "REVALIDATED", "MISS", "BYPASS"]
    colours = {"HIT": "#55a868", "STALE": "#8172b3", "UPDATING": "#64b5cd", "MISS": RED}
    bottom = [0.0] * len(ttls)
    for k in kinds:
        share = [100 * s.get(k, 0) / sum(s.values()) for s in statuses]
        if not any(share):
            continue
        ax2.bar(list(x), share, 0.5, bottom=bottom, color=colours.get(k, GREY), label=k)
        bottom = [b + s for b, s in zip(bottom, share)]
    for i, hr in enumerate(hit):
        ax2.annotate(f"hit ratio {hr:.2f} %", (i, 100), ha="center", va="bottom", fontsize=7,
                     xytext=(0, 2), textcoords="offset points")
    ax2.set_ylim(90, 101.5)
    ax2.set_xticks(list(x), [f"ttl {t} s" for t in ttls])
    ax2.set_ylabel("% of polls (X-Cache-Status), axis from 90 %")
    ax2.set_title("edge cache status")
    ax2.legend(fontsize=7, loc="center")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    return save(fig, out, "cdn.svg", [runs[t].source() for t in ttls])


def soak(results, out):
    """loadtest/soak: RSS, open descriptors, Redis connections and read p99, sampled through the
    run, against the registrations written meanwhile."""
    r = newest(results, "soak")
    # The soak prints its series as table rows after a header row (no separator row).
    lines = r.text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("| t | RSS KiB |")), None)
    if start is None:
        r.fail("no series header '| t | RSS KiB |'")
    header = cells(lines[start])
    rows = [cells(line) for line in lines[start + 1:] if re.match(r"^\| \d+ s \|", line)]
    if len(rows) < 2:
        r.fail("fewer than two samples in the series")
    if any(len(row) != len(header) for row in rows):
        r.fail("a sample row does not have one cell per column")
    col = {h: i for i, h in enumerate(header)}
    for n in ("RSS KiB", "fds", "Redis clients", "read p99", "writes"):
        if n not in col:
            r.fail(f"series lacks column '{n}'")

    def ms(text):
        m = re.fullmatch(r"([0-9.]+)(ms|µs|s)", text)
        if not m:
            r.fail(f"read p99 '{text}' is not a duration")
        return float(m.group(1)) * {"ms": 1, "µs": 0.001, "s": 1000}[m.group(2)]

    t = [number(r, row[col["t"]].removesuffix(" s"), "t") / 60 for row in rows]
    rss = [number(r, row[col["RSS KiB"]], "RSS KiB") / 1024 for row in rows]
    fds = [number(r, row[col["fds"]], "fds") for row in rows]
    clients = [number(r, row[col["Redis clients"]], "Redis clients") for row in rows]
    p99 = [ms(row[col["read p99"]]) for row in rows]
    writes = [number(r, row[col["writes"]], "writes") for row in rows]
    verdict = r.find(r"^- verdict: (\S+)", "verdict", re.M).group(1)
    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(11, 3.6))
    fig.suptitle(f"Soak: {r.knob('SECS')} s sampled every {r.knob('SAMPLE')} s, {writes[-1]:,.0f} "
                 f"registrations + suspensions, verdict {verdict}", fontsize=10)
    ax1.plot(t, rss, color=OURS, lw=1.4)
    ax1.set_ylim(0, max(rss) * 1.3)
    ax1.set_xlabel("minutes")
    ax1.set_ylabel("MiB")
    ax1.set_title("statusd RSS")
    ax1b = ax1.twinx()
    ax1b.plot(t, [w / 1000 for w in writes], color=GREY, lw=0.8, ls="--")
    ax1b.set_ylabel("credentials written (thousands, dashed)", fontsize=7)
    ax2.plot(t, fds, color=OURS, lw=1.4, label="open descriptors")
    ax2.plot(t, clients, color=BASE, lw=1.4, label="Redis connections")
    ax2.set_ylim(0, max(fds + clients) * 1.4)
    ax2.set_xlabel("minutes")
    ax2.set_title("descriptors and connections")
    ax2.legend(fontsize=7, loc="lower right")
    ax3.plot(t, p99, color=OURS, lw=1.2)
    ax3.set_ylim(0, max(p99) * 1.2)
    ax3.set_xlabel("minutes")
    ax3.set_ylabel("ms")
    ax3.set_title("read p99 per sample")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    return save(fig, out, "soak.svg", [r.source()])


CHARTS = [throughput, tls, faults, drill, propagation, cdn, soak]


def main(argv=None):
    p = argparse.ArgumentParser(prog="loadtest/charts", description=__doc__.split("\n\n")[0])
    p.add_argument("--results", default=RESULTS, help="directory of result files (default: loadtest/results)")
    p.add_argument("--out", default=None, help="where the SVGs go (default: RESULTS/charts)")
    a = p.parse_args(argv)
    out = a.out or os.path.join(a.results, "charts")
    os.makedirs(out, exist_ok=True)
    setup()
    failed = 0
    for chart in CHARTS:
        try:
            path = chart(a.results, out)
            print(f"charts: wrote {os.path.relpath(path)}")
        except Malformed as e:
            print(f"charts: {chart.__name__}: malformed result: {e}", file=sys.stderr)
            failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
