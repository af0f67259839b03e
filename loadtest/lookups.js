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
// Passes when no request failed and every check held: status 200, a JSON body of the right
// shape and, against statusd, the very list and index asked for (against the baseline, whose
// body is fixed, the comparison is made but not required, so both runs do the same work).
import http from 'k6/http';
import { check, randomSeed } from 'k6';
import { Counter, Rate } from 'k6/metrics';

const BASE_URL = __ENV.BASE_URL;
const LISTS = Number(__ENV.LISTS || 50);
const SIZE = Number(__ENV.SIZE || 1048576);
const PREFIX = __ENV.PREFIX || '';
const ZIPF_S = Number(__ENV.ZIPF_S || 1);
const BATCH = Number(__ENV.BATCH || 20);
const BATCH_SHARE = Number(__ENV.BATCH_SHARE || 0.1);
const BASELINE = __ENV.BASELINE === '1';
if (!BASE_URL) throw new Error('BASE_URL is required (loadtest/run sets it)');

const N = LISTS * SIZE;
// Rank -> credential: r -> (r * A + B) mod N is a bijection when A shares no factor with N
// (N = 50 x 2^20 = 2^21 x 5^2; A is an odd prime other than 5). r * A stays below 2^53.
const A = 16777259;
const B = 982451653 % N;

export const options = {
  scenarios: {
    lookups: { executor: 'constant-vus', vus: Number(__ENV.VUS || 64), duration: __ENV.DURATION || '15s' },
  },
  thresholds: { http_req_failed: ['rate==0'], checks: ['rate==1'] },
  summaryTrendStats: ['avg', 'min', 'med', 'p(90)', 'p(99)', 'max'],
};

const singles = new Counter('lookups_single');
const batched = new Counter('lookups_batched');
const nonValid = new Rate('non_valid');

// The same request stream against both servers: one seed per VU.
randomSeed(7919 * (__VU + 1));

// A rank in 1..N with P(r) ~ 1/r^s (inverse CDF of the continuous power law).
function rank() {
  const u = Math.random();
  const r = ZIPF_S === 1
    ? Math.exp(u * Math.log(N + 1))
    : Math.pow(u * (Math.pow(N + 1, 1 - ZIPF_S) - 1) + 1, 1 / (1 - ZIPF_S));
  return Math.min(N, Math.max(1, Math.floor(r)));
}

function credential() {
  const c = ((rank() - 1) * A + B) % N;
  return { list: `${PREFIX}${Math.floor(c / SIZE) + 1}`, idx: c % SIZE };
}

function json(res) {
  try {
    return JSON.parse(res.body);
  } catch (_) {
    return null;
  }
}

function lookupOk(v, list, idx) {
  return typeof v.status === 'string' && typeof v.value === 'number' && v.list_id === list && v.idx === idx;
}

export default function () {
  if (Math.random() >= BATCH_SHARE) {
    const { list, idx } = credential();
    const res = http.get(`${BASE_URL}/statuses/${list}/${idx}`, { tags: { name: 'single' } });
    const v = json(res);
    const exact = v !== null && lookupOk(v, list, idx);
    check(res, {
      'single: 200': (r) => r.status === 200,
      'single: the credential asked for': () => v !== null && (exact || BASELINE),
    });
    singles.add(1);
    if (v !== null && typeof v.value === 'number') nonValid.add(v.value !== 0);
  } else {
    // One relying party checking several credentials of one list at once.
    const { list } = credential();
    const idx = [];
    for (let i = 0; i < BATCH; i++) idx.push(credential().idx);
    const res = http.post(`${BASE_URL}/statuses/${list}`, JSON.stringify({ idx }), {
      headers: { 'Content-Type': 'application/json' },
      tags: { name: 'batch' },
    });
    const v = json(res);
    const exact = v !== null && Array.isArray(v.statuses) && v.statuses.length === BATCH
      && v.statuses.every((s, i) => lookupOk(s, list, idx[i]));
    check(res, {
      'batch: 200': (r) => r.status === 200,
      'batch: the credentials asked for': () =>
        v !== null && Array.isArray(v.statuses) && v.statuses.length === BATCH && (exact || BASELINE),
    });
    batched.add(BATCH);
  }
}
