// verifiers.js: relying parties polling status lists straight from statusd with conditional
// GETs after ttl (model in lib/verifier.js). Run it with `loadtest/run verifiers [--smoke]`.
//
// Passes when: no failed request, every check holds (304 only for the current ETag, 200 with
// a new ETag, the negotiated type and gzip iff accepted), the 304 share matches the model
// within 2 points, p99 of the polls is under P99_MS (default 10 ms), and k6 kept the planned
// arrival rate (under 1 % dropped iterations).
import { options as verifierOptions, poll, setup as warmup } from './lib/verifier.js';

export const options = verifierOptions();
export const setup = warmup;

export default function (data) {
  poll(data);
}
