// faults.js: public reads flowing against every replica while loadtest/faults injects Redis
// faults (killed, restarted, paused, emptied, restored). One constant-arrival-rate scenario per
// replica (RATE reads/s each). Each read is tagged with the fault phase it started in: the runner
// and this script share one wall-clock schedule (phase i runs from T0_MS + i x PHASE_S).
//
// Mix per read: 70 % lookups of known entries (GET /statuses/{list}/{idx}, values read before the
// faults, about half of them non-VALID: a replica that published an empty list would answer
// VALID), 20 % list tokens (GET /statuslists/{id}, JWT gzipped), 10 % the aggregation
// (GET /statuslists, which must keep naming all LISTS lists).
// Every answer is checked: status 200 or 304 only; a lookup must show the known value; the
// aggregation must list every list. Counters per phase (thresholds count==0): bad_status
// (anything but 200/304, incl. no answer), server_errors (5xx), wrong_values.
import http from 'k6/http';
import { Counter } from 'k6/metrics';
import { arrival } from './lib/arrival.js';

const TARGETS = (__ENV.TARGETS || '').split(',').filter((t) => t);
const RATE = Number(__ENV.RATE || 500);
const VUS = Number(__ENV.VUS || 20);
const LISTS = Number(__ENV.LISTS || 50);
const PHASES = (__ENV.PHASES || '').split(',');
const T0_MS = Number(__ENV.T0_MS);
const PHASE_MS = Number(__ENV.PHASE_S) * 1000;
const DURATION = __ENV.DURATION; // e.g. "95s": warm-up + phases + tail
const KNOWN = JSON.parse(open(__ENV.KNOWN_FILE)); // [[list, idx, value], ...]
if (!TARGETS.length || !T0_MS || !PHASE_MS || !DURATION) throw new Error('run through loadtest/faults');

const badStatus = new Counter('bad_status');
const serverErrors = new Counter('server_errors');
const noAnswer = new Counter('no_answer');
const wrongValues = new Counter('wrong_values');

// Every read is also tagged with the slice of SLICE_S seconds it started in (0 = the first
// second of the first phase), and a threshold that cannot fail on each slice's duration makes
// k6's summary export the slice's p50 / p99 / max: the per-second series loadtest/charts plots.
const SLICE_MS = Number(__ENV.SLICE_S || 1) * 1000;
const NSLICES = Math.ceil((PHASES.length * PHASE_MS) / SLICE_MS);
function sliceAt(ms) {
  const i = Math.floor((ms - T0_MS) / SLICE_MS);
  return i >= 0 && i < NSLICES ? String(i) : null;
}

function phaseAt(ms) {
  const i = Math.floor((ms - T0_MS) / PHASE_MS);
  if (i < 0) return 'warmup';
  return i < PHASES.length ? PHASES[i] : 'tail';
}

const scenarios = {};
TARGETS.forEach((url, i) => {
  scenarios[`r${i + 1}`] = arrival(RATE, DURATION, VUS, { exec: 'read', env: { TARGET: url } });
});
const thresholds = {};
for (const p of PHASES) {
  for (const m of ['bad_status', 'server_errors', 'wrong_values', 'no_answer']) thresholds[`${m}{phase:${p}}`] = ['count==0'];
  // Always true: only there so the summary carries per-phase figures.
  thresholds[`http_req_duration{phase:${p}}`] = ['max>=0'];
  thresholds[`http_reqs{phase:${p}}`] = ['count>=0'];
}
for (let i = 0; i < NSLICES; i++) thresholds[`http_req_duration{slice:${i}}`] = ['max>=0'];

export const options = {
  scenarios,
  thresholds,
  discardResponseBodies: true,
  systemTags: ['status', 'method', 'scenario', 'expected_response'],
  summaryTrendStats: ['med', 'p(90)', 'p(99)', 'max'],
};

const JWT = { Accept: 'application/statuslist+jwt', 'Accept-Encoding': 'gzip' };

export function read() {
  const base = __ENV.TARGET;
  const now = Date.now();
  const phase = phaseAt(now);
  const tags = { phase };
  const slice = sliceAt(now);
  if (slice !== null) tags.slice = slice;
  const u = Math.random();
  let res;
  let ok = true;
  if (u < 0.7) {
    const [list, idx, value] = KNOWN[Math.floor(Math.random() * KNOWN.length)];
    tags.kind = 'lookup';
    res = http.get(`${base}/statuses/${list}/${idx}`, { tags, responseType: 'text', timeout: '10s' });
    if (res.status === 200) {
      let v;
      try { v = JSON.parse(res.body).value; } catch (e) { v = undefined; }
      ok = v === value;
    }
  } else if (u < 0.9) {
    tags.kind = 'token';
    const id = 1 + Math.floor(Math.random() * LISTS);
    res = http.get(`${base}/statuslists/${id}`, { tags, headers: JWT, timeout: '10s' });
    if (res.status === 200) ok = (res.headers['Content-Type'] || '').startsWith('application/statuslist+jwt');
  } else {
    tags.kind = 'aggregation';
    res = http.get(`${base}/statuslists`, { tags, responseType: 'text', timeout: '10s' });
    if (res.status === 200) {
      let n;
      try { n = JSON.parse(res.body).status_lists.length; } catch (e) { n = -1; }
      ok = n === LISTS;
    }
  }
  if (res.status !== 200 && res.status !== 304) {
    badStatus.add(1, tags);
    if (res.status >= 500) serverErrors.add(1, tags);
    if (res.status === 0) noAnswer.add(1, tags);
  } else if (!ok) {
    wrongValues.add(1, tags);
  }
}

export function handleSummary(data) {
  return { [__ENV.SUMMARY_FILE]: JSON.stringify(data) };
}
