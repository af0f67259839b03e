// Verifies a W3C status list credential statusd serves with a Data Integrity proof, with Digital
// Bazaar's verifier: @digitalbazaar/vc verifyCredential, DataIntegrityProof and the
// ecdsa-rdfc-2019 / eddsa-rdfc-2022 cryptosuites (tests/it/data_integrity.rs). The key is found
// only through what statusd publishes (loader.mjs): the proof's verification method
// `{issuer}#{kid}` in the controller document at the issuer URL; the library then checks that
// it is an assertionMethod of the credential's issuer.
// Usage: node di_verify.mjs URL ACCEPT [tamper] -> prints {"verified": bool, "cryptosuite": …,
// "verificationMethod": …, "error"?: string}; `tamper` flips the first character of
// credentialSubject.encodedList after fetching, which the proof must then refuse.
import * as vc from "@digitalbazaar/vc";
import { documentLoader, fetchJson, suite } from "./loader.mjs";

const [url, accept, tamper] = process.argv.slice(2);
let result;
try {
  const { json: credential, type } = await fetchJson(url, accept);
  if (tamper === "tamper") {
    const list = credential.credentialSubject.encodedList;
    credential.credentialSubject.encodedList = "u" + (list[1] === "A" ? "B" : "A") + list.slice(2);
  }
  const r = await vc.verifyCredential({ credential, suite: suite(), documentLoader });
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
