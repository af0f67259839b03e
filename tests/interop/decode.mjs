// Decodes every file of a manifest (TSV: id, kind zlib|gzip, path, length, sha256) with
// Node's zlib, pako and fflate, and prints one TSV line per (decoder, file):
// decoder, id, length, sha256 -- or decoder, id, ERROR, message. Run by tests/it/interop.rs.
import { readFileSync } from "node:fs";
import { createHash } from "node:crypto";
import zlib from "node:zlib";
import pako from "pako";
import * as fflate from "fflate";

const decoders = {
  "node-zlib": { zlib: (b) => zlib.inflateSync(b), gzip: (b) => zlib.gunzipSync(b) },
  pako: { zlib: (b) => pako.inflate(b), gzip: (b) => pako.ungzip(b) },
  fflate: { zlib: (b) => fflate.unzlibSync(b), gzip: (b) => fflate.gunzipSync(b) },
};

const out = [];
for (const line of readFileSync(process.argv[2], "utf8").split("\n")) {
  if (!line) continue;
  const [id, kind, path] = line.split("\t");
  const input = readFileSync(path);
  for (const [name, d] of Object.entries(decoders)) {
    try {
      const bytes = d[kind](new Uint8Array(input.buffer, input.byteOffset, input.length));
      const sha = createHash("sha256").update(bytes).digest("hex");
      out.push(`${name}\t${id}\t${bytes.length}\t${sha}`);
    } catch (e) {
      out.push(`${name}\t${id}\tERROR\t${String(e.message ?? e).replace(/\s+/g, " ")}`);
    }
  }
}
process.stdout.write(out.join("\n") + "\n");
