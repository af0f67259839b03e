#!/usr/bin/env python3
"""CPU use over time, so that a run with phases (loadtest/run rollout) can tell what each phase
cost and what other processes took meanwhile.

    cpu_sampler.py OUT_TSV ROOT_PID LABEL=PID...     (runs until killed)
    cpu_sampler.py --phases OUT_TSV START:END...     (prints the phases' figures as JSON)

Sampling: every 0.5 s, one line: epoch seconds, busy ticks of the whole machine (user, nice,
system, steal), the ticks (user + system) of each labelled process, and of every `k6` process
descending from ROOT_PID. --phases: for each [START, END] (epoch seconds), CPU in % of one CPU
of each label, of k6, and of everything else on the machine ("other"), from the samples
nearest inside the interval.
"""
import json
import os
import sys
import time

HZ = os.sysconf("SC_CLK_TCK")


def machine_busy():
    with open("/proc/stat") as f:
        v = f.readline().split()
    return int(v[1]) + int(v[2]) + int(v[3]) + int(v[8])


def stat(pid):
    """(comm, ppid, ticks) of a process, or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
    except OSError:
        return None
    comm = s[s.index("(") + 1:s.rindex(")")]
    rest = s[s.rindex(")") + 2:].split()
    return comm, int(rest[1]), int(rest[11]) + int(rest[12])


def k6_ticks(root):
    procs = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            st = stat(d)
            if st:
                procs[int(d)] = st
    total = 0
    for pid, (comm, _, ticks) in procs.items():
        if comm != "k6":
            continue
        p, seen = pid, 0
        while p > 1 and seen < 64:
            if p == root:
                total += ticks
                break
            p = procs.get(p, ("", 0, 0))[1]
            seen += 1
    return total


def sample(out, root, labelled):
    labels = [lp.split("=", 1) for lp in labelled]
    with open(out, "w", buffering=1) as f:
        f.write("\t".join(["t", "machine"] + [lab for lab, _ in labels] + ["k6"]) + "\n")
        while True:
            row = [f"{time.time():.3f}", str(machine_busy())]
            for _, pid in labels:
                st = stat(pid)
                row.append(str(st[2] if st else 0))
            row.append(str(k6_ticks(root)))
            f.write("\t".join(row) + "\n")
            time.sleep(0.5)


def phases(path, intervals):
    with open(path) as f:
        head = f.readline().rstrip("\n").split("\t")
        # A line cut short when the sampler was stopped is left out.
        rows = [[float(x) for x in line.split("\t")] for line in f if len(line.split("\t")) == len(head)]
    out = []
    for iv in intervals:
        start, end = (float(x) for x in iv.split(":"))
        inside = [r for r in rows if start <= r[0] <= end]
        if len(inside) < 2:
            out.append(None)
            continue
        a, b = inside[0], inside[-1]
        secs = b[0] - a[0]
        cpu = {name: (b[i] - a[i]) / HZ / secs * 100 for i, name in enumerate(head) if i >= 1}
        mine = sum(v for k, v in cpu.items() if k != "machine")
        res = {k: round(v, 1) for k, v in cpu.items() if k != "machine"}
        res["other"] = round(max(0.0, cpu["machine"] - mine), 1)
        res["seconds"] = round(secs, 1)
        out.append(res)
    print(json.dumps(out))


if __name__ == "__main__":
    if sys.argv[1] == "--phases":
        phases(sys.argv[2], sys.argv[3:])
    else:
        sample(sys.argv[1], int(sys.argv[2]), sys.argv[3:])
