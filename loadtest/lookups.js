// lookups.js: per-credential lookups over LISTS x SIZE credentials (default 50 x 2^20, about
// 52 million), single (GET /statuses/{list}/{idx}) and batch (POST /statuses/{list} with
// {"idx":[...]}), with a skewed, Zipf-like popularity: the credential of rank r is asked for
// with probability proportional to 1/r^ZIPF_S (default 1), and ranks are scattered over all
// lists by a fixed permutation, so popular credentials sit anywhere.
//
// `loadtest/run lookups` runs this same script against statusd and against the bare hyper
// baseline (examples/baseline.rs, BASELINE=1, which answers every GET with statusd's answer for
// one index and every POST with its answer for one batch) in the same run, and reports the
// throughput ratio. A closed model (constant VUs, keep-alive): throughput, not latency at a
// given rate, is the figure.
//
// The model (ranks, permutation, single/batch mix) is in lib/lookup.js, shared with rollout.js.
//
// Passes when no request failed and every check held: status 200, a JSON body of the right
// shape and, against statusd, the very list and index asked for (against the baseline, whose
// body is fixed, the comparison is made but not required, so both runs do the same work).
import { randomSeed } from 'k6';
import { lookup } from './lib/lookup.js';

const BASE_URL = __ENV.BASE_URL;
const BASELINE = __ENV.BASELINE === '1';
if (!BASE_URL) throw new Error('BASE_URL is required (loadtest/run sets it)');

export const options = {
  scenarios: {
    lookups: { executor: 'constant-vus', vus: Number(__ENV.VUS || 64), duration: __ENV.DURATION || '15s' },
  },
  thresholds: { http_req_failed: ['rate==0'], checks: ['rate==1'] },
  summaryTrendStats: ['avg', 'min', 'med', 'p(90)', 'p(99)', 'max'],
};

// The same request stream against both servers: one seed per VU.
randomSeed(7919 * (__VU + 1));

export default function () {
  lookup(BASE_URL, BASELINE);
}
