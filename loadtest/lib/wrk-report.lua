-- wrk done() hook shared by the loadtest/ scripts: one machine-readable line per run,
--   WRK requests= duration_us= rps= bytes= p50_us= p90_us= p99_us= max_us= errors= connect= read= write= status= timeout=
-- (latencies in microseconds; errors = the sum of the socket and HTTP status errors after it).
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "WRK requests=%d duration_us=%d rps=%.0f bytes=%d p50_us=%d p90_us=%d p99_us=%d max_us=%d " ..
    "errors=%d connect=%d read=%d write=%d status=%d timeout=%d\n",
    summary.requests, summary.duration, summary.requests / (summary.duration / 1e6), summary.bytes,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    e.connect + e.read + e.write + e.status + e.timeout, e.connect, e.read, e.write, e.status, e.timeout))
end
