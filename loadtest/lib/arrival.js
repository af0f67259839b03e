// The open model every fixed-rate load here uses: a k6 constant-arrival-rate scenario of `rate`
// iterations a second for `duration`, whatever the latency, with `vus` VUs allocated up front
// and up to four times as many when answers slow down. `extra` adds or overrides settings
// (exec, startTime, gracefulStop, tags, env).
export function arrival(rate, duration, vus, extra) {
  return Object.assign(
    {
      executor: 'constant-arrival-rate',
      rate,
      timeUnit: '1s',
      duration,
      preAllocatedVUs: vus,
      maxVUs: vus * 4,
    },
    extra || {},
  );
}
