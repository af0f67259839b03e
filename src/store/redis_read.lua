-- statusd: read a list's metadata and the issuer records planning an operation needs, with
-- every record their families link to, at one version in one step (docs/redis.md).
--
-- KEYS[1] = statusd:{<id>}:meta   KEYS[2] = statusd:{<id>}:creds
-- ARGV = the indices wanted; or 'follow' and then the indices wanted (standalone Redis only).
--
-- Returns {meta, records}: meta as HGETALL returns it (empty if the list does not exist), and
-- records = {idx_1, record_1, idx_2, record_2, ...}, every record that exists among the indices
-- wanted and those their records link to, transitively: a record's derived cards (`children`,
-- indices) and its parent (`parent.idx`), all in the same list. A record that is not JSON is
-- returned as it is, without following it (the caller reports it). Reads only.
--
-- Links into other lists (`children_elsewhere` entries and a `parent.list`: a derived pool)
-- are followed only with 'follow', one step: then the reply has a third element,
-- {list_1, meta_1, records_1, list_2, ...}, for every other list the records read link to that
-- exists, its metadata and the records linked to with their families in it, read the same
-- way. Those lists' keys are not declared (their names are built here from ids checked as the
-- store checks them), which only a standalone Redis allows: never 'follow' on a cluster.

local PREFIX = 'statusd:{'

-- A list id as the store accepts it (src/store/mod.rs check_id).
local function list_id(l)
  return type(l) == 'string' and #l >= 1 and #l <= 64 and string.match(l, '^[%w_-]+$') ~= nil
end

-- Decodes a JSON number or a decimal string as an index; nil for anything else.
local function index(i)
  if type(i) == 'string' and string.match(i, '^%d+$') and #i <= 10 then
    i = tonumber(i)
  end
  if type(i) == 'number' and i >= 0 and i < 4294967296 and i == math.floor(i) then
    return i
  end
  return nil
end

-- Every record of hash `creds` among `wanted` and their families in it (transitively), as
-- {idx, record, ...}; `each(record)` sees every decoded record.
local function family(creds, wanted, each)
  local out, queue, seen = {}, {}, {}
  local function want(i)
    i = index(i)
    if i then
      queue[#queue + 1] = i
    end
  end
  for _, i in ipairs(wanted) do
    want(i)
  end
  local head = 1
  while head <= #queue do
    local i = queue[head]
    head = head + 1
    local key = string.format('%d', i)
    if not seen[key] then
      seen[key] = true
      local rec = redis.call('HGET', creds, key)
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
          -- A parent in another list (`parent.list`, a derived pool) is followed below, if at all.
          if type(r.parent) == 'table' and r.parent.list == nil then
            want(r.parent.idx)
          end
          if each then
            each(r)
          end
        end
      end
    end
  end
  return out
end

local follow = ARGV[1] == 'follow'
local wanted = {}
for k = (follow and 2 or 1), #ARGV do
  wanted[#wanted + 1] = ARGV[k]
end

local meta = redis.call('HGETALL', KEYS[1])
if not follow then
  return { meta, family(KEYS[2], wanted) }
end

-- The other lists the records read link to, in the order first named, with their indices.
local order, elsewhere = {}, {}
local function link(l, i)
  if list_id(l) and PREFIX .. l .. '}:meta' ~= KEYS[1] and index(i) then
    if not elsewhere[l] then
      elsewhere[l] = {}
      order[#order + 1] = l
    end
    local w = elsewhere[l]
    w[#w + 1] = i
  end
end
local out = family(KEYS[2], wanted, function(r)
  if type(r.children_elsewhere) == 'table' then
    for _, c in ipairs(r.children_elsewhere) do
      if type(c) == 'table' then
        link(c.list, c.idx)
      end
    end
  end
  if type(r.parent) == 'table' and r.parent.list ~= nil then
    link(r.parent.list, r.parent.idx)
  end
end)
local extra = {}
for _, l in ipairs(order) do
  local m = redis.call('HGETALL', PREFIX .. l .. '}:meta')
  if #m > 0 then
    extra[#extra + 1] = l
    extra[#extra + 1] = m
    extra[#extra + 1] = family(PREFIX .. l .. '}:creds', elsewhere[l])
  end
end
return { meta, out, extra }
