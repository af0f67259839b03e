#!/usr/bin/env python3
"""Instruction cache lines a server runs through per request, from a callgrind file.

    codelines.py CALLGRIND_FILE REQUESTS [TOP]

The file must come from `valgrind --tool=callgrind --dump-instr=yes --compress-pos=no
--compress-strings=no` (loadtest/profile writes it so). Every instruction address with its
execution count is in it; an instruction "runs per request" when it ran at least REQUESTS / 2
times, and the 64-byte lines and 4 KiB pages those instructions sit in are what one request
needs from the instruction cache and the instruction TLB.

Why it matters (issue #18): one request of either server runs ~50 KB of code, more than a
core's 32 KiB L1 instruction cache, and the kernel's loopback path evicts it between requests.
So a request pays for every line it touches, roughly, whatever the number of instructions in
it: statusd's share of the CPU per request follows its line count more closely than its
instruction count. Like instruction counts, line counts do not depend on how busy the machine
is.

Prints `lines pages` (all objects: the binary, libc, ...); with TOP, then the TOP functions
with the most lines, one per line: `lines instructions/request function`.
"""
import collections
import sys


def per_request(path, requests):
    """{(object, address): executions} and {(object, address): function} of a callgrind file."""
    counts = collections.Counter()
    owner = {}
    obj = fn = None
    call_cost_next = False
    with open(path) as f:
        for line in f:
            if line.startswith("ob="):
                obj = line[3:].strip()
            elif line.startswith("fn="):
                fn = line[3:].strip()
            elif line.startswith("calls="):
                # The next cost line is the call's inclusive cost, not this instruction's own.
                call_cost_next = True
            elif line.startswith("0x"):
                if call_cost_next:
                    call_cost_next = False
                    continue
                fields = line.split()
                key = (obj, int(fields[0], 16))
                counts[key] += int(fields[2]) if len(fields) > 2 else 0
                owner[key] = fn
    hot = {k for k, n in counts.items() if n * 2 >= requests}
    return hot, counts, owner


def main(argv):
    if len(argv) not in (3, 4):
        sys.stderr.write(__doc__)
        return 64
    path, requests = argv[1], int(argv[2])
    top = int(argv[3]) if len(argv) == 4 else 0
    hot, counts, owner = per_request(path, requests)
    lines = {(o, a >> 6) for o, a in hot}
    pages = {(o, a >> 12) for o, a in hot}
    print(len(lines), len(pages))
    if top:
        by_fn = collections.defaultdict(set)
        instr = collections.Counter()
        for key in hot:
            by_fn[owner[key]].add(key[1] >> 6)
            instr[owner[key]] += counts[key] / requests
        for fn in sorted(by_fn, key=lambda f: -len(by_fn[f]))[:top]:
            print(f"{len(by_fn[fn]):5} {instr[fn]:7.0f} {fn}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
