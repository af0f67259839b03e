// cdn.js: the verifiers scenario through the nginx edge (deploy/cdn/nginx.conf), reporting the
// edge hit ratio from the X-Cache-Status header the edge adds. Run it with
// `loadtest/run cdn [--smoke]`, which starts statusd, the edge, and points BASE_URL at the edge.
//
// Passes when verifiers.js's thresholds hold at the edge and at least HIT_MIN (default 0.99)
// of the polls were answered from the edge's cache. The setup() warm-up (one request per list
// and representation, the only misses of a run shorter than the ttl) is not counted;
// loadtest/run also reports how many requests reached statusd over the whole run.
import { Counter, Rate } from 'k6/metrics';
import { check } from 'k6';
import { options as verifierOptions, poll, setup as warmup } from './lib/verifier.js';

const HIT_MIN = Number(__ENV.HIT_MIN || 0.99);
// Answered from the cache without waiting for statusd: HIT, and STALE / UPDATING (served stale
// within stale-while-revalidate while one background request refreshes the entry).
const FROM_CACHE = { HIT: true, STALE: true, UPDATING: true };
const STATUSES = ['HIT', 'STALE', 'UPDATING', 'REVALIDATED', 'EXPIRED', 'MISS', 'BYPASS'];

const edgeHit = new Rate('edge_hit');
const byStatus = Object.fromEntries(STATUSES.map((s) => [s, new Counter(`edge_status_${s.toLowerCase()}`)]));

export const options = verifierOptions({ edge_hit: [`rate>=${HIT_MIN}`] });
export const setup = warmup;

export default function (data) {
  const res = poll(data);
  const status = res.headers['X-Cache-Status'] || '';
  edgeHit.add(FROM_CACHE[status] === true);
  if (byStatus[status]) {
    byStatus[status].add(1);
  } else {
    check(res, { 'edge reports its cache status': () => false });
  }
}
