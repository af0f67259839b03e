#!/usr/bin/env python3
"""Writes the result file of one `loadtest/run` from k6's summary exports.

    report.py META_TSV RUNS_TSV OUT_MD

META_TSV: key<TAB>value lines (machine, commit, command, setup figures). RUNS_TSV: one line per
k6 run: name, kind (statusd | baseline | edge), summary JSON, k6 exit code, server CPU seconds
of each labelled process group during the run (`label=seconds,...`), requests that reached
statusd's list routes. Prints the verdict and exits 0
(pass), 1 (a threshold failed; rollout: an acknowledged write not visible on the public plane) or
2 (lookups: clean, but statusd below TARGET x baseline; rollout: clean, but read p99 with writes
above RATIO_MAX x read p99 without, not judged in a smoke run).
"""
import json
import statistics
import sys


def load(path):
    with open(path) as f:
        return json.load(f)


def metric(summary, name, field, default=0.0):
    return summary["metrics"].get(name, {}).get(field, default)


def thresholds(summary):
    """(metric, expression, ok) for every threshold k6 evaluated."""
    out = []
    for name, m in sorted(summary["metrics"].items()):
        for expr, crossed in m.get("thresholds", {}).items():
            out.append((name, expr, not crossed))
    return out


def seconds(duration):
    return float(duration.rstrip("s"))


def fmt_bytes(n):
    for unit, div in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= div:
            return f"{n / div:.2f} {unit}"
    return f"{n:.0f} B"


def main():
    meta = {}
    with open(sys.argv[1]) as f:
        for line in f:
            k, _, v = line.rstrip("\n").partition("\t")
            meta[k] = v
    runs = []
    with open(sys.argv[2]) as f:
        for line in f:
            name, kind, path, rc, cpu, origin = line.rstrip("\n").split("\t")
            runs.append(
                dict(name=name, kind=kind, s=load(path), rc=int(rc), origin=int(origin),
                     cpu={k: float(v) for k, v in (g.split("=") for g in cpu.split(","))})
            )
    scenario = meta["scenario"]
    duration = seconds(meta["command"].split("DURATION=")[1].split()[0])
    lines = []
    failed = any(r["rc"] != 0 for r in runs)
    missed = False
    invisible = False
    smoke = meta["smoke"] == "1"

    if scenario in ("verifiers", "cdn"):
        r = runs[0]
        s = r["s"]
        polls_200 = metric(s, "not_modified", "fails")
        polls_304 = metric(s, "not_modified", "passes")
        polls = polls_200 + polls_304
        d = s["metrics"].get("http_req_duration{kind:poll}", {})
        reqs = metric(s, "http_reqs", "count")
        received = metric(s, "data_received", "count")
        rows = [
            ("polls (conditional GETs after the warm-up)", f"{polls:,.0f} in {duration:.0f} s = **{polls / duration:,.0f}/s**"),
            ("200 / 304", f"{polls_200:,.0f} / {polls_304:,.0f} ({100 * metric(s, 'not_modified', 'value'):.1f} % 304)"),
            ("latency of the polls: p50 / p90 / p99 / max",
             f"{d.get('med', 0):.2f} / {d.get('p(90)', 0):.2f} / **{d.get('p(99)', 0):.2f}** / {d.get('max', 0):.2f} ms"),
            ("failed requests", f"{metric(s, 'http_req_failed', 'passes'):.0f} of {reqs:,.0f} (incl. warm-up)"),
            ("checks", f"{metric(s, 'checks', 'passes'):,.0f} passed, {metric(s, 'checks', 'fails'):,.0f} failed"),
            ("dropped iterations (k6 could not keep the rate)", f"{metric(s, 'dropped_iterations', 'count'):.0f}"),
            ("received", f"{fmt_bytes(received)} ({fmt_bytes(received / max(reqs, 1))} per response, "
                         f"{fmt_bytes(received / duration)}/s)"),
            ("server CPU during the run (incl. the warm-up)", "; ".join(
                f"{k} {v:.2f} s = {1e6 * v / max(reqs, 1):.1f} µs per request"
                for k, v in r["cpu"].items() if k not in ("k6", "other"))),
            ("CPU used by k6 / by other processes on the machine", f"{100 * r['cpu']['k6'] / duration:.0f} % / "
                                                                   f"{100 * r['cpu']['other'] / duration:.0f} % of one CPU"),
            ("requests that reached statusd's list routes", f"{r['origin']:,} (incl. {reqs - polls:,.0f} warm-up)"),
        ]
        if scenario == "cdn":
            hit = metric(s, "edge_hit", "value")
            statuses = ["hit", "stale", "updating", "revalidated", "expired", "miss", "bypass"]
            counts = ", ".join(
                f"{st.upper()} {metric(s, 'edge_status_' + st, 'count'):,.0f}" for st in statuses if metric(s, "edge_status_" + st, "count")
            )
            rows.insert(3, ("**edge hit ratio** (polls answered from the edge's cache)", f"**{100 * hit:.2f} %** ({counts})"))
            rows.insert(3, ("the edge's own latency (nginx `$request_time`, 1 ms resolution)", meta.get("edge_request_time", "?")))
            rows.insert(5, ("origin offload (1 - statusd requests / edge requests, whole run)",
                            f"{100 * (1 - r['origin'] / max(reqs, 1)):.2f} %"))
        lines.append("| figure | value |")
        lines.append("|---|---|")
        lines += [f"| {k} | {v} |" for k, v in rows]
    elif scenario == "rollout":
        r = runs[0]
        s = r["s"]
        chk = json.loads(meta.get("rollout_check", "{}") or "{}")
        lead = float(meta.get("lead_seconds", 0))
        write_secs = duration + lead
        ph = {p: s["metrics"].get(f"http_req_duration{{plane:read,phase:{p}}}", {}) for p in "AB"}
        n = {p: metric(s, f"http_reqs{{plane:read,phase:{p}}}", "count") for p in "AB"}
        w = s["metrics"].get("http_req_duration{plane:write}", {})
        writes = metric(s, "http_reqs{plane:write}", "count")
        acked = metric(s, "writes_acked", "count")
        p99a, p99b = ph["A"].get("p(99)", 0), ph["B"].get("p(99)", 0)
        ratio = p99b / p99a if p99a > 0 else float("inf")
        ratio_max = float(meta.get("ratio_max", 1.5))
        # The ratio compares the same load with and without writes: only if k6 kept the planned
        # rate in both phases (no dropped-iterations threshold crossed).
        rate_kept = all(ok for name, _, ok in thresholds(s) if name.startswith("dropped_iterations"))
        missed = ratio > ratio_max and not smoke and rate_kept
        invisible = not chk.get("ok", False)
        reqs = metric(s, "http_reqs", "count")
        wall = float(meta.get(f"k6_wall_{r['name']}", 2 * duration + lead))
        phase_cpu = json.loads(meta.get("rollout_phase_cpu", "[null, null]") or "[null, null]")
        ops = ", ".join(
            f"{op.replace('_', ' ')} {metric(s, 'writes_' + op, 'count'):,.0f}"
            for op in ("register_physical", "register_mobile", "loss_physical", "loss_mobile", "reinstate_physical")
        )

        def lat(d):
            return (f"{d.get('med', 0):.2f} / {d.get('p(90)', 0):.2f} / **{d.get('p(99)', 0):.2f}** / "
                    f"{d.get('max', 0):.2f} ms")

        def dropped(sc):
            return f"{metric(s, f'dropped_iterations{{scenario:{sc}}}', 'count'):.0f}"

        verdict_ratio = ("not judged in a smoke run" if smoke else
                         "not judged: k6 dropped iterations, so the phases did not carry the planned load"
                         if not rate_kept else ("**exceeded**" if missed else "met"))
        mism = chk.get("mismatch_kinds", {})
        rows = [
            ("phase A, reads only: reads", f"{n['A']:,.0f} in {duration:.0f} s = {n['A'] / duration:,.0f}/s"),
            ("phase A: read latency p50 / p90 / p99 / max", lat(ph["A"])),
            ("phase B, writes flowing: reads", f"{n['B']:,.0f} in {duration:.0f} s = {n['B'] / duration:,.0f}/s"),
            ("phase B: read latency p50 / p90 / p99 / max", lat(ph["B"])),
            (f"**read p99 with writes ÷ without** (target ≤ {ratio_max:g})",
             f"**{ratio:.2f}** ({verdict_ratio})"),
            ("writes (admin API, from LEAD s before phase B to its end)",
             f"{writes:,.0f} in {write_secs:.0f} s = **{writes / write_secs:,.1f}/s**; acknowledged {acked:,.0f} ({ops})"),
            ("write latency p50 / p90 / p99 / max", lat(w)),
            ("failed requests (reads / writes / all incl. warm-up)",
             f"{metric(s, 'http_req_failed{plane:read}', 'passes'):.0f} / "
             f"{metric(s, 'http_req_failed{plane:write}', 'passes'):.0f} / "
             f"{metric(s, 'http_req_failed', 'passes'):.0f} of {reqs:,.0f}"),
            ("checks", f"{metric(s, 'checks', 'passes'):,.0f} passed, {metric(s, 'checks', 'fails'):,.0f} failed"),
            ("304 share of the list polls", f"{100 * metric(s, 'not_modified', 'value'):.1f} %"),
            ("dropped iterations (phase A / phase B / writes)", f"{dropped('reads_a')} / {dropped('reads_b')} / {dropped('writes')}"),
            ("**acknowledged writes visible on the public plane afterwards**",
             (f"**{'yes' if not invisible else 'NO'}**: {chk.get('writes_acknowledged', 0):,} writes acknowledged "
              f"touching {chk.get('credentials', 0):,} credentials, {chk.get('credentials_checked', 0):,} checked "
              f"({', '.join(f'{v:,} {k}' for k, v in chk.get('expected', {}).items())}) in "
              f"{chk.get('lists', 0)} list(s) by batch lookups, **{chk.get('mismatches', '?')} mismatches**"
              + (f" ({'; '.join(f'{v:,} {k}' for k, v in mism.items())})" if mism else "")
              + f", {chk.get('credentials_uncertain', 0)} left out (a failed write), "
              f"{chk.get('malformed_lines', 0)} malformed lines; all visible after {chk.get('check_seconds', '?')} s "
              f"({chk.get('check_passes', '?')} pass(es))") if chk else "**not checked**"),
            ("CPU per phase, % of one CPU: statusd / Redis / k6 / **other processes**",
             " — ".join(
                 f"phase {p}: " + (f"{c['statusd']:.0f} / {c['redis']:.0f} / {c['k6']:.0f} / **{c['other']:.0f}**"
                                   if c else "?")
                 for p, c in zip("AB", phase_cpu))),
            ("server CPU during the whole run (both phases and the warm-up)", "; ".join(
                f"{k} {v:.2f} s" for k, v in r["cpu"].items() if k not in ("k6", "other"))),
            (f"CPU used by k6 / by other processes on the machine (whole k6 run, {wall:.1f} s with set-up and stop)",
             f"{100 * r['cpu']['k6'] / wall:.0f} % / {100 * r['cpu']['other'] / wall:.0f} % of one CPU"),
        ]
        lines.append("| figure | value |")
        lines.append("|---|---|")
        lines += [f"| {k} | {v} |" for k, v in rows]
    else:
        lines.append("| run | server | requests/s | lookups/s (batch = 20) | p50 / p99 | failed | checks failed "
                     "| server CPU per request | CPU % k6 / other processes |")
        lines.append("|---|---|---:|---:|---|---:|---:|---:|---:|")
        rates = {"statusd": [], "baseline": []}
        for r in runs:
            s = r["s"]
            reqs = metric(s, "http_reqs", "count")
            rate = reqs / duration
            rates[r["kind"]].append(rate)
            lookups = metric(s, "lookups_single", "count") + metric(s, "lookups_batched", "count")
            d = s["metrics"].get("http_req_duration", {})
            lines.append(
                f"| {r['name']} | {r['kind']} | {rate:,.0f} | {lookups / duration:,.0f} | "
                f"{d.get('med', 0):.2f} / {d.get('p(99)', 0):.2f} ms | {metric(s, 'http_req_failed', 'passes'):.0f} | "
                f"{metric(s, 'checks', 'fails'):.0f} | {1e6 * r['cpu'][r['kind']] / max(reqs, 1):.1f} µs | "
                f"{100 * r['cpu']['k6'] / duration:.0f} / {100 * r['cpu']['other'] / duration:.0f} |"
            )
        pairs = []
        by_round = {}
        for r in runs:
            by_round.setdefault(r["name"].split("-")[1], {})[r["kind"]] = metric(r["s"], "http_reqs", "count")
        for rnd in sorted(by_round):
            p = by_round[rnd]
            pairs.append(p["statusd"] / p["baseline"])
        ratio = statistics.median(rates["statusd"]) / statistics.median(rates["baseline"])
        target = float(meta["target"])
        missed = ratio < target and meta["smoke"] != "1"
        statusd_runs = [r for r in runs if r["kind"] == "statusd"]
        nv = statistics.mean(metric(r["s"], "non_valid", "value") for r in statusd_runs)
        per_req = {
            kind: statistics.median(
                1e6 * r["cpu"][kind] / max(metric(r["s"], "http_reqs", "count"), 1) for r in runs if r["kind"] == kind
            )
            for kind in ("statusd", "baseline")
        }
        lines.append("")
        lines.append(
            f"**statusd / baseline = {ratio:.3f}** (medians of requests/s; per-round ratios "
            f"{', '.join(f'{p:.3f}' for p in pairs)}; target {target:.2f}"
            + (", not judged in a smoke run" if meta["smoke"] == "1" else "")
            + f"). Share of non-VALID answers from statusd: {100 * nv:.2f} % (Zipf-weighted)."
        )
        lines.append("")
        lines.append(
            f"Server CPU per request (medians): statusd {per_req['statusd']:.1f} µs, baseline "
            f"{per_req['baseline']:.1f} µs: statusd uses {per_req['statusd'] / per_req['baseline']:.2f} x the "
            "baseline's CPU (statusd's includes its Redis polling while idle). When k6 is the bottleneck "
            "(CPU % k6 near 100), requests/s mostly measure k6 and this is the telling figure."
        )
    lines.append("")
    lines.append("Thresholds (k6):")
    lines.append("")
    lines.append("| run | metric | threshold | result |")
    lines.append("|---|---|---|---|")
    for r in runs:
        for name, expr, ok in thresholds(r["s"]):
            lines.append(f"| {r['name']} | `{name}` | `{expr}` | {'ok' if ok else '**FAILED**'} |")

    if failed and invisible:
        verdict = "FAIL: a k6 threshold failed, and acknowledged writes are not all visible"
    elif failed:
        verdict = "FAIL: a k6 threshold failed"
    elif invisible:
        verdict = "FAIL: acknowledged writes are not all visible on the public plane"
    elif missed and scenario == "rollout":
        verdict = f"thresholds held and every write is visible, but read p99 with writes > {meta['ratio_max']} x without"
    elif missed:
        verdict = f"thresholds held, but statusd is below {meta['target']} x the baseline"
    else:
        verdict = "PASS"
    dirty = int(meta["dirty"])
    commit = meta["commit"] + (f" (dirty: {dirty} tracked file(s) modified)" if dirty else "")
    head = [
        f"# loadtest/run {scenario}{' --smoke' if meta['smoke'] == '1' else ''}: {verdict}",
        "",
        f"- started {meta['started']}, finished {meta['finished']}",
        f"- machine: {meta['cpus']} CPUs ({meta['cpu_model']}), {meta['mem_gib']} GiB RAM, kernel {meta['kernel']}",
        f"- commit: {commit}",
        f"- command: `{meta['command']}`",
        f"- tools: {meta['k6']}; {meta['redis']}" + (f"; {meta['nginx']}" if "nginx" in meta else "") + f"; {meta['rustc']}",
        f"- statusd ({meta['build']} build) on Redis: {meta['lists']} lists x {meta['size']} entries (2 bits, 1 % INVALID, "
        f"0.2 % SUSPENDED) seeded in {meta.get('seed_seconds', '?')} s, ready {meta.get('cold_start_seconds', '?')} s "
        f"after start, RSS {meta.get('statusd_rss_mib', '?')} MiB; ttl {meta['ttl']} s; Redis used_memory after the seed "
        f"{meta.get('redis_used_memory_mib', '?')} MiB",
        f"- pinning: {'servers on CPU 0, k6 on CPU 1 (taskset)' if meta['pin'] == 'split' else 'none'}",
    ]
    if scenario == "rollout":
        head.append(f"- admin API: a `write`-scope token generated for the run (not recorded); the issuer allocates in "
                    f"its pool `default`, lists of {meta['size']} entries it creates next to the seeded ones; "
                    f"writes from {meta.get('lead_seconds', '?')} s before phase B to its end")
    if "baseline_bodies" in meta:
        head.append(f"- baseline: examples/baseline.rs, bodies {meta['baseline_bodies']}")
    head.append("")
    with open(sys.argv[3], "w") as f:
        f.write("\n".join(head + lines) + "\n")
    print("\n".join(lines))
    print()
    print(verdict)
    sys.exit(1 if failed or invisible else 2 if missed else 0)


if __name__ == "__main__":
    main()
