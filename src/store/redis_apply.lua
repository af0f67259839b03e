-- statusd: apply one batch of status changes to one list, atomically (docs/redis.md).
--
-- KEYS[1] = statusd:{<id>}:meta   KEYS[2] = statusd:{<id>}:data   KEYS[3] = statusd:{<id>}:feed
-- ARGV[1] = now (Unix seconds), then ARGV[2k], ARGV[2k+1] = index and value of change k.
--
-- Returns {version, old_1, ..., old_n}: the new version and each entry's previous value.
--
-- Registry mode (the issuer API's compare-and-set commit of one or more lists and the
-- credential ids it binds, all or nothing):
-- KEYS = for each of the n lists, 5 keys: statusd:{<id>}:meta, :data, :feed,
--        :creds (hash: index -> record), :alloc; then b keys statusd:cid:<credential id>.
-- ARGV[1] = now, ARGV[2] = n, then per list: the version the caller read, what the
-- credentials it registers in that list do to its meta's expires_max ('' nothing, 'forever',
-- or their latest expiry in Unix seconds), c, c indices to claim, r, r pairs (index, record),
-- k, k change pairs (index, value); then b locations (<list>/<index>), one per cid key, each
-- set only if the key does not exist.
-- Returns {version_1, ..., version_n}: each list's new version.
--
-- Errors (<n> is the 0-based position of the offending change in its list's batch; in
-- registry mode an error about list j, 1-based, starts with "@<j> "):
--   ERR STATUSD unknown-list                 meta does not exist
--   ERR STATUSD retired                      the list is retired (meta has retired_at); both
--                                            modes refuse it
--   ERR STATUSD corrupt <reason>             meta (bits, size or version) is not valid
--   ERR STATUSD bad-args <reason>            ARGV is malformed (odd count, bad timestamp)
--   ERR STATUSD out-of-range <n> <size>      the index is not an integer in 0 .. size-1
--   ERR STATUSD too-wide <n> <bits>          the value is not an integer that fits bits
--   ERR STATUSD terminal <n>                 the entry is INVALID (1) and would change
--   ERR STATUSD conflict <reason>            registry mode: the version moved on
--                                            ("conflict version <j>"), an index to claim is
--                                            already allocated ("conflict claimed <j>"), or a
--                                            credential id is bound ("conflict bound"): read
--                                            and retry
--
-- Redis does not roll back a script that fails half-way, so every check (a retired list
-- included), and every read that could fail (a key of the wrong type), happens before the
-- first write, for every list: an error leaves every list exactly as it was.

-- fail and uint are repeated in redis_retire.lua: scripts loaded separately cannot share a
-- function. Keep them in step with redis_retire.lua (the same error prefix, the same integer rule).
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

-- A list's metadata, checked; nil and the error if it is missing or not valid.
local function open(meta, data, feed)
  if redis.call('EXISTS', meta) == 0 then
    return nil, 'unknown-list'
  end
  local m = redis.call('HMGET', meta, 'bits', 'size', 'version', 'retired_at')
  local bits, size, version = uint(m[1]), uint(m[2]), uint(m[3])
  if m[4] then
    return nil, 'retired'
  end
  if bits ~= 1 and bits ~= 2 and bits ~= 4 and bits ~= 8 then
    return nil, 'corrupt bits ' .. tostring(m[1])
  end
  if not size or size < 1 or size > 67108864 or (size * bits) % 8 ~= 0 then
    return nil, 'corrupt size ' .. tostring(m[2])
  end
  if not version then
    return nil, 'corrupt version ' .. tostring(m[3])
  end
  return {
    meta = meta, data = data, feed = feed, bits = bits, size = size, version = version,
    claims = {}, recs = {}, idxs = {}, vals = {}, old = {}, extends = '',
  }
end

-- Parses the n change pairs from ARGV[first] into list l and checks them against the stored
-- values (later changes seeing earlier ones); returns the error, if any.
local function check(l, first, n)
  local max = 2 ^ l.bits - 1
  local ty = 'u' .. l.bits
  -- First pass: parse and range-check every change.
  for k = 1, n do
    local pos = k - 1
    local i, v = uint(ARGV[first + 2 * pos]), uint(ARGV[first + 2 * pos + 1])
    if not i or i >= l.size then
      return 'out-of-range ' .. pos .. ' ' .. l.size
    end
    if not v or v > max then
      return 'too-wide ' .. pos .. ' ' .. l.bits
    end
    l.idxs[k], l.vals[k] = i, v
  end
  -- The stored values, read with many GETs per BITFIELD call (one call per entry would cost a
  -- round through the command machinery each: 20,000 of them for a large batch).
  local stored = {}
  local gets = {}
  local function flush_gets()
    if #gets > 0 then
      local got = redis.call('BITFIELD', l.data, unpack(gets))
      for _, x in ipairs(got) do
        stored[#stored + 1] = x
      end
      gets = {}
    end
  end
  for k = 1, n do
    local c = #gets
    gets[c + 1], gets[c + 2], gets[c + 3] = 'GET', ty, '#' .. l.idxs[k]
    if #gets >= 900 then
      flush_gets()
    end
  end
  flush_gets()
  -- Second pass: the terminal rule, with later changes seeing earlier ones of the batch.
  local pending = {}
  for k = 1, n do
    local i, v = l.idxs[k], l.vals[k]
    local old = pending[i]
    if old == nil then
      old = stored[k]
    end
    if old == 1 and v ~= 1 then
      return 'terminal ' .. (k - 1)
    end
    pending[i] = v
    l.old[k] = old
  end
  -- The feed's top entry must be older than the new version, or XADD would fail after the
  -- writes. A newer one is left over from elsewhere (a foreign writer, an earlier list of the
  -- same id): the feed is dropped, which readers see as a gap and answer with a full load.
  l.newv = l.version + 1
  local top = redis.call('XREVRANGE', l.feed, '+', '-', 'COUNT', 1)
  l.stale = false
  if top[1] then
    local ms = tonumber(string.match(top[1][1], '^(%d+)-'))
    l.stale = (ms == nil) or (ms >= l.newv)
  end
  return nil
end

-- Writes list l, checked already: its changes, claims and records, expires_max, version and
-- feed entry.
local function write(l, now)
  local ty = 'u' .. l.bits
  -- BITFIELD takes many operations per call; chunks keep unpack() far below the Lua stack
  -- limit (about 8000 values) however large the batch.
  local chunk, parts = {}, {}
  for k = 1, #l.idxs do
    local c = #chunk
    chunk[c + 1], chunk[c + 2], chunk[c + 3], chunk[c + 4] = 'SET', ty, '#' .. l.idxs[k], l.vals[k]
    if #chunk >= 800 then
      redis.call('BITFIELD', l.data, unpack(chunk))
      chunk = {}
    end
    parts[k] = l.idxs[k] .. '=' .. l.vals[k]
  end
  if #chunk > 0 then
    redis.call('BITFIELD', l.data, unpack(chunk))
  end
  if l.creds then
    for k = 1, #l.claims do
      redis.call('SETBIT', l.alloc, l.claims[k], 1)
    end
    if #l.claims > 0 then
      redis.call('HINCRBY', l.meta, 'allocated', #l.claims)
    end
    for k = 1, #l.recs, 800 do
      redis.call('HSET', l.creds, unpack(l.recs, k, math.min(k + 799, #l.recs)))
    end
    -- expires_max: absent means forever (a credential without expiry, or a list from before
    -- expiries were kept), so it is only ever raised or removed.
    if l.extends == 'forever' then
      redis.call('HDEL', l.meta, 'expires_max')
    elseif l.extends ~= '' then
      local cur = redis.call('HGET', l.meta, 'expires_max')
      if cur and uint(cur) and uint(cur) < uint(l.extends) then
        redis.call('HSET', l.meta, 'expires_max', l.extends)
      end
    end
  end
  -- The server's clock in milliseconds: one clock for every writer, the start of the
  -- propagation latency replicas measure.
  local t = redis.call('TIME')
  local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  redis.call('HSET', l.meta, 'version', l.newv, 'updated_at', now, 'updated_ms', ms)
  if l.stale then
    redis.call('DEL', l.feed)
  end
  redis.call('XADD', l.feed, 'MAXLEN', '~', 100000, l.newv .. '-0',
    'v', l.newv, 'c', table.concat(parts, ','))
  redis.call('PUBLISH', 'statusd:changes', string.match(l.meta, '{(.*)}') or l.meta)
end

if #KEYS == 3 then
  local l, err = open(KEYS[1], KEYS[2], KEYS[3])
  if not l then
    return fail(err)
  end
  local now = uint(ARGV[1])
  if not now then
    return fail('bad-args now')
  end
  if (#ARGV - 1) % 2 ~= 0 then
    return fail('bad-args odd')
  end
  err = check(l, 2, (#ARGV - 1) / 2)
  if err then
    return fail(err)
  end
  write(l, now)
  local ret = { l.newv }
  for k = 1, #l.old do
    ret[k + 1] = l.old[k]
  end
  return ret
end

-- Registry mode: check the compare-and-set, the claims, the records and the changes of every
-- list, and that no credential id to bind is bound, before the first write.
local now = uint(ARGV[1])
if not now then
  return fail('bad-args now')
end
local n = uint(ARGV[2])
if not n or n < 1 or #KEYS < 5 * n then
  return fail('bad-args lists')
end
local lists, seen_lists = {}, {}
local at = 3
for j = 1, n do
  local base = 5 * (j - 1)
  local l, err = open(KEYS[base + 1], KEYS[base + 2], KEYS[base + 3])
  if not l then
    return fail('@' .. j .. ' ' .. err)
  end
  if seen_lists[l.meta] then
    return fail('bad-args list twice')
  end
  seen_lists[l.meta] = true
  l.creds, l.alloc = KEYS[base + 4], KEYS[base + 5]
  local expect = uint(ARGV[at])
  if not expect then
    return fail('bad-args expect')
  end
  if expect ~= l.version then
    return fail('conflict version ' .. j)
  end
  local extends = ARGV[at + 1]
  if extends ~= '' and extends ~= 'forever' and not uint(extends) then
    return fail('bad-args extends')
  end
  l.extends = extends
  local c = uint(ARGV[at + 2])
  if not c then
    return fail('bad-args claims')
  end
  local seen = {}
  for k = 1, c do
    local i = uint(ARGV[at + 2 + k])
    if not i or i >= l.size then
      return fail('bad-args claim')
    end
    if seen[i] or redis.call('GETBIT', l.alloc, i) == 1 then
      return fail('conflict claimed ' .. j)
    end
    seen[i] = true
    l.claims[k] = i
  end
  at = at + 3 + c
  local r = uint(ARGV[at])
  if not r then
    return fail('bad-args records')
  end
  for k = 1, r do
    local i = uint(ARGV[at + 2 * k - 1])
    local rec = ARGV[at + 2 * k]
    if not i or i >= l.size or not rec then
      return fail('bad-args record')
    end
    l.recs[#l.recs + 1] = i
    l.recs[#l.recs + 1] = rec
  end
  at = at + 1 + 2 * r
  local changes = uint(ARGV[at])
  if not changes or at + 2 * changes > #ARGV then
    return fail('bad-args changes')
  end
  err = check(l, at + 1, changes)
  if err then
    return fail('@' .. j .. ' ' .. err)
  end
  at = at + 1 + 2 * changes
  -- A key of the wrong type must fail here, before any write.
  redis.call('HLEN', l.creds)
  lists[j] = l
end
local binds = #KEYS - 5 * n
if #ARGV ~= at - 1 + binds then
  return fail('bad-args binds')
end
for q = 1, binds do
  if redis.call('EXISTS', KEYS[5 * n + q]) == 1 then
    return fail('conflict bound')
  end
end

-- Writes.
local ret = {}
for j = 1, n do
  write(lists[j], now)
  ret[j] = lists[j].newv
end
for q = 1, binds do
  redis.call('SET', KEYS[5 * n + q], ARGV[at - 1 + q])
end
return ret
