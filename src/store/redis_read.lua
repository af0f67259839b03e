-- statusd: read a list's metadata and the issuer records planning an operation needs, with
-- every record their families link to, at one version in one step (docs/redis.md).
--
-- KEYS[1] = statusd:{<id>}:meta   KEYS[2] = statusd:{<id>}:creds
-- ARGV = the indices wanted.
--
-- Returns {meta, records}: meta as HGETALL returns it (empty if the list does not exist), and
-- records = {idx_1, record_1, idx_2, record_2, ...}, every record that exists among the indices
-- wanted and those their records link to, transitively: a record's derived cards (`children`,
-- indices) and its parent (`parent.idx`), all in the same list (links into other lists,
-- `children_elsewhere` and a `parent.list`, are not followed). A record that is not JSON is
-- returned as it is, without following it (the caller reports it). Reads only.

local meta = redis.call('HGETALL', KEYS[1])
local out, queue, seen = {}, {}, {}

-- Queues an index given as a decimal string or a JSON number; ignores anything else.
local function want(i)
  if type(i) == 'string' and string.match(i, '^%d+$') and #i <= 10 then
    i = tonumber(i)
  end
  if type(i) == 'number' and i >= 0 and i < 4294967296 and i == math.floor(i) then
    queue[#queue + 1] = i
  end
end

for k = 1, #ARGV do
  want(ARGV[k])
end
local head = 1
while head <= #queue do
  local i = queue[head]
  head = head + 1
  local key = string.format('%d', i)
  if not seen[key] then
    seen[key] = true
    local rec = redis.call('HGET', KEYS[2], key)
    if rec then
      out[#out + 1] = i
      out[#out + 1] = rec
      local ok, r = pcall(cjson.decode, rec)
      if ok and type(r) == 'table' then
        if type(r.children) == 'table' then
          for _, c in ipairs(r.children) do
            want(c)
          end
        end
        -- A parent in another list (`parent.list`, a derived pool) is the issuer's to read.
        if type(r.parent) == 'table' and r.parent.list == nil then
          want(r.parent.idx)
        end
      end
    end
  end
end
return { meta, out }
