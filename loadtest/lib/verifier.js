// Relying parties polling status lists, shared by verifiers.js (straight to statusd) and cdn.js
// (through the nginx edge). See loadtest/README.md for the model and its assumptions.
//
// A relying party keeps each list it uses with its ETag and, once the token's ttl has passed,
// asks again with If-None-Match: 304 when the list is unchanged, 200 with the new token when it
// changed. How often a list changed between two polls is the scenario parameter CHANGED_SHARE
// (default 0.5: about 10,000 status changes a day over 50 lists with ttl 300 s, see
// docs/capacity.md). A poll that models a changed list sends an outdated ETag, which statusd
// (or the edge) must answer with the full representation; the others send the current ETag and
// must get a 304. The share is exact per VU (an accumulator, not a coin), so the thresholds on
// it can be tight.
import http from 'k6/http';
import { check, randomSeed } from 'k6';
import { Rate } from 'k6/metrics';
import { arrival } from './arrival.js';

export const BASE_URL = __ENV.BASE_URL;
const LISTS = Number(__ENV.LISTS || 50);
const PREFIX = __ENV.PREFIX || '';
const CHANGED_SHARE = Number(__ENV.CHANGED_SHARE || 0.5);
const RATE = Number(__ENV.RATE || 1000);
const VUS = Number(__ENV.VUS || 50);
const DURATION = __ENV.DURATION || '40s';
const P99_MS = Number(__ENV.P99_MS || 10);
const OUTDATED = '"outdated-etag"';

if (!BASE_URL) throw new Error('BASE_URL is required (loadtest/run sets it)');

// What relying parties ask for, with their share of polls (out of 20): most take the JWT
// gzipped, as HTTP clients do by default.
const PROFILES = [
  { name: 'jwt_gzip', weight: 12, path: (id) => `/statuslists/${id}`, type: 'application/statuslist+jwt', gzip: true,
    headers: { Accept: 'application/statuslist+jwt', 'Accept-Encoding': 'gzip, deflate, br' } },
  { name: 'jwt', weight: 2, path: (id) => `/statuslists/${id}`, type: 'application/statuslist+jwt', gzip: false,
    headers: { Accept: 'application/statuslist+jwt', 'Accept-Encoding': 'identity' } },
  { name: 'cwt', weight: 3, path: (id) => `/statuslists/${id}`, type: 'application/statuslist+cwt', gzip: false,
    headers: { Accept: 'application/statuslist+cwt', 'Accept-Encoding': 'gzip, deflate' } },
  { name: 'w3c_gzip', weight: 3, path: (id) => `/bitstringlists/${id}/revocation`, type: 'application/vc+jwt', gzip: true,
    headers: { Accept: 'application/vc+jwt', 'Accept-Encoding': 'gzip' } },
];
const WHEEL = PROFILES.flatMap((p) => Array(p.weight).fill(p));
const LIST_IDS = Array.from({ length: LISTS }, (_, n) => `${PREFIX}${n + 1}`);

// 304s among the polls: its passes are the 304s, its fails the 200s (no counters: k6 spends
// more CPU per metric sample than nginx spends per request).
export const notModified = new Rate('not_modified');

// The same request stream on every run: one seed per VU.
randomSeed(104729 * (__VU + 1));

export function options(extraThresholds) {
  const expected = 1 - CHANGED_SHARE;
  return {
    discardResponseBodies: true,
    // Fewer tags per sample: k6's CPU per request, not the server's, limits these runs.
    systemTags: ['status', 'method', 'name', 'scenario', 'check', 'expected_response'],
    scenarios: {
      verifiers: arrival(RATE, DURATION, VUS),
    },
    thresholds: Object.assign(
      {
        http_req_failed: ['rate==0'],
        checks: ['rate==1'],
        'http_req_duration{kind:poll}': [`p(99)<${P99_MS}`],
        not_modified: [`rate>=${(expected - 0.02).toFixed(3)}`, `rate<=${(expected + 0.02).toFixed(3)}`],
        // Requests k6 could not start on time mean the measured rate is not the planned one.
        dropped_iterations: [`count<=${Math.ceil(RATE * 0.01 * parseSeconds(DURATION))}`],
      },
      extraThresholds || {},
    ),
    summaryTrendStats: ['avg', 'min', 'med', 'p(90)', 'p(99)', 'max'],
  };
}

function parseSeconds(d) {
  const m = /^(\d+)(ms|s|m)$/.exec(d);
  if (!m) throw new Error(`DURATION ${d}: expected e.g. 40s`);
  return Number(m[1]) * { ms: 0.001, s: 1, m: 60 }[m[2]];
}

// Every (profile, list) once, as verifiers that have polled before hold them: the current
// ETags, and for the edge a warm cache. Not part of the measured polls.
export function setup() {
  const etags = {};
  for (const p of PROFILES) {
    for (const id of LIST_IDS) {
      const res = http.get(BASE_URL + p.path(id), { headers: p.headers, tags: { kind: 'warmup', name: 'warmup' } });
      if (res.status !== 200 || !res.headers.Etag) {
        throw new Error(`warm-up ${p.path(id)} (${p.name}): status ${res.status}`);
      }
      etags[`${p.name}|${id}`] = res.headers.Etag;
    }
  }
  return { etags };
}

const state = { etags: null, acc: 0 };

// One poll; returns the response (cdn.js reads the edge's X-Cache-Status from it).
export function poll(data) {
  if (state.etags === null) {
    state.etags = Object.assign({}, data.etags);
    state.acc = Math.random(); // VUs start at different phases of the changed/unchanged pattern
  }
  const id = LIST_IDS[Math.floor(Math.random() * LISTS)];
  const p = WHEEL[Math.floor(Math.random() * WHEEL.length)];
  const key = `${p.name}|${id}`;
  state.acc += CHANGED_SHARE;
  const changed = state.acc >= 1;
  if (changed) state.acc -= 1;
  const sent = changed ? OUTDATED : state.etags[key];
  const res = http.get(BASE_URL + p.path(id), {
    headers: Object.assign({ 'If-None-Match': sent }, p.headers),
    tags: { kind: 'poll', name: p.name },
  });
  const etag = res.headers.Etag;
  if (res.status === 200) {
    notModified.add(false);
    check(res, {
      '200 with a new ETag, the negotiated type, gzip iff accepted': () =>
        !!etag && etag !== sent && res.headers['Content-Type'] === p.type
        && (res.headers['Content-Encoding'] === 'gzip') === p.gzip,
    });
    if (etag) state.etags[key] = etag;
  } else if (res.status === 304) {
    notModified.add(true);
    check(res, { '304 only for the current ETag': () => !changed && etag === sent });
  } else {
    check(res, { 'status is 200 or 304': () => false });
  }
  return res;
}
