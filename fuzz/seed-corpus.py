#!/usr/bin/env python3
"""Writes the seed corpus of every fuzz target into fuzz/corpus/<target>/seed-*.

Seeds come from the spec vectors in tests/data/vectors.json (IETF draft lists, JWT and CWT
tokens, the W3C example credential) and from a few hand-written inputs in the framing each
target expects (see fuzz/src/lib.rs). The output is deterministic and committed; CI replays it
through fuzz/src/replay.rs. Run from anywhere: paths are relative to this file.
"""

import base64
import json
import pathlib
import struct
import zlib

HERE = pathlib.Path(__file__).resolve().parent
VECTORS = json.loads((HERE.parent / "tests/data/vectors.json").read_text())
CORPUS = HERE / "corpus"


def b64url(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def resp(v):
    """A RESP2 encoding of bytes / str / int / None / list."""
    if v is None:
        return b"$-1\r\n"
    if isinstance(v, int):
        return b":%d\r\n" % v
    if isinstance(v, str):
        v = v.encode()
    if isinstance(v, bytes):
        return b"$%d\r\n%s\r\n" % (len(v), v)
    return b"*%d\r\n" % len(v) + b"".join(resp(x) for x in v)


def cbor_head(major, n):
    if n < 24:
        return bytes([major << 5 | n])
    if n < 256:
        return bytes([major << 5 | 24, n])
    if n < 65536:
        return bytes([major << 5 | 25]) + struct.pack(">H", n)
    return bytes([major << 5 | 26]) + struct.pack(">I", n)


def cbor(v):
    if isinstance(v, int):
        return cbor_head(0, v)
    if isinstance(v, bytes):
        return cbor_head(2, len(v)) + v
    if isinstance(v, str):
        return cbor_head(3, len(v.encode())) + v.encode()
    if isinstance(v, list):  # a map, as (key, value) pairs, in order
        return cbor_head(5, len(v)) + b"".join(cbor(k) + cbor(x) for k, x in v)
    raise TypeError(v)


def roaring_portable(indices):
    """Roaring portable serialization (array containers only, cookie 12346 with offsets)."""
    by_key = {}
    for i in sorted(set(indices)):
        by_key.setdefault(i >> 16, []).append(i & 0xFFFF)
    keys = sorted(by_key)
    out = struct.pack("<II", 12346, len(keys))
    for k in keys:
        out += struct.pack("<HH", k, len(by_key[k]) - 1)
    offset = len(out) + 4 * len(keys)
    for k in keys:
        out += struct.pack("<I", offset)
        offset += 2 * len(by_key[k])
    for k in keys:
        out += b"".join(struct.pack("<H", x) for x in by_key[k])
    return out


def roaring_form(bits, size, statuses):
    by_value = {}
    for idx, v in statuses:
        if v:
            by_value.setdefault(v, []).append(idx)
    env = cbor([
        ("bits", bits),
        ("size", size),
        ("statuses", [(v, roaring_portable(ix)) for v, ix in sorted(by_value.items())]),
    ])
    return zlib.compress(env, 9)


def main():
    seeds = {}

    def add(target, data):
        seeds.setdefault(target, []).append(data if isinstance(data, bytes) else data.encode())

    jwt = VECTORS["jwt"]
    cwt = bytes.fromhex(VECTORS["cwt_hex"])
    w3c = VECTORS["w3c"]
    small = [v for v in VECTORS["ietf"] if v["size"] <= 4096]

    add("jwt", jwt)
    add("cwt", cwt)
    add("cwt", bytes.fromhex(VECTORS["referenced_cwt_hex"]))

    for v in VECTORS["ietf"]:
        add("ietf_list", b"\x00" + json.dumps({"bits": v["bits"], "lst": v["lst"]}).encode())
        add("ietf_list", b"\x01" + bytes.fromhex(v["cbor_hex"]))
        add("inflate", b"\x00\xff" + b64url(v["lst"]))
    gz = b64url(w3c["example_encoded_list"][1:])
    add("inflate", b"\x01\xff" + gz)
    add("inflate", b"\x01\x01" + gz)  # a limit of 64 bytes: too large
    add("inflate", b"\x02\x01\x00" + bytes([0, 1, 7, 3, 200, 0xFF]))
    add("inflate", b"\x03\x10\x00" + bytes([3, 0x80, 0, 1, 255, 2]))

    for v in small:
        bits_sel = {1: 0, 2: 1, 4: 2, 8: 3}[v["bits"]]
        body = bytearray([bits_sel]) + struct.pack("<H", v["size"] // 8 - 1)
        last = -1
        for idx, value in sorted(v["statuses"]):
            if value:
                body += bytes([idx - last - 1, value])
                last = idx
        add("codec_roundtrip", bytes(body))
        add("roaring", roaring_form(v["bits"], v["size"], v["statuses"]))
        add("inspect", roaring_form(v["bits"], v["size"], v["statuses"]))

    add("w3c", json.dumps(w3c["example_credential"]))
    add("w3c", w3c["example_encoded_list"])

    add("inspect", jwt)
    add("inspect", cwt)
    add("inspect", json.dumps(w3c["example_credential"]))
    add("inspect", json.dumps({"bits": small[0]["bits"], "lst": small[0]["lst"]}))
    add("inspect", bytes.fromhex(small[0]["cbor_hex"]))

    for method, target, headers in [
        (0, "/statuses/l1/1", ""),
        (0, "/statuses/l1/131071", "if-none-match: \"s1\""),
        (1, "/statuslists/l1", "accept: application/statuslist+cwt;q=0.9, */*;q=0.1\naccept-encoding: gzip"),
        (0, "/statuslists/l1?time=1686925000", ""),
        (0, "/bitstringlists/l1/suspension", "accept: application/vc+jwt"),
        (3, "/statuses/l1", "origin: https://rp.example"),
        (0, "/statuslists", "if-none-match: *"),
        (0, "/.well-known/jwks.json", ""),
        (2, "/statuses/l1/01", ""),
    ]:
        add("http_request", bytes([method]) + f"{target}\n{headers}".encode())

    add("headers", 'application/statuslist+cwt;q=0.5, application/*;q=0.2, */*;q=0\ngzip;q=1.0, br\nW/"abc", "x"')
    add("headers", "text/html\nidentity;q=0.5, *;q=0\n*")

    add("admin_json", b"\x00" + json.dumps({
        "op": "register", "credential_id": "900101-1234567-M1", "kind": "mobile",
        "parent": "900101-1234567-IC", "request_id": "r-1"}).encode())
    add("admin_json", b"\x00" + json.dumps({
        "op": "reissue", "credential_id": "a", "new_credential_id": "b", "reason": "lost"}).encode())
    add("admin_json", b"\x01" + json.dumps({"operations": [
        {"op": "suspend", "credential_id": "c-1", "reason": "reported lost", "hold": "loss"},
        {"op": "revoke", "credential_id": "c-2", "reason": "deceased"},
        {"op": "nope"}]}).encode())
    add("admin_json", b"\x02# tokens\nissuer write,read s3cr3t-token-value-0123456789\nops admin root-token-value-012345678901\n")
    add("admin_json", b"\x03Bearer s3cr3t-token-value-0123456789")

    meta = ["bits", "2", "size", "16", "version", "3", "updated_at", "9", "purpose", "default"]
    add("redis_load", resp([meta, bytes([0x40, 0x00, 0x0C, 0x00])]))
    add("redis_load", resp([meta, None]))
    feed = [
        ["3-0", ["v", "3", "c", "1=2,7=1"]],
        ["4-0", ["v", "4", "c", ""]],
    ]
    meta4 = ["bits", "2", "size", "16", "version", "4", "updated_at", "9"]
    add("redis_feed", b"\x02" + resp([meta4, feed]))
    add("redis_feed", b"\x04" + resp([meta4, []]))

    # Only the seeds are replaced: what the fuzzer added to the corpus stays.
    for old in CORPUS.glob("*/seed-*"):
        old.unlink()
    for target, items in sorted(seeds.items()):
        d = CORPUS / target
        d.mkdir(parents=True, exist_ok=True)
        for n, data in enumerate(items):
            (d / f"seed-{n:02}").write_bytes(data)
    total = sum(p.stat().st_size for p in CORPUS.rglob("seed-*"))
    print(f"wrote {sum(map(len, seeds.values()))} seeds for {len(seeds)} targets, {total} bytes")


if __name__ == "__main__":
    main()
