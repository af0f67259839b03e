-- statusd: retire a list, or delete a retired list's status data (docs/redis.md).
--
-- KEYS[1] = statusd:{<id>}:meta   KEYS[2] = statusd:{<id>}:data   KEYS[3] = statusd:{<id>}:feed
-- KEYS[4] = statusd:{<id>}:alloc
-- ARGV[1] = 'retire' or 'purge', ARGV[2] = now (Unix seconds),
-- ARGV[3] = for 'retire': the version the caller judged the list at.
--
-- retire: sets retired_at and bumps the version (a registry commit planned before fails as a
--         conflict; the write script refuses the list from now on); returns 1, or 0 if the
--         list was retired already.
-- purge:  deletes data, feed and alloc of a retired list and sets purged_at; meta (the
--         tombstone) and creds (the audit trail) stay. Returns 1, or 0 if purged already.
--
-- Errors: ERR STATUSD unknown-list, ERR STATUSD conflict version (retire: the list moved on),
--         ERR STATUSD not-retired (purge), ERR STATUSD bad-args <reason>.

-- fail and uint are redis_apply.lua's, word for word: scripts loaded separately cannot share a
-- function. Keep them in step with redis_apply.lua (the same error prefix, the same integer rule).
local function fail(msg)
  return redis.error_reply('ERR STATUSD ' .. msg)
end

local function uint(s)
  if type(s) == 'string' and #s <= 14 and string.match(s, '^%d+$') then
    return tonumber(s)
  end
  return nil
end

if redis.call('EXISTS', KEYS[1]) == 0 then
  return fail('unknown-list')
end
local now = uint(ARGV[2])
if not now then
  return fail('bad-args now')
end
local m = redis.call('HMGET', KEYS[1], 'version', 'retired_at', 'purged_at')
local id = string.match(KEYS[1], '{(.*)}') or KEYS[1]
if ARGV[1] == 'retire' then
  if m[2] then
    return 0
  end
  local expect = uint(ARGV[3])
  if not expect then
    return fail('bad-args expect')
  end
  if uint(m[1]) ~= expect then
    return fail('conflict version')
  end
  redis.call('HSET', KEYS[1], 'retired_at', now, 'version', expect + 1, 'updated_at', now)
  redis.call('PUBLISH', 'statusd:changes', id)
  return 1
elseif ARGV[1] == 'purge' then
  if not m[2] then
    return fail('not-retired')
  end
  if m[3] then
    return 0
  end
  redis.call('DEL', KEYS[2], KEYS[3], KEYS[4])
  redis.call('HSET', KEYS[1], 'purged_at', now)
  return 1
end
return fail('bad-args op')
