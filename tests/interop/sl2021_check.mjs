// Checks a VC 1.1 credential's StatusList2021Entry statuses with Digital Bazaar's
// @digitalbazaar/vc-status-list (checkStatus), fetching each StatusList2021Credential from the
// running statusd over HTTP. statusd secures the list as a VC-JWT 1.1, which that library does
// not verify (it knows Data Integrity proofs only), so the document loader hands it the JWT's
// `vc` claim with verifyStatusListCredential off: the signature is `statusd verify`'s check,
// everything else (context, types, purpose, issuer match, encodedList, index) is the library's.
// Usage: node sl2021_check.mjs CREDENTIAL.json -> prints {"verified": bool, "error"?: string}.
import { readFileSync } from "node:fs";
import { checkStatus } from "@digitalbazaar/vc-status-list";

const credential = JSON.parse(readFileSync(process.argv[2], "utf8"));
const documentLoader = async (url) => {
  const res = await fetch(url, { headers: { accept: "application/jwt" } });
  if (!res.ok) throw new Error(`${url}: HTTP ${res.status}`);
  const jwt = (await res.text()).trim();
  const payload = JSON.parse(Buffer.from(jwt.split(".")[1], "base64url").toString("utf8"));
  return { contextUrl: null, documentUrl: url, document: payload.vc };
};
const result = await checkStatus({
  credential,
  documentLoader,
  verifyStatusListCredential: false,
  verifyMatchingIssuers: true,
});
process.stdout.write(
  JSON.stringify({ verified: result.verified, error: result.error?.message }) + "\n",
);
