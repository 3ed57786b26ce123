-- Server-side helpers for kt's Kyoto Tycoon client (run with: ktserver -scr kt.lua).
--
-- Each procedure takes the request map and fills the reply map, as Kyoto Tycoon's
-- play_script calls them: KyotoTycoon.script("hset", {...}) or client.lua.hset(...).
-- Every procedure accepts an optional "db" argument (database index, 0-based).
-- The procedure names and their arguments are those coleifer/kt's kt.lua offered.
-- Read-modify-write helpers (hashes, sets, lists) read the record, change it and write
-- it back keeping its expiration time; like kt's own, they are not atomic.
kt = __kyototycoon__

local OK, INVALID, LOGIC, INTERNAL = kt.RVSUCCESS, kt.RVEINVALID, kt.RVELOGIC, kt.RVEINTERNAL

-- The database named by inmap.db (removed from inmap), or the default one.
local function take_db(inmap)
  local idx = inmap.db
  inmap.db = nil
  if idx == nil then return kt.db end
  return kt.dbs[(tonumber(idx) or -1) + 1]
end

-- Checks that every name in `names` is present in inmap; logs the first one missing.
local function require_args(proc, inmap, names)
  for _, name in ipairs(names) do
    if inmap[name] == nil then
      kt.log("info", proc .. ": missing required argument '" .. name .. "'")
      return false
    end
  end
  return true
end

-- Runs fn(container, inmap, outmap) on the record named by inmap[keyarg], loaded with
-- `load` and, when fn returns changed=true, stored back with `dump`.
-- fn returns (ok, changed); ok=false means bad arguments (RVELOGIC).
local function with_record(proc, inmap, outmap, keyarg, load, dump, fn)
  if not require_args(proc, inmap, { keyarg }) then return INVALID end
  local key = inmap[keyarg]
  inmap[keyarg] = nil
  local db = take_db(inmap)
  if not db then return INVALID end
  local raw, xt = db:get(key)
  local container = {}
  if raw then container = load(raw) end
  local ok, changed = fn(container, inmap, outmap)
  if not ok then return LOGIC end
  if changed and not db:set(key, dump(container), xt) then return INTERNAL end
  return OK
end

local function map_record(proc, fn)
  return function(inmap, outmap)
    return with_record(proc, inmap, outmap, "table_key", kt.mapload, kt.mapdump, fn)
  end
end

local function set_record(proc, fn)
  return function(inmap, outmap)
    return with_record(proc, inmap, outmap, "key", kt.mapload, kt.mapdump, fn)
  end
end

local function list_record(proc, fn)
  return function(inmap, outmap)
    return with_record(proc, inmap, outmap, "key", kt.arrayload, kt.arraydump, fn)
  end
end

local function count(t)
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  return n
end

local function flag(b) if b then return 1 end return 0 end

-- ---------------------------------------------------------------- hashes
-- A hash is one record holding a map (kt.mapdump); "table_key" names the record.

hmset = map_record("hmset", function(h, args, out)     -- { table_key, k=v... } -> { num }
  local n = 0
  for k, v in pairs(args) do h[k] = v; n = n + 1 end
  out.num = n
  return true, true
end)

hmget = map_record("hmget", function(h, args, out)     -- { table_key, k... } -> { k=v... }
  for k in pairs(args) do out[k] = h[k] end
  return true, false
end)

hmdel = map_record("hmdel", function(h, args, out)     -- { table_key, k... } -> { num }
  local n = 0
  for k in pairs(args) do
    if h[k] ~= nil then h[k] = nil; n = n + 1 end
  end
  out.num = n
  return true, n > 0
end)

hgetall = map_record("hgetall", function(h, args, out) -- { table_key } -> { k=v... }
  for k, v in pairs(h) do out[k] = v end
  return true, false
end)

hset = map_record("hset", function(h, args, out)       -- { table_key, key, value } -> { num }
  if args.key == nil or args.value == nil then return false end
  h[args.key] = args.value
  out.num = 1
  return true, true
end)

hsetnx = map_record("hsetnx", function(h, args, out)   -- { table_key, key, value } -> { num }
  if args.key == nil or args.value == nil then return false end
  if h[args.key] ~= nil then out.num = 0; return true, false end
  h[args.key] = args.value
  out.num = 1
  return true, true
end)

hget = map_record("hget", function(h, args, out)       -- { table_key, key } -> { value }
  if args.key == nil then return false end
  out.value = h[args.key]
  return true, false
end)

hdel = map_record("hdel", function(h, args, out)       -- { table_key, key } -> { num }
  if args.key == nil then return false end
  local present = h[args.key] ~= nil
  h[args.key] = nil
  out.num = flag(present)
  return true, present
end)

hlen = map_record("hlen", function(h, args, out)       -- { table_key } -> { num }
  out.num = count(h)
  return true, false
end)

hcontains = map_record("hcontains", function(h, args, out) -- { table_key, key } -> { num }
  if args.key == nil then return false end
  out.num = flag(h[args.key] ~= nil)
  return true, false
end)

-- ---------------------------------------------------------------- sets
-- A set is one record holding a map whose keys are the members; several members in one
-- "value" argument are separated by "\1".

sadd = set_record("sadd", function(s, args, out)       -- { key, value } -> { num }
  if args.value == nil then return false end
  local n = 0
  for _, m in ipairs(kt.split(args.value, "\1")) do
    if s[m] == nil then s[m] = ""; n = n + 1 end
  end
  out.num = n
  return true, n > 0
end)

srem = set_record("srem", function(s, args, out)       -- { key, value } -> { num }
  if args.value == nil then return false end
  local n = 0
  for _, m in ipairs(kt.split(args.value, "\1")) do
    if s[m] ~= nil then s[m] = nil; n = n + 1 end
  end
  out.num = n
  return true, n > 0
end)

scard = set_record("scard", function(s, args, out)     -- { key } -> { num }
  out.num = count(s)
  return true, false
end)

sismember = set_record("sismember", function(s, args, out) -- { key, value } -> { num }
  if args.value == nil then return false end
  out.num = flag(s[args.value] ~= nil)
  return true, false
end)

smembers = set_record("smembers", function(s, args, out) -- { key } -> { member="1"... }
  for m in pairs(s) do out[m] = "1" end
  return true, false
end)

spop = set_record("spop", function(s, args, out)       -- { key } -> { num, value }
  local m = next(s)
  out.num = flag(m ~= nil)
  if m == nil then return true, false end
  out.value = m
  s[m] = nil
  return true, true
end)

-- Two-set operations: { key1, key2, dest? } -> { member="1"... }; with dest the result is
-- also stored there as a set.  combine(a, b, result) fills result from the two sets.
local function set_operation(proc, combine)
  return function(inmap, outmap)
    if not require_args(proc, inmap, { "key1", "key2" }) then return INVALID end
    local db = take_db(inmap)
    if not db then return INVALID end
    local a, b = db:get(inmap.key1), db:get(inmap.key2)
    local result = {}
    combine(a and kt.mapload(a) or {}, b and kt.mapload(b) or {}, result)
    for m, v in pairs(result) do outmap[m] = v end
    if inmap.dest and not db:set(inmap.dest, kt.mapdump(result)) then return INTERNAL end
    return OK
  end
end

sinter = set_operation("sinter", function(a, b, r)
  for m in pairs(a) do if b[m] ~= nil then r[m] = "1" end end
end)
sdiff = set_operation("sdiff", function(a, b, r)
  for m in pairs(a) do if b[m] == nil then r[m] = "1" end end
end)
sunion = set_operation("sunion", function(a, b, r)
  for m in pairs(a) do r[m] = "1" end
  for m in pairs(b) do r[m] = "1" end
end)

-- ---------------------------------------------------------------- lists
-- A list is one record holding an array (kt.arraydump); indexes are 0-based and negative
-- indexes count from the end, as in Python.

-- 1-based position of a Python-style index into an array of n items, or nil.
local function position(n, index)
  local i = tonumber(index or 0)
  if i == nil then return nil end
  if i < 0 then i = i + n end
  if i < 0 or i >= n then return nil end
  return i + 1
end

llpush = list_record("llpush", function(l, args, out)  -- { key, value } -> {}
  if args.value == nil then return false end
  table.insert(l, 1, args.value)
  return true, true
end)

lrpush = list_record("lrpush", function(l, args, out)  -- { key, value } -> {}
  if args.value == nil then return false end
  l[#l + 1] = args.value
  return true, true
end)

llpop = list_record("llpop", function(l, args, out)    -- { key } -> { value }
  if #l == 0 then return true, false end
  out.value = table.remove(l, 1)
  return true, true
end)

lrpop = list_record("lrpop", function(l, args, out)    -- { key } -> { value }
  if #l == 0 then return true, false end
  out.value = table.remove(l)
  return true, true
end)

llen = list_record("llen", function(l, args, out)      -- { key } -> { num }
  out.num = #l
  return true, false
end)

lindex = list_record("lindex", function(l, args, out)  -- { key, index } -> { value }
  local p = position(#l, args.index)
  if p then out.value = l[p] end
  return true, false
end)

lset = list_record("lset", function(l, args, out)      -- { key, index, value } -> {}
  local p = position(#l, args.index)
  if p == nil or args.value == nil then return false end
  l[p] = args.value
  return true, true
end)

linsert = list_record("linsert", function(l, args, out) -- { key, index, value } -> {}
  local p = position(#l, args.index)                     -- inserts before the item at index
  if p == nil or args.value == nil then return false end
  table.insert(l, p, args.value)
  return true, true
end)

-- { key, start?, stop? } -> { "0"=item, "1"=item... }: the Python slice l[start:stop],
-- numbered by position in the list.
-- A start before the first item gives an empty range (as kt's lrange did).
lrange = list_record("lrange", function(l, args, out)
  local n = #l
  local first, stop = tonumber(args.start or 0), tonumber(args.stop or n)
  if first == nil or stop == nil then return false end
  if first < 0 then first = first + n end
  if stop < 0 then stop = stop + n end
  if first < 0 then return true, false end
  if stop > n then stop = n end
  for i = first, stop - 1 do out[tostring(i)] = l[i + 1] end
  return true, false
end)

-- ---------------------------------------------------------------- records

-- { src, dest } -> {}: moves a record (value and expiration time) to another key.
function move(inmap, outmap)
  if not require_args("move", inmap, { "src", "dest" }) then return INVALID end
  local db = take_db(inmap)
  if not db then return INVALID end
  local value, xt = db:get(inmap.src)
  if value == nil then return LOGIC end
  if not db:set(inmap.dest, value, xt) then return INTERNAL end
  db:remove(inmap.src)
  return OK
end

-- Walks a cursor from `start` (or the first record) while visit(key, value) returns true.
local function walk(db, start, visit)
  local cur = db:cursor()
  local positioned
  if start then positioned = cur:jump(start) else positioned = cur:jump() end
  while positioned do
    local key, value = cur:get(false)
    if key == nil or not visit(key, value) then break end
    positioned = cur:step()
  end
  cur:disable()
end

-- {} -> { k=v... }: every record of the database.
function list(inmap, outmap)
  local db = take_db(inmap)
  if not db then return INVALID end
  walk(db, nil, function(k, v) outmap[k] = v; return true end)
  return OK
end

-- { start?, stop? } -> { k=v... }: records with start <= key <= stop (in the database's
-- key order; meaningful on ordered databases).
function get_range(inmap, outmap)
  local db = take_db(inmap)
  if not db then return INVALID end
  local stop = inmap.stop
  walk(db, inmap.start, function(k, v)
    if stop and k > stop then return false end
    outmap[k] = v
    return true
  end)
  return OK
end

-- { key, start?, stop? } -> { value }: the Python slice value[start:stop] of a record.
function get_part(inmap, outmap)
  if not require_args("get_part", inmap, { "key" }) then return INVALID end
  local db = take_db(inmap)
  if not db then return INVALID end
  local value = db:get(inmap.key)
  if value == nil then return OK end
  local n = #value
  local function bound(v, default)
    local i = tonumber(v or default)
    if i < 0 then i = i + n end
    if i < 0 then i = 0 end
    if i > n then i = n end
    return i
  end
  local first, stop = bound(inmap.start, 0), bound(inmap.stop, n)
  outmap.value = string.sub(value, first + 1, stop)
  return OK
end

-- { text=method... } -> { text=hash... }: method "fnv" or "murmur" (the default).
function hash(inmap, outmap)
  inmap.db = nil
  for text, method in pairs(inmap) do
    if method == "fnv" then
      outmap[text] = string.format("%.0f", kt.hash_fnv(text))
    else
      outmap[text] = string.format("%.0f", kt.hash_murmur(text))
    end
  end
  return OK
end

-- {} -> { version }: the Lua runtime's version (LuaJIT's when the server uses it).
function jit_version(inmap, outmap)
  if jit and jit.version then outmap.version = "v" .. jit.version else outmap.version = _VERSION end
  return OK
end

-- ---------------------------------------------------------------- hexastore
-- A triple (s, p, o) is stored as three empty records "spo::s::p::o", "pos::p::o::s" and
-- "osp::o::s::p", so that any one or two known parts are a key prefix.

local SEP = "::"
local LAYOUTS = { spo = { "s", "p", "o" }, pos = { "p", "o", "s" }, osp = { "o", "s", "p" } }

local function triple_key(layout, parts)
  local fields = { layout }
  for i, name in ipairs(LAYOUTS[layout]) do fields[i + 1] = parts[name] end
  return table.concat(fields, SEP)
end

local function triple_keys(t)
  return { triple_key("spo", t), triple_key("pos", t), triple_key("osp", t) }
end

local function triple_args(proc, inmap, all)
  local t = { s = inmap.s, p = inmap.p, o = inmap.o }
  if all and not require_args(proc, inmap, { "s", "p", "o" }) then return nil end
  if not all and t.s == nil and t.p == nil and t.o == nil then
    kt.log("info", proc .. ": give at least one of s, p, o")
    return nil
  end
  return t
end

-- { s, p, o } -> {}
function hx_add(inmap, outmap)
  local db = take_db(inmap)
  local t = triple_args("hx_add", inmap, true)
  if not db or not t then return INVALID end
  local records = {}
  for _, key in ipairs(triple_keys(t)) do records[key] = "" end
  db:set_bulk(records)
  return OK
end

-- { s, p, o } -> {}
function hx_remove(inmap, outmap)
  local db = take_db(inmap)
  local t = triple_args("hx_remove", inmap, true)
  if not db or not t then return INVALID end
  db:remove_bulk(triple_keys(t))
  return OK
end

-- { s?, p?, o? } -> { <part><n>=value... }: the unknown parts of every matching triple,
-- numbered in key order (e.g. { o0="huey", o1="zaizee" } for s and p given).
function hx_query(inmap, outmap)
  local db = take_db(inmap)
  local t = triple_args("hx_query", inmap, false)
  if not db or not t then return INVALID end
  if t.s and t.p and t.o then
    if db:get(triple_key("spo", t)) ~= nil then outmap["0"] = "" end
    return OK
  end
  -- the layout whose leading parts are exactly the known ones
  local layout
  if t.s and t.p then layout = "spo" elseif t.p and t.o then layout = "pos"
  elseif t.o and t.s then layout = "osp" elseif t.s then layout = "spo"
  elseif t.p then layout = "pos" else layout = "osp" end
  local names = LAYOUTS[layout]
  local prefix = { layout }
  for i = 1, 3 do
    if t[names[i]] == nil then break end
    prefix[#prefix + 1] = t[names[i]]
  end
  prefix = table.concat(prefix, SEP) .. SEP
  local n = 0
  walk(db, prefix, function(key)
    if string.sub(key, 1, #prefix) ~= prefix then return false end
    local fields = {}
    local rest = string.sub(key, #layout + #SEP + 1)
    for i = 1, 2 do
      local at = string.find(rest, SEP, 1, true)
      fields[i] = string.sub(rest, 1, at - 1)
      rest = string.sub(rest, at + #SEP)
    end
    fields[3] = rest
    for i, name in ipairs(names) do
      if t[name] == nil then outmap[name .. n] = fields[i] end
    end
    n = n + 1
    return true
  end)
  return OK
end

-- ---------------------------------------------------------------- queues
-- A queue "q" keeps a counter record "q" and one record per item, "q\t%012d" (the id), so
-- the database's key order is the queue order (ordered databases only).

local function item_key(queue, id) return string.format("%s\t%012d", queue, id) end

local function enqueue(db, queue, data)
  local id = db:increment_double(queue, 1)
  if not id then return nil end
  if not db:add(item_key(queue, id), data) then return nil end
  return id
end

-- Visits up to n (n < 0: all) items of a queue from the front (backward=false) or the
-- back.  visit(value) returns (hit, remove): hits count toward n; remove deletes the item.
local function each_item(db, queue, n, backward, visit)
  local prefix = queue .. "\t"
  local cur = db:cursor()
  local positioned
  if backward then
    positioned = cur:jump_back(prefix .. "\255")
  else
    positioned = cur:jump(prefix)
  end
  local hits = 0
  while positioned and n ~= 0 do
    local key, value = cur:get(false)
    if key == nil or string.sub(key, 1, #prefix) ~= prefix then break end
    local hit, remove = visit(value)
    if hit then hits = hits + 1; n = n - 1 end
    if backward then
      positioned = cur:step_back()
      if remove then db:remove(key) end
    elseif remove then
      cur:remove()  -- leaves the cursor on the next record
    else
      positioned = cur:step()
    end
  end
  cur:disable()
  return hits
end

local function queue_proc(proc, required, fn)
  return function(inmap, outmap)
    if not require_args(proc, inmap, required) then return INVALID end
    local db = take_db(inmap)
    if not db then return INVALID end
    return fn(db, inmap, outmap) or OK
  end
end

-- { queue, data } -> { id }
queue_add = queue_proc("queue_add", { "queue", "data" }, function(db, args, out)
  local id = enqueue(db, args.queue, args.data)
  if not id then return LOGIC end
  out.id = string.format("%d", id)
end)

-- { queue, "0"=data, "1"=data... } -> { num }
queue_madd = queue_proc("queue_madd", { "queue" }, function(db, args, out)
  local n = 0
  while args[tostring(n)] ~= nil do
    if not enqueue(db, args.queue, args[tostring(n)]) then return LOGIC end
    n = n + 1
  end
  out.num = n
end)

-- Pop or peek: { queue, n? } -> { "0"=data, "1"=data... } in queue order from that end.
local function take(proc, backward, remove)
  return queue_proc(proc, { "queue" }, function(db, args, out)
    local i = 0
    each_item(db, args.queue, tonumber(args.n or 1) or 1, backward, function(value)
      out[tostring(i)] = value
      i = i + 1
      return true, remove
    end)
  end)
end

queue_pop = take("queue_pop", false, true)
queue_rpop = take("queue_rpop", true, true)
queue_peek = take("queue_peek", false, false)
queue_rpeek = take("queue_rpeek", true, false)

-- Removal by value: { queue, data, n? } -> { num } (n < 0 or absent: every match).
local function remove_matching(proc, backward)
  return queue_proc(proc, { "queue", "data" }, function(db, args, out)
    out.num = each_item(db, args.queue, tonumber(args.n or -1) or -1, backward, function(value)
      local hit = value == args.data
      return hit, hit
    end)
  end)
end

queue_remove = remove_matching("queue_remove", false)
queue_rremove = remove_matching("queue_rremove", true)

-- { queue } -> { num }
queue_size = queue_proc("queue_size", { "queue" }, function(db, args, out)
  out.num = #db:match_prefix(args.queue .. "\t")
end)

-- { queue } -> { num }: removes every item and the id counter.
queue_clear = queue_proc("queue_clear", { "queue" }, function(db, args, out)
  local keys = db:match_prefix(args.queue .. "\t")
  if #keys > 0 then db:remove_bulk(keys) end
  db:remove(args.queue)
  out.num = #keys
end)
