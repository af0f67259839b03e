#!/usr/bin/env python3
"""Checks after a `loadtest/run rollout` that every write rollout.js saw acknowledged is visible
on the PUBLIC plane.

    rollout_check.py CONSOLE_LOG PUBLIC_ADDR WAIT_SECONDS OUT_JSON

CONSOLE_LOG is k6's console output: one `ROLLOUT_ACK <vu> <seq> <op> (<credential_id> <list_id>
<idx> <status>)...` line per acknowledged write, `ROLLOUT_UNCERTAIN <credential_id>...` for the
credentials of a write that failed (left out: they may or may not have been applied, and the
failed request fails the run anyway). A credential is only ever written by the VU that
registered it, so its expected status is the one of its VU's last acknowledged write touching it
(highest seq). Each is looked up with batch lookups (`POST /statuses/{list_id}`, at most 1,000
indices each) until all show their expected status or WAIT_SECONDS have passed (the replica
publishes what the issuer wrote to Redis within its propagation delay).

Writes aggregate counts only to OUT_JSON and stdout (no credential ids or indices). Exits 0 when
every acknowledged write is visible and there was at least one, 1 otherwise.
"""
import collections
import json
import re
import sys
import time
import urllib.error
import urllib.request

MAX_BATCH = 1000
MSG = re.compile(r'msg="((?:[^"\\]|\\.)*)"')


def messages(path):
    """The console messages: k6 writes logrus text lines (msg="..." with Go escapes)."""
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            m = MSG.search(line)
            yield json.loads(f'"{m.group(1)}"') if m else line.rstrip("\n")


def lookup(addr, list_id, idxs):
    req = urllib.request.Request(
        f"http://{addr}/statuses/{list_id}",
        data=json.dumps({"idx": idxs}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return [s["status"] for s in json.load(r)["statuses"]]
    except urllib.error.HTTPError as e:
        # An unknown list (not yet published) or an index out of range: nothing visible yet.
        return [f"HTTP {e.code}"] * len(idxs)


def main():
    log, addr, wait, out = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
    latest = {}  # credential -> (vu, seq, list, idx, status)
    ops = collections.Counter()
    uncertain = set()
    acked = 0
    malformed = 0
    for msg in messages(log):
        fields = msg.split()
        if not fields:
            continue
        if fields[0] == "ROLLOUT_UNCERTAIN":
            uncertain.update(fields[1:])
        elif fields[0] == "ROLLOUT_ACK":
            rest = fields[4:]
            if len(fields) < 8 or len(rest) % 4:
                malformed += 1
                continue
            vu, seq, op = int(fields[1]), int(fields[2]), fields[3]
            acked += 1
            ops[op] += 1
            for i in range(0, len(rest), 4):
                cred, list_id, idx, status = rest[i:i + 4]
                prev = latest.get(cred)
                if prev is not None and prev[0] != vu:
                    malformed += 1  # a credential written by two VUs: the model is broken
                if prev is None or seq > prev[1]:
                    latest[cred] = (vu, seq, list_id, int(idx), status)
    expected = {c: v for c, v in latest.items() if c not in uncertain}
    by_list = collections.defaultdict(list)
    for cred, (_, _, list_id, idx, status) in expected.items():
        by_list[list_id].append((idx, status))

    t0 = time.monotonic()
    passes = 0
    while True:
        passes += 1
        wrong = collections.Counter()
        for list_id, entries in by_list.items():
            for i in range(0, len(entries), MAX_BATCH):
                chunk = entries[i:i + MAX_BATCH]
                seen = lookup(addr, list_id, [idx for idx, _ in chunk])
                for (_, want), got in zip(chunk, seen):
                    if got != want:
                        wrong[f"expected {want}, saw {got}"] += 1
        elapsed = time.monotonic() - t0
        if not wrong or elapsed >= wait:
            break
        time.sleep(0.2)

    result = {
        "writes_acknowledged": acked,
        "writes_by_op": dict(sorted(ops.items())),
        "credentials": len(latest),
        "credentials_uncertain": len(uncertain),
        "credentials_checked": len(expected),
        "expected": dict(sorted(collections.Counter(v[4] for v in expected.values()).items())),
        "lists": len(by_list),
        "mismatches": sum(wrong.values()),
        "mismatch_kinds": dict(sorted(wrong.items())),
        "malformed_lines": malformed,
        "check_passes": passes,
        "check_seconds": round(elapsed, 2),
    }
    ok = acked > 0 and not wrong and malformed == 0 and len(expected) > 0
    result["ok"] = ok
    with open(out, "w") as f:
        json.dump(result, f)
    print(json.dumps(result))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
