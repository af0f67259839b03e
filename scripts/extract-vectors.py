#!/usr/bin/env python3
"""Extracts the test vectors of ../shared/specs/status-lists.md into tests/data/vectors.json.

Run once when the spec file changes; the JSON is committed so tests need nothing outside the
repository. Every value is copied, never computed, except the parse of `status[i] = 0b…` lines.
"""
import json, re, sys, pathlib

spec = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/specs/status-lists.md").read_text()

def section(title):
    start = spec.index(title)
    nxt = re.search(r"\n#{2,4} ", spec[start + len(title):])
    return spec[start: start + len(title) + (nxt.start() if nxt else len(spec))]

def blocks(text):
    return re.findall(r"```[a-z]*\n(.*?)```", text, re.S)

def assignments(block):
    return [[int(i), int(v, 2)] for i, v in re.findall(r"status\[(\d+)\]\s*=\s*0b([01]+)", block)]

out = {"ietf": [], "w3c": {}}
for title, size in [("### 2.1 Small 1-bit list", 16), ("### 2.2 Small 2-bit list", 12)]:
    s = section(title)
    b = blocks(s)
    js = json.loads(b[1])
    cbor = re.search(r"CBOR \(hex\): `([0-9a-f]+)`", s).group(1)
    out["ietf"].append({"name": title[4:], "size": size, "bits": js["bits"], "lst": js["lst"],
                        "cbor_hex": cbor, "statuses": assignments(b[0])})
for title in ["#### 2.8.1 1-bit", "#### 2.8.2 2-bit", "#### 2.8.3 4-bit", "#### 2.8.4 8-bit"]:
    s = section(title)
    b = blocks(s)
    # The 2-bit block has "status[25460]= 0b01" (no space): the regex allows it.
    js_text = b[1]
    lst = re.search(r'"lst":\s*"([A-Za-z0-9_-]+)', js_text).group(1)
    bits = int(re.search(r'"bits":\s*(\d+)', js_text).group(1))
    cbor = b[2].strip()
    out["ietf"].append({"name": title[5:], "size": 1 << 20, "bits": bits, "lst": lst,
                        "cbor_hex": cbor, "statuses": assignments(b[0])})

s = section("### 2.4 Status List Token, JWT")
out["jwt"] = blocks(s)[2].strip()
s = section("### 2.5 Status List Token, CWT")
out["cwt_hex"] = blocks(s)[1].strip()
s = section("### 2.7 Referenced Token, CWT")
out["referenced_cwt_hex"] = blocks(s)[1].strip()
s = section("### 2.9 Example signing key")
out["example_jwk"] = json.loads(blocks(s)[0])

s = section("### 3.12 Examples and test vectors in the W3C spec")
out["w3c"]["example_encoded_list"] = blocks(s)[0].strip()
out["w3c"]["example_credential"] = json.loads(blocks(s)[1])
s = section("### 3.13 Extra W3C-order vectors")
b = [x.strip() for x in blocks(s)]
out["w3c"]["derived"] = [
    {"size": 131072, "set": [94567], "encoded_list": b[0]},
    {"size": 131072, "set": [0, 94567, 131071], "encoded_list": b[1]},
]
db = re.findall(r"`(uH4sI[A-Za-z0-9_-]+)`", s)
out["w3c"]["too_short"] = [
    {"size": 100000, "set": [], "encoded_list": db[0]},
    {"size": 100000, "set": [50000], "encoded_list": db[1]},
]
out["w3c"]["lsb_first_leftover"] = {"size": 100000, "set_lsb_first": [50000], "encoded_list": db[2]}

for v in out["ietf"]:
    assert v["statuses"], v["name"]
pathlib.Path("tests/data/vectors.json").write_text(json.dumps(out, indent=1) + "\n")
print("ietf vectors:", [(v["name"], len(v["statuses"])) for v in out["ietf"]])
