// The JSON-LD document loader of the Data Integrity checks (di_verify.mjs, sl2021_check.mjs):
// the contexts come from npm packages (no network for them); every other URL is dereferenced
// over HTTP from what statusd publishes. A URL with a fragment names a verification method of
// the document at the URL without it (the issuer's controller document), returned as a
// Multikey node. Keys are never handed to the verifier in any other way.
import * as credentials from "@digitalbazaar/credentials-context";
import * as dataIntegrity from "@digitalbazaar/data-integrity-context";
import * as multikey from "@digitalbazaar/multikey-context";
import * as statusList from "@digitalbazaar/vc-status-list-context";
import * as did from "did-context";
import { DataIntegrityProof } from "@digitalbazaar/data-integrity";
import { cryptosuite as ecdsaRdfc2019 } from "@digitalbazaar/ecdsa-rdfc-2019-cryptosuite";
import { cryptosuite as eddsaRdfc2022 } from "@digitalbazaar/eddsa-rdfc-2022-cryptosuite";

const contexts = new Map([
  ...credentials.contexts,
  [dataIntegrity.CONTEXT_URL, dataIntegrity.CONTEXT],
  [multikey.CONTEXT_URL, multikey.CONTEXT],
  [statusList.CONTEXT_URL_V1, statusList.CONTEXT_V1],
  [did.CONTEXT_URL, did.CONTEXT],
]);

/// What a JSON-LD verifier asks statusd for: the Data Integrity forms of the W3C views, the
/// controller document.
export const ACCEPT_LD =
  "application/vc, application/vc+ld+json, application/ld+json, application/json";

export async function fetchJson(u, accept = ACCEPT_LD) {
  const res = await fetch(u, { headers: { accept } });
  if (!res.ok) throw new Error(`${u}: HTTP ${res.status}`);
  return { json: await res.json(), type: res.headers.get("content-type") };
}

export const documentLoader = async (u) => {
  if (contexts.has(u)) {
    return { contextUrl: null, documentUrl: u, document: contexts.get(u) };
  }
  if (!u.startsWith("http://") && !u.startsWith("https://")) {
    throw new Error(`${u}: not a bundled context and not an http(s) URL`);
  }
  const [base, fragment] = u.split("#");
  const { json } = await fetchJson(base);
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

/// Both cryptosuites statusd signs with.
export const suite = () => [
  new DataIntegrityProof({ cryptosuite: ecdsaRdfc2019 }),
  new DataIntegrityProof({ cryptosuite: eddsaRdfc2022 }),
];
