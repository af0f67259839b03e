-- statusd: create one list's metadata if it does not exist yet (docs/redis.md).
--
-- KEYS[1] = statusd:{<id>}:meta   KEYS[2] = statusd:{<id>}:data   KEYS[3] = statusd:{<id>}:feed
-- ARGV = bits, size, now (Unix seconds)[, purpose], validated by the caller.
--
-- Returns 1 if it created the list, 0 if meta already existed (nothing is written then).
-- The caller adds the id to statusd:lists afterwards, in either case: that set lives in another
-- cluster slot, and adding twice is harmless, so retrying repairs a crash between the steps.

if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
-- A list without meta does not exist: data or a feed left behind by an earlier list of the same
-- id (deleted by an operator) must not show through in the new, all-VALID list.
-- The same goes for the issuer registry's keys (KEYS[4] creds, KEYS[5] alloc) when given.
redis.call('DEL', unpack(KEYS, 2))
-- expires_max 0: no credential keeps the new list alive yet (docs/redis.md).
redis.call('HSET', KEYS[1], 'bits', ARGV[1], 'size', ARGV[2], 'version', 0, 'updated_at', ARGV[3],
  'expires_max', 0)
if ARGV[4] then
  redis.call('HSET', KEYS[1], 'purpose', ARGV[4], 'allocated', 0)
end
return 1
