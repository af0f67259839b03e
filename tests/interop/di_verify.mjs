// Verifies a W3C status list credential statusd serves with a Data Integrity proof, with Digital
// Bazaar's verifier: @digitalbazaar/vc verifyCredential, DataIntegrityProof and the
// ecdsa-rdfc-2019 / eddsa-rdfc-2022 cryptosuites (tests/it/data_integrity.rs).
// The key is never handed over: the document loader knows only the bundled JSON-LD contexts
// (no network for them) and dereferences every other URL over HTTP from what statusd
// publishes: the proof's verification method `{issuer}#{kid}` is found in the controller
// document at the issuer URL, and the library then checks it is an assertionMethod of the
// credential's issuer.
// Usage: node di_verify.mjs URL ACCEPT [tamper] -> prints {"verified": bool, "cryptosuite": …,
// "verificationMethod": …, "error"?: string}; `tamper` flips the first character of
// credentialSubject.encodedList after fetching, which the proof must then refuse.
import * as vc from "@digitalbazaar/vc";
import { DataIntegrityProof } from "@digitalbazaar/data-integrity";
import { cryptosuite as ecdsaRdfc2019 } from "@digitalbazaar/ecdsa-rdfc-2019-cryptosuite";
import { cryptosuite as eddsaRdfc2022 } from "@digitalbazaar/eddsa-rdfc-2022-cryptosuite";
import * as credentials from "@digitalbazaar/credentials-context";
import * as dataIntegrity from "@digitalbazaar/data-integrity-context";
import * as multikey from "@digitalbazaar/multikey-context";
import * as statusList from "@digitalbazaar/vc-status-list-context";
import * as did from "did-context";

const [url, accept, tamper] = process.argv.slice(2);
const contexts = new Map([
  ...credentials.contexts,
  [dataIntegrity.CONTEXT_URL, dataIntegrity.CONTEXT],
  [multikey.CONTEXT_URL, multikey.CONTEXT],
  [statusList.CONTEXT_URL_V1, statusList.CONTEXT_V1],
  [did.CONTEXT_URL, did.CONTEXT],
]);

async function fetchJson(u, acceptHeader) {
  const res = await fetch(u, { headers: { accept: acceptHeader } });
  if (!res.ok) throw new Error(`${u}: HTTP ${res.status}`);
  return { json: await res.json(), type: res.headers.get("content-type") };
}

const documentLoader = async (u) => {
  if (contexts.has(u)) {
    return { contextUrl: null, documentUrl: u, document: contexts.get(u) };
  }
  if (!u.startsWith("http://") && !u.startsWith("https://")) {
    throw new Error(`${u}: not a bundled context and not an http(s) URL`);
  }
  // A URL with a fragment names a node of the document at the URL without it.
  const [base, fragment] = u.split("#");
  const { json } = await fetchJson(base, "application/ld+json, application/json");
  if (fragment === undefined) {
    return { contextUrl: null, documentUrl: u, document: json };
  }
  const node = (json.verificationMethod ?? []).find((m) => m.id === u);
  if (!node) throw new Error(`${u}: no such verification method in ${base}`);
  return {
    contextUrl: null,
    documentUrl: u,
    document: { "@context": multikey.CONTEXT_URL, ...node },
  };
};

let result;
try {
  const { json: credential, type } = await fetchJson(url, accept);
  if (tamper === "tamper") {
    const list = credential.credentialSubject.encodedList;
    credential.credentialSubject.encodedList = "u" + (list[1] === "A" ? "B" : "A") + list.slice(2);
  }
  const suite = [
    new DataIntegrityProof({ cryptosuite: ecdsaRdfc2019 }),
    new DataIntegrityProof({ cryptosuite: eddsaRdfc2022 }),
  ];
  const r = await vc.verifyCredential({ credential, suite, documentLoader });
  result = {
    verified: r.verified,
    contentType: type,
    cryptosuite: credential.proof?.cryptosuite,
    verificationMethod: credential.proof?.verificationMethod,
    error: r.verified ? undefined : String(r.error?.errors?.[0] ?? r.error ?? r.results?.[0]?.error),
  };
} catch (e) {
  result = { verified: false, error: String(e) };
}
process.stdout.write(JSON.stringify(result) + "\n");
