// Per-credential lookups with a skewed, Zipf-like popularity, shared by lookups.js (closed model,
// throughput against statusd and the bare baseline) and rollout.js (open model, reads while
// writes flow). See loadtest/README.md for the model.
//
// The credential of rank r is asked for with probability proportional to 1/r^ZIPF_S (default 1)
// over LISTS x SIZE credentials, ranks scattered over every list by a fixed permutation, so
// popular credentials sit anywhere. A lookup is single (GET /statuses/{list}/{idx}) or, with
// probability BATCH_SHARE, a batch of BATCH indices of one list (POST /statuses/{list}).
import http from 'k6/http';
import { check } from 'k6';
import { Counter, Rate } from 'k6/metrics';

const LISTS = Number(__ENV.LISTS || 50);
const SIZE = Number(__ENV.SIZE || 1048576);
const PREFIX = __ENV.PREFIX || '';
const ZIPF_S = Number(__ENV.ZIPF_S || 1);
const BATCH = Number(__ENV.BATCH || 20);
const BATCH_SHARE = Number(__ENV.BATCH_SHARE || 0.1);

const N = LISTS * SIZE;
// Rank -> credential: r -> (r * A + B) mod N is a bijection when A shares no factor with N
// (N = 50 x 2^20 = 2^21 x 5^2; A is an odd prime other than 5). r * A stays below 2^53.
const A = 16777259;
const B = 982451653 % N;

const singles = new Counter('lookups_single');
const batched = new Counter('lookups_batched');
const nonValid = new Rate('non_valid');

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

// One lookup against baseUrl, single or batch. With baseline, the answer (a fixed body) is
// compared with the request but not required to match, so k6 does the same work either way.
// tags are added to the request's (e.g. kind); name is `single` or `batch`.
export function lookup(baseUrl, baseline, tags) {
  if (Math.random() >= BATCH_SHARE) {
    const { list, idx } = credential();
    const res = http.get(`${baseUrl}/statuses/${list}/${idx}`, { tags: Object.assign({ name: 'single' }, tags) });
    const v = json(res);
    const exact = v !== null && lookupOk(v, list, idx);
    check(res, {
      'single: 200': (r) => r.status === 200,
      'single: the credential asked for': () => v !== null && (exact || baseline),
    });
    singles.add(1);
    if (v !== null && typeof v.value === 'number') nonValid.add(v.value !== 0);
  } else {
    // One relying party checking several credentials of one list at once.
    const { list } = credential();
    const idx = [];
    for (let i = 0; i < BATCH; i++) idx.push(credential().idx);
    const res = http.post(`${baseUrl}/statuses/${list}`, JSON.stringify({ idx }), {
      headers: { 'Content-Type': 'application/json' },
      tags: Object.assign({ name: 'batch' }, tags),
    });
    const v = json(res);
    const exact = v !== null && Array.isArray(v.statuses) && v.statuses.length === BATCH
      && v.statuses.every((s, i) => lookupOk(s, list, idx[i]));
    check(res, {
      'batch: 200': (r) => r.status === 200,
      'batch: the credentials asked for': () =>
        v !== null && Array.isArray(v.statuses) && v.statuses.length === BATCH && (exact || baseline),
    });
    batched.add(BATCH);
  }
}
