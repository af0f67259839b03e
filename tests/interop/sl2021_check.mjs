// Checks a VC 1.1 credential's StatusList2021Entry statuses with Digital Bazaar's
// @digitalbazaar/vc-status-list (checkStatus), fetching each StatusList2021Credential from the
// running statusd over HTTP in its Data Integrity form (`application/vc+ld+json`) and verifying
// it (verifyStatusListCredential) with the key found through the issuer's controller document
// (loader.mjs), then the issuer match, context, types, purpose, encodedList and index.
// Usage: node sl2021_check.mjs CREDENTIAL.json -> prints {"verified": bool, "error"?: string}.
import { readFileSync } from "node:fs";
import { checkStatus } from "@digitalbazaar/vc-status-list";
import { documentLoader, suite } from "./loader.mjs";

const credential = JSON.parse(readFileSync(process.argv[2], "utf8"));
const result = await checkStatus({
  credential,
  documentLoader,
  suite: suite(),
  verifyStatusListCredential: true,
  verifyMatchingIssuers: true,
});
process.stdout.write(
  JSON.stringify({ verified: result.verified, error: result.error?.message }) + "\n",
);
