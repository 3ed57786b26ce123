"""The server APIs that the peer clients' Lua helpers use, called the same way (issue 10 point 10).

coleifer/kt ships ``kt/scripts/kt.lua`` and ``tt.lua``, ukt ships ``scripts/kt.lua``: Redis-like
hashes/sets/lists kept in ``kt.mapdump``/``kt.arraydump`` values whose xt is passed back to
``db:set``, ``move`` and ``touch`` built on ``accept_bulk`` visitors, queues on
``increment_double`` + cursors, ``match_prefix``/``remove_bulk``, and on TT ``_foreach``,
``_dist``, ``_split``, ``_fwmkeys``, ``_adddouble``, ``_lock``.  The scripts below are our own;
each procedure uses those calls in the same way, and the expected answers are the real servers'.
"""

from __future__ import annotations

import time

import pytest

from fidelity import FLAVOURS, KTWire, require_lua, served_with_script, start_kt, start_tt, tt_exchange
from kt.protocol import tt_binary as tt

require_lua()

KT_SCRIPT = r"""
kt = __kyototycoon__
db = kt.db

-- a map kept in one record; the record's xt is read and written back
function hashput(inmap, outmap)
  local key = inmap.table
  inmap.table = nil
  local value, xt = db:get(key)
  local t = {}
  if value then t = kt.mapload(value) end
  local n = 0
  for k, v in pairs(inmap) do t[k] = v; n = n + 1 end
  if not db:set(key, kt.mapdump(t), xt) then return kt.RVEINTERNAL end
  outmap.num = n
  local v2, xt2 = db:get(key)
  outmap.xt = xt2
  return kt.RVSUCCESS
end
function hashall(inmap, outmap)
  local value = db:get(inmap.table)
  if value then
    for k, v in pairs(kt.mapload(value)) do outmap[k] = v end
  end
  return kt.RVSUCCESS
end

-- a set: members split on \1
function setadd(inmap, outmap)
  local value = db:get(inmap.key)
  local t = {}
  if value then t = kt.mapload(value) end
  local n = 0
  local members = kt.split(inmap.value, "\1")
  for i = 1, #members do
    if t[members[i]] == nil then t[members[i]] = ""; n = n + 1 end
  end
  outmap.num = n
  outmap.parts = #members
  db:set(inmap.key, kt.mapdump(t))
  return kt.RVSUCCESS
end

-- a list: arraydump/arrayload with table.insert/remove
function listpush(inmap, outmap)
  local value, xt = db:get(inmap.key)
  local arr = {}
  if value then arr = kt.arrayload(value) end
  if inmap.left then table.insert(arr, 1, inmap.value) else table.insert(arr, inmap.value) end
  outmap.length = #arr
  db:set(inmap.key, kt.arraydump(arr), xt)
  return kt.RVSUCCESS
end
function listrange(inmap, outmap)
  local arr = kt.arrayload(db:get(inmap.key) or "")
  for i = 1, #arr do outmap[i - 1] = arr[i] end
  outmap.popped = table.remove(arr, 1)
  return kt.RVSUCCESS
end

-- move: accept_bulk over {src, dest}, removing the first and writing the second
function move(inmap, outmap)
  local first, val, vxt = true, nil, nil
  local order = {}
  local ok = db:accept_bulk({inmap.src, inmap.dest}, function(key, value, xt)
    table.insert(order, key)
    if first then
      first = false
      val, vxt = value, xt
      return kt.Visitor.REMOVE
    end
    if val then return val, vxt end
    return kt.Visitor.NOP
  end)
  outmap.ok = tostring(ok)
  outmap.order = table.concat(order, ",")
  if not val then return kt.RVELOGIC end
  return kt.RVSUCCESS
end

-- touch: a visitor answering the new xt as the string it was given; relative via -(xt + n)
function touch(inmap, outmap)
  local keys = {}
  for k, _ in pairs(inmap) do table.insert(keys, k) end
  db:accept_bulk(keys, function(key, value, xt)
    if not value then return kt.Visitor.NOP end
    outmap[key] = xt
    return value, inmap[key]
  end)
  return kt.RVSUCCESS
end
function touchrel(inmap, outmap)
  db:accept(inmap.key, function(key, value, xt)
    if not value then return kt.Visitor.NOP end
    local new_xt = xt + tonumber(inmap.n)
    outmap.before = xt
    return value, -new_xt
  end)
  local v, xt = db:get(inmap.key)
  outmap.after = xt
  return kt.RVSUCCESS
end

-- a queue: increment_double ids, %012d keys, cursor walks that remove
function enqueue(inmap, outmap)
  local id = db:increment_double(inmap.queue, 1)
  local key = string.format("%s\t%012d", inmap.queue, id)
  outmap.added = tostring(db:add(key, inmap.data))
  outmap.id = id
  return kt.RVSUCCESS
end
function dequeue(inmap, outmap)
  local n = tonumber(inmap.n or 1)
  local cur = db:cursor()
  local num = 0
  local pattern = string.format("^%s\t", inmap.queue)
  local found
  if inmap.back then
    found = cur:jump_back(string.format("%s\t\255", inmap.queue))
  else
    found = cur:jump(string.format("%s\t", inmap.queue))
  end
  while found and n ~= 0 do
    local k, v, xt = cur:get(false)
    if not k or not k:match(pattern) then break end
    outmap[tostring(num)] = v
    if not cur:remove() then break end
    if inmap.back then cur:step_back() end
    num = num + 1
    n = n - 1
  end
  cur:disable()
  local left = db:match_prefix(string.format("%s\t", inmap.queue))
  outmap.left = tostring(#left)
  return kt.RVSUCCESS
end
function queueclear(inmap, outmap)
  local keys = db:match_prefix(string.format("%s\t", inmap.queue))
  outmap.removed = db:remove_bulk(keys)
  outmap.counter = tostring(db:remove(inmap.queue))
  return kt.RVSUCCESS
end

-- listing with a cursor, get_key/get_value/step, and the error of the last call
function listing(inmap, outmap)
  local cur = db:cursor()
  if cur:jump(inmap.start) then
    while true do
      local key = cur:get_key()
      if inmap.stop and key > inmap.stop then break end
      outmap[key] = cur:get_value()
      if not cur:step() then break end
    end
  end
  cur:disable()
  return kt.RVSUCCESS
end
function lasterror(inmap, outmap)
  db:remove("surely-absent-key")
  local err = db:error()
  outmap.code = err:code()
  outmap.name = err:name()
  return kt.RVSUCCESS
end
function hashes(inmap, outmap)
  for key, val in pairs(inmap) do
    if val == "fnv" then outmap[key] = kt.hash_fnv(key) else outmap[key] = kt.hash_murmur(key) end
  end
end
"""


@pytest.fixture(scope="module", params=FLAVOURS)
def kt_peer(request, tmp_path_factory):
    # a B+ tree: the queues and listings walk keys in order, as the peers' users configure
    directory = tmp_path_factory.mktemp("peer")
    yield from served_with_script(start_kt, request.param, directory, "peer.lua", KT_SCRIPT, databases=("%",))


@pytest.fixture
def wire(kt_peer):
    w = KTWire(kt_peer)
    yield w
    w.close()


def call(wire, name, **params):
    return wire.rpc("play_script", name=name, **{"_" + k: v for k, v in params.items()})


def _near_now_plus(raw: bytes, offset: int) -> bool:
    return abs(int(raw) - (int(time.time()) + offset)) <= 2


def test_hash_records_keep_their_xt(wire):
    wire.rpc("remove", key="h1")
    assert call(wire, "hashput", table="h1", a="1", b="2") == (200, {b"_num": b"2", b"_xt": b"1099511627775"})
    wire.rpc("set", key="h2", value="", xt="-4102444800")
    # db:get gives the absolute xt and db:set reads a positive xt as relative: both servers
    # move the expiry to now + 4102444800
    status, out = call(wire, "hashput", table="h2", x="y")
    assert status == 200 and out[b"_num"] == b"1" and _near_now_plus(out[b"_xt"], 4102444800)
    assert call(wire, "hashall", table="h1") == (200, {b"_a": b"1", b"_b": b"2"})


def test_set_members_split_on_ctrl_a(wire):
    wire.rpc("remove", key="s1")
    assert call(wire, "setadd", key="s1", value="a\x01b\x01a") == (200, {b"_num": b"2", b"_parts": b"3"})
    assert call(wire, "setadd", key="s1", value="\x01") == (200, {b"_num": b"1", b"_parts": b"2"})


def test_lists_in_arraydump_values(wire):
    wire.rpc("remove", key="l1")
    assert call(wire, "listpush", key="l1", value="b") == (200, {b"_length": b"1"})
    assert call(wire, "listpush", key="l1", value="a", left="1") == (200, {b"_length": b"2"})
    assert call(wire, "listpush", key="l1", value="") == (200, {b"_length": b"3"})
    expected = {b"_0": b"a", b"_1": b"b", b"_2": b"", b"_popped": b"a"}
    assert call(wire, "listrange", key="l1") == (200, expected)


def test_move_with_accept_bulk(wire):
    wire.rpc("set", key="src", value="payload", xt="-4102444800")
    wire.rpc("remove", key="dst")
    assert call(wire, "move", src="src", dest="dst") == (200, {b"_ok": b"true", b"_order": b"src,dst"})
    status, out = wire.rpc("get", key="dst")  # the visitor's xt, read as relative again
    assert status == 200 and out[b"value"] == b"payload" and _near_now_plus(out[b"xt"], 4102444800)
    assert wire.rpc("get", key="src")[0] == 450
    assert call(wire, "move", src="src", dest="dst") == (450, {b"ERROR": b"the scripting procedure failed"})


def test_touch_with_string_and_relative_xt(wire):
    wire.rpc("set", key="t1", value="v")
    assert call(wire, "touch", t1="-4102444800", t2="-5") == (200, {b"_t1": b"1099511627775"})
    assert wire.rpc("get", key="t1") == (200, {b"value": b"v", b"xt": b"4102444800"})
    assert call(wire, "touchrel", key="t1", n="60") == (
        200, {b"_before": b"4102444800", b"_after": b"4102444860"})


def test_queue_on_increment_double_and_cursors(wire):
    call(wire, "queueclear", queue="q")
    for i, data in enumerate([b"one", b"two", b"three"], 1):
        expected = {b"_added": b"true", b"_id": str(i).encode()}
        assert call(wire, "enqueue", queue="q", data=data) == (200, expected)
    assert call(wire, "dequeue", queue="q") == (200, {b"_0": b"one", b"_left": b"2"})
    # cur:remove() moves the cursor forward (past the queue), so the walk back stops there
    assert call(wire, "dequeue", queue="q", back="1", n="5") == (200, {b"_0": b"three", b"_left": b"1"})
    assert call(wire, "queueclear", queue="q") == (200, {b"_removed": b"1", b"_counter": b"true"})


def test_cursor_listing_errors_and_hashes(wire):
    wire.rpc("set_bulk", **{"_r1": "1", "_r2": "2", "_r3": "3"})
    assert call(wire, "listing", start="r1", stop="r2") == (200, {b"_r1": b"1", b"_r2": b"2"})
    assert call(wire, "lasterror") == (200, {b"_code": b"7", b"_name": b"no record"})
    assert call(wire, "hashes", hello="fnv", world="murmur") == (
        200, {b"_hello": b"117791150636571", b"_world": b"198234568843185"})


TT_SCRIPT = r"""
function matching(key, value)
  local res = ""
  _foreach(function(k, v)
    if string.match(k, key) then res = res .. k .. "=" .. v .. ";" end
    return true
  end)
  return res
end
function similar(key, value)
  local limit = tonumber(value) or 0
  local n = 0
  _foreach(function(k, v)
    if _dist(k, key) <= limit then n = n + 1 end
    return true
  end)
  return n
end
function fields(key, value)
  local elems = _split(value)
  return #elems .. ":" .. table.concat(elems, ",")
end
function pop(key, value)
  _lock(key)
  local res = _get(key) or ""
  _out(key)
  _unlock(key)
  return res
end
function enqueue(key, value)
  local id = _adddouble(key, 1)
  if not id then return nil end
  if not _putkeep(string.format("%s\t%012d", key, id), value) then return nil end
  return "ok"
end
function dequeue(key, max)
  local keys = _fwmkeys(string.format("%s\t", key), tonumber(max) or 1)
  local res = ""
  for i = 1, #keys do
    local v = _get(keys[i])
    if _out(keys[i]) and v then res = res .. v .. "\n" end
  end
  return res
end
function queuesize(key)
  return #_fwmkeys(string.format("%s\t", key))
end
function digest(key, value)
  return _hash(key, value)
end
"""


@pytest.fixture(scope="module", params=FLAVOURS)
def tt_peer(request, tmp_path_factory):
    directory = tmp_path_factory.mktemp("peer")
    yield from served_with_script(start_tt, request.param, directory, "peer_tt.lua", TT_SCRIPT)


def ext(server, name, key=b"", value=b""):
    reply, closed = tt_exchange(server, tt.encode_ext(name, key, value))
    assert not closed
    return reply[5:] if reply[:1] == b"\x00" else None


def test_tt_helpers(tt_peer):
    tt_exchange(tt_peer, tt.encode_vanish())
    tt_exchange(tt_peer, tt.encode_put(b"apple", b"1") + tt.encode_put(b"apply", b"2"))
    assert ext(tt_peer, b"matching", b"^appl") in (b"apple=1;apply=2;", b"apply=2;apple=1;")
    assert ext(tt_peer, b"similar", b"appla", b"1") == b"2"
    assert ext(tt_peer, b"fields", b"", b"a\x00b\x00\x00c") == b"4:a,b,,c"
    assert ext(tt_peer, b"pop", b"apple") == b"1"
    assert ext(tt_peer, b"pop", b"apple") == b""
    assert ext(tt_peer, b"enqueue", b"q", b"first") == b"ok"
    assert ext(tt_peer, b"enqueue", b"q", b"second") == b"ok"
    assert ext(tt_peer, b"queuesize", b"q") == b"2"
    assert ext(tt_peer, b"dequeue", b"q", b"5") == b"first\nsecond\n"
    assert ext(tt_peer, b"queuesize", b"q") == b"0"
    assert ext(tt_peer, b"digest", b"md5", b"abc") == b"900150983cd24fb0d6963f7d28e17f72"
    assert ext(tt_peer, b"digest", b"crc32", b"abc") == b"891568578"
