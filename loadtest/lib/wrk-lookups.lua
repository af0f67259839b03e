-- wrk request stream of per-credential lookups, shared by loadtest/wrk-ab, loadtest/issuer and
-- loadtest/drill: 65,536 pre-formatted `GET /statuses/{list}/{idx}` per wrk thread, list random in
-- 1..WRK_LISTS (environment, default 1), idx random in 0..2^20-1, fixed seeds (4242 + thread
-- number), so every run, and both sides of an A/B, send the very same bytes and wrk spends the
-- same CPU on each. Append wrk-report.lua for the result line.
local counter = 0
setup = function(thread)
  thread:set("id", counter)
  counter = counter + 1
end
local reqs, n, i = {}, 65536, 0
init = function(args)
  local lists = tonumber(os.getenv("WRK_LISTS") or "1")
  math.randomseed(4242 + (id or 0))
  for k = 1, n do
    -- One list: no draw for it, so the stream is the one wrk-ab has always sent.
    local list = lists > 1 and math.random(1, lists) or 1
    reqs[k] = wrk.format("GET", "/statuses/" .. list .. "/" .. math.random(0, 1048575))
  end
end
request = function()
  i = i % n + 1
  return reqs[i]
end
