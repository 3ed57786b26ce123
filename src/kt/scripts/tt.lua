-- Server-side helpers for kt's Tokyo Tyrant client (run with: ttserver -ext tt.lua).
--
-- ttserver calls name(key, value) for TokyoTyrant.script("name", key, value) (or
-- client.lua.name(key, value)) and answers the returned string; nil means failure.
-- The procedure names and their arguments are those coleifer/kt's tt.lua offered.
-- Lists come back as "line\n" per item, records as "key\tvalue\n" per record, which
-- TokyoTyrant.script(..., as_list=True / as_dict=True) turns into a list / dict.

local NUL = string.char(0)

local function lines(items)
  local out = {}
  for i = 1, #items do out[i] = items[i] .. "\n" end
  return table.concat(out)
end

-- Records whose key (or value) passes test(key, value), as "key\tvalue\n" lines;
-- at most `limit` records when limit > 0.
local function scan(test, limit)
  local out = {}
  _foreach(function(k, v)
    if test(k, v) then
      out[#out + 1] = k .. "\t" .. v .. "\n"
      if limit > 0 and #out >= limit then return false end
    end
    return true
  end)
  return table.concat(out)
end

-- ---------------------------------------------------------------- searching

-- match_pattern(lua_pattern, max?): records whose key matches a Lua pattern.
function match_pattern(key, value)
  return scan(function(k) return string.match(k, key) ~= nil end, tonumber(value) or 0)
end

-- match_similar(text, distance?): records whose key is within an edit distance (default 0).
function match_similar(key, value)
  local distance = tonumber(value) or 0
  return scan(function(k) return _dist(k, key) <= distance end, 0)
end

-- match_similar_value(text, distance?): records whose value is within an edit distance.
function match_similar_value(key, value)
  local distance = tonumber(value) or 0
  return scan(function(k, v) return _dist(v, key) <= distance end, 0)
end

-- ---------------------------------------------------------------- records

function lock(key, value)
  return tostring(_lock(key) and true or false)
end

function unlock(key, value)
  return tostring(_unlock(key) and true or false)
end

-- seize(key): the record's value (empty when missing), removing the record.
function seize(key, value)
  _lock(key)
  local current = _get(key)
  if current ~= nil then _out(key) end
  _unlock(key)
  return current or ""
end

-- ---------------------------------------------------------------- table-database values
-- A table record is "col\0value\0col\0value..."; these read and change single columns
-- of such a record (also usable on hash/B+ tree databases holding that format).

local function columns(record)
  local map = {}
  if record == nil then return map end
  local parts = _split(record)  -- no delimiters: split at NUL
  for i = 1, #parts - 1, 2 do map[parts[i]] = parts[i + 1] end
  return map
end

local function record_of(map)
  local parts = {}
  for column, v in pairs(map) do
    parts[#parts + 1] = column
    parts[#parts + 1] = v
  end
  return table.concat(parts, NUL)
end

-- Lua-side codec of that format, for other scripts.
mapload = columns
mapdump = record_of

-- table_get(key, column): one column's value ("" when missing).
function table_get(key, value)
  return columns(_get(key))[value] or ""
end

-- table_update(key, "col\0value\0..."): sets the given columns, keeping the others.
function table_update(key, value)
  local changes = _split(value)
  if #changes < 2 then
    _log("table_update: expected NUL-separated column/value pairs")
    return "false"
  end
  _lock(key)
  local map = columns(_get(key))
  for i = 1, #changes - 1, 2 do map[changes[i]] = changes[i + 1] end
  local ok = _put(key, record_of(map))
  _unlock(key)
  return tostring(ok and true or false)
end

-- table_pop(key, column): removes one column and returns its value ("" when missing).
function table_pop(key, value)
  _lock(key)
  local map = columns(_get(key))
  local popped = map[value]
  if popped ~= nil then
    map[value] = nil
    _put(key, record_of(map))
  end
  _unlock(key)
  return popped or ""
end

-- ---------------------------------------------------------------- utilities

-- split(text, delimiters?): the pieces of text, one per line (default: whitespace).
function split(key, value)
  if key == "" then return "" end
  if value == "" then value = " \t\r\n" end  -- _split's own default is NUL, not whitespace
  return lines(_split(key, value))
end

-- hash(text, method?): digest of text; method as ttserver's _hash (md5 by default).
function hash(key, value)
  if value == "" then value = "md5" end
  return _hash(value, key)
end

-- hash_key(key, method?): digest of the value stored at key ("" when missing).
function hash_key(key, value)
  local stored = _get(key)
  if stored == nil then return "" end
  if value == "" then value = "md5" end
  return _hash(value, stored)
end

function time(key, value)
  return string.format("%.6f", _time())
end

function ptime(key, value)
  _log("current time: " .. string.format("%.6f", _time()))
  return "ok"
end

function getdate(key, value)
  return os.date("%Y-%m-%dT%H:%M:%S")
end

-- glob(pattern): matching paths on the server, one per line.
function glob(key, value)
  return lines(_glob(key))
end

-- script(code): evaluates Lua code in every state of the server (ttserver's _eval).
function script(key, value)
  if _eval(key) then return "ok" end
  return nil
end

-- ---------------------------------------------------------------- queues
-- Queue "q" keeps a counter record "q" and one record per item, "q\t%012d" (the id), so
-- prefix order is queue order (B+ tree databases keep it; hash databases do not).

local function prefix_of(queue) return queue .. "\t" end

-- queue_add(queue, data): appends an item.
function queue_add(key, value)
  local id = _adddouble(key, 1)
  if not id then
    _log("queue_add: cannot advance the id counter of " .. key)
    return nil
  end
  if not _putkeep(string.format("%s%012d", prefix_of(key), id), value) then
    _log("queue_add: item record already exists")
    return nil
  end
  return "ok"
end

-- queue_pop(queue, n?): removes up to n (default 1) items from the front, one per line.
function queue_pop(key, value)
  local n = tonumber(value) or 1
  if n < 1 then n = 1 end
  local popped = {}
  for _, item in ipairs(_fwmkeys(prefix_of(key), n)) do
    local data = _get(item)
    if data ~= nil and _out(item) then popped[#popped + 1] = data end
  end
  return lines(popped)
end

-- queue_bpop(queue, n?): like queue_pop, waiting (up to 30 s, polling) for an item.
function queue_bpop(key, value)
  local deadline = _time() + 30
  local popped = queue_pop(key, value)
  while popped == "" and _time() < deadline do
    _sleep(0.1)
    popped = queue_pop(key, value)
  end
  return popped
end

-- queue_size(queue): number of items.
function queue_size(key, value)
  return tostring(#_fwmkeys(prefix_of(key)))
end

-- queue_clear(queue): removes every item and the counter; returns how many items.
function queue_clear(key, value)
  local items = _fwmkeys(prefix_of(key))
  if #items > 0 then _misc("outlist", unpack(items)) end
  _out(key)
  return tostring(#items)
end
