-- statusd: apply one batch of status changes to one list, atomically (docs/redis.md).
--
-- KEYS[1] = statusd:{<id>}:meta   KEYS[2] = statusd:{<id>}:data   KEYS[3] = statusd:{<id>}:feed
-- ARGV[1] = now (Unix seconds), then ARGV[2k], ARGV[2k+1] = index and value of change k.
--
-- Registry mode (the issuer API's compare-and-set commit), with two more keys:
-- KEYS[4] = statusd:{<id>}:creds (hash: index -> record)   KEYS[5] = statusd:{<id>}:alloc
-- ARGV[1] = now, ARGV[2] = the version the caller read, ARGV[3] = what the credentials it
-- registers do to meta's expires_max ('' nothing, 'forever', or their latest expiry in Unix
-- seconds), ARGV[4] = c, then c indices to claim, then r, then r pairs (index, record), then
-- the change pairs as above.
--
-- Returns {version, old_1, ..., old_n}: the new version and each entry's previous value.
--
-- Errors (<n> is the 0-based position of the offending change in the batch):
--   ERR STATUSD unknown-list                 meta does not exist
--   ERR STATUSD retired                      the list is retired (meta has retired_at)
--   ERR STATUSD corrupt <reason>             meta (bits, size or version) is not valid
--   ERR STATUSD bad-args <reason>            ARGV is malformed (odd count, bad timestamp)
--   ERR STATUSD out-of-range <n> <size>      the index is not an integer in 0 .. size-1
--   ERR STATUSD too-wide <n> <bits>          the value is not an integer that fits bits
--   ERR STATUSD terminal <n>                 the entry is INVALID (1) and would change
--   ERR STATUSD conflict <reason>            registry mode: the version moved on, or an index
--                                            to claim is already allocated (read and retry)
--
-- Redis does not roll back a script that fails half-way, so every check, and every read that
-- could fail (a key of the wrong type), happens before the first write: an error leaves the
-- list exactly as it was.

local function fail(msg)
  return redis.error_reply('ERR STATUSD ' .. msg)
end

-- A non-negative integer written in decimal digits, small enough to be exact in a Lua number.
local function uint(s)
  if type(s) == 'string' and #s <= 14 and string.match(s, '^%d+$') then
    return tonumber(s)
  end
  return nil
end

if redis.call('EXISTS', KEYS[1]) == 0 then
  return fail('unknown-list')
end
local m = redis.call('HMGET', KEYS[1], 'bits', 'size', 'version', 'retired_at')
local bits, size, version = uint(m[1]), uint(m[2]), uint(m[3])
if m[4] then
  return fail('retired')
end
if bits ~= 1 and bits ~= 2 and bits ~= 4 and bits ~= 8 then
  return fail('corrupt bits ' .. tostring(m[1]))
end
if not size or size < 1 or size > 67108864 or (size * bits) % 8 ~= 0 then
  return fail('corrupt size ' .. tostring(m[2]))
end
if not version then
  return fail('corrupt version ' .. tostring(m[3]))
end
local now = uint(ARGV[1])
if not now then
  return fail('bad-args now')
end

-- Registry mode: check the compare-and-set and the claims, and collect the records.
local registry = #KEYS == 5
local first = 2
local claims, recs = {}, {}
local extends = ''
if registry then
  local expect = uint(ARGV[2])
  if not expect then
    return fail('bad-args expect')
  end
  if expect ~= version then
    return fail('conflict version')
  end
  extends = ARGV[3]
  if extends ~= '' and extends ~= 'forever' and not uint(extends) then
    return fail('bad-args extends')
  end
  local c = uint(ARGV[4])
  if not c then
    return fail('bad-args claims')
  end
  local seen = {}
  for k = 1, c do
    local i = uint(ARGV[4 + k])
    if not i or i >= size then
      return fail('bad-args claim')
    end
    if seen[i] or redis.call('GETBIT', KEYS[5], i) == 1 then
      return fail('conflict claimed')
    end
    seen[i] = true
    claims[k] = i
  end
  local at = 5 + c
  local r = uint(ARGV[at])
  if not r then
    return fail('bad-args records')
  end
  for k = 1, r do
    local i = uint(ARGV[at + 2 * k - 1])
    local rec = ARGV[at + 2 * k]
    if not i or i >= size or not rec then
      return fail('bad-args record')
    end
    recs[#recs + 1] = i
    recs[#recs + 1] = rec
  end
  first = at + 2 * r + 1
  -- A key of the wrong type must fail here, before any write.
  redis.call('HLEN', KEYS[4])
end

if (#ARGV - first + 1) % 2 ~= 0 then
  return fail('bad-args odd')
end

local n = (#ARGV - first + 1) / 2
local max = 2 ^ bits - 1
local ty = 'u' .. bits
local idxs, vals, ret = {}, {}, {}
-- First pass: parse and range-check every change.
for k = 1, n do
  local pos = k - 1
  local i, v = uint(ARGV[first + 2 * pos]), uint(ARGV[first + 2 * pos + 1])
  if not i or i >= size then
    return fail('out-of-range ' .. pos .. ' ' .. size)
  end
  if not v or v > max then
    return fail('too-wide ' .. pos .. ' ' .. bits)
  end
  idxs[k], vals[k] = i, v
end
-- The stored values, read with many GETs per BITFIELD call (one call per entry would cost a
-- round through the command machinery each: 20,000 of them for a large batch).
local stored = {}
local gets = {}
local function flush_gets()
  if #gets > 0 then
    local got = redis.call('BITFIELD', KEYS[2], unpack(gets))
    for _, x in ipairs(got) do
      stored[#stored + 1] = x
    end
    gets = {}
  end
end
for k = 1, n do
  local c = #gets
  gets[c + 1], gets[c + 2], gets[c + 3] = 'GET', ty, '#' .. idxs[k]
  if #gets >= 900 then
    flush_gets()
  end
end
flush_gets()
-- Second pass: the terminal rule, with later changes seeing earlier ones of the batch.
local pending = {}
for k = 1, n do
  local i, v = idxs[k], vals[k]
  local old = pending[i]
  if old == nil then
    old = stored[k]
  end
  if old == 1 and v ~= 1 then
    return fail('terminal ' .. (k - 1))
  end
  pending[i] = v
  ret[k + 1] = old
end

local newv = version + 1
-- The feed's top entry must be older than the new version, or XADD would fail after the
-- writes below. A newer one is left over from elsewhere (a foreign writer, an earlier list of
-- the same id): the feed is dropped, which readers see as a gap and answer with a full load.
local top = redis.call('XREVRANGE', KEYS[3], '+', '-', 'COUNT', 1)
local stale = false
if top[1] then
  local ms = tonumber(string.match(top[1][1], '^(%d+)-'))
  stale = (ms == nil) or (ms >= newv)
end

-- Writes. BITFIELD takes many operations per call; chunks keep unpack() far below the Lua
-- stack limit (about 8000 values) however large the batch.
local chunk, parts = {}, {}
for k = 1, n do
  local c = #chunk
  chunk[c + 1], chunk[c + 2], chunk[c + 3], chunk[c + 4] = 'SET', ty, '#' .. idxs[k], vals[k]
  if #chunk >= 800 then
    redis.call('BITFIELD', KEYS[2], unpack(chunk))
    chunk = {}
  end
  parts[k] = idxs[k] .. '=' .. vals[k]
end
if #chunk > 0 then
  redis.call('BITFIELD', KEYS[2], unpack(chunk))
end
-- The server's clock in milliseconds: one clock for every writer, the start of the
-- propagation latency replicas measure.
if registry then
  for k = 1, #claims do
    redis.call('SETBIT', KEYS[5], claims[k], 1)
  end
  if #claims > 0 then
    redis.call('HINCRBY', KEYS[1], 'allocated', #claims)
  end
  for k = 1, #recs, 800 do
    redis.call('HSET', KEYS[4], unpack(recs, k, math.min(k + 799, #recs)))
  end
  -- expires_max: absent means forever (a credential without expiry, or a list from before
  -- expiries were kept), so it is only ever raised or removed.
  if extends == 'forever' then
    redis.call('HDEL', KEYS[1], 'expires_max')
  elseif extends ~= '' then
    local cur = redis.call('HGET', KEYS[1], 'expires_max')
    if cur and uint(cur) and uint(cur) < uint(extends) then
      redis.call('HSET', KEYS[1], 'expires_max', extends)
    end
  end
end
local t = redis.call('TIME')
local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[1], 'version', newv, 'updated_at', now, 'updated_ms', ms)
if stale then
  redis.call('DEL', KEYS[3])
end
redis.call('XADD', KEYS[3], 'MAXLEN', '~', 100000, newv .. '-0',
  'v', newv, 'c', table.concat(parts, ','))
redis.call('PUBLISH', 'statusd:changes', string.match(KEYS[1], '{(.*)}') or KEYS[1])

ret[1] = newv
return ret
