"""Decodes every file of a manifest (TSV: id, kind zlib|gzip, path, length, sha256) with
Python's zlib module (C zlib; ZLIB via zlib.decompress, GZIP via gzip.decompress) and prints
one TSV line per file: decoder, id, length, sha256 -- or decoder, id, ERROR, message.
Run by tests/it/interop.rs; standard library only."""
import gzip
import hashlib
import sys
import zlib

for line in open(sys.argv[1], encoding="utf-8"):
    ident, kind, path = line.rstrip("\n").split("\t")[:3]
    data = open(path, "rb").read()
    try:
        out = zlib.decompress(data) if kind == "zlib" else gzip.decompress(data)
        print(f"python-zlib\t{ident}\t{len(out)}\t{hashlib.sha256(out).hexdigest()}")
    except Exception as e:  # every failure is a result to report, not a crash
        print(f"python-zlib\t{ident}\tERROR\t{' '.join(str(e).split())}")
