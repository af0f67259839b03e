-- statusd: create one list's metadata if it does not exist yet (docs/redis.md).
--
-- KEYS[1] = statusd:{<id>}:meta   KEYS[2] = statusd:{<id>}:data   KEYS[3] = statusd:{<id>}:feed
-- ARGV = bits, size, now (Unix seconds), validated by the caller.
--
-- Returns 1 if it created the list, 0 if meta already existed (nothing is written then).
-- The caller adds the id to statusd:lists afterwards, in either case: that set lives in another
-- cluster slot, and adding twice is harmless, so retrying repairs a crash between the steps.

if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
-- A list without meta does not exist: data or a feed left behind by an earlier list of the same
-- id (deleted by an operator) must not show through in the new, all-VALID list.
redis.call('DEL', KEYS[2], KEYS[3])
redis.call('HSET', KEYS[1], 'bits', ARGV[1], 'size', ARGV[2], 'version', 0, 'updated_at', ARGV[3])
return 1
