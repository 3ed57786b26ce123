"""The bundled Tokyo Tyrant server over real sockets: persistence, concurrency, hostile input,
options.  Requests are built and replies parsed with the TT codec (kt.protocol.tt_binary)."""

from __future__ import annotations

import os
import signal
import socket
import struct
import threading
import time
from pathlib import Path

import pytest

from kt.protocol import tt_binary as tt
from kt.server.engines.tc import TokyoCabinetDB
from test_tt_server_vectors import closed_within, read_idle, start_server, stop_leftovers


@pytest.fixture(autouse=True)
def _no_leftover_servers():
    yield
    stop_leftovers()


class Client:
    """A minimal blocking TT client on one socket, for tests only."""

    def __init__(self, server, timeout: float = 10.0):
        self.sock = server.connect(timeout)
        self.buf = bytearray()

    def call(self, request: bytes, parser):
        self.sock.sendall(request)
        return self.read(parser)

    def read(self, parser):
        while True:
            parsed = parser(self.buf, 0)
            if parsed is not None:
                result, end = parsed
                del self.buf[:end]
                return result
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("server closed the connection")
            self.buf += chunk

    def close(self):
        self.sock.close()


@pytest.fixture
def hash_server(tmp_path):
    server = start_server(tmp_path, "*", thnum=4)
    yield server
    assert server.stop() == 0


def test_table_with_indexes_survives_restart(tmp_path):
    path = str(tmp_path / "people.tct")
    server = start_server(tmp_path, path + "#idx=name:lex#idx=age:dec")
    client = Client(server)
    people = [(b"1", b"alice", b"30"), (b"2", b"bob", b"25"), (b"3", b"carol", b"35"), (b"4", b"dave", b"40")]
    for pk, name, age in people:
        request = tt.encode_misc(b"put", [pk, b"name", name, b"age", age])
        assert client.call(request, tt.parse_misc) == []
    queries = [
        [b"hint", tt.query_addcond("name", 0, "bob")],
        [b"hint", tt.query_addcond("age", 10, "30"), tt.query_setorder("age", 2)],
        [b"hint", tt.query_setorder("name", 1), tt.query_setlimit(2, 1)],
        [tt.query_addcond("age", 9, "28"), b"count"],
    ]
    before = [client.call(tt.encode_misc(b"search", q, opts=1), tt.parse_misc) for q in queries]
    assert before[0][0] == b"2" and b'using an index: "name"' in before[0][1]
    assert before[1][:3] == [b"1", b"3", b"4"] and b'using an index: "age"' in before[1][3]
    assert before[3] == [b"3"]
    client.close()
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(15) == 0

    server = start_server(tmp_path, path)  # no #idx: the indexes live in the files
    client = Client(server)
    after = [client.call(tt.encode_misc(b"search", q, opts=1), tt.parse_misc) for q in queries]
    assert after == before
    assert client.call(tt.encode_rnum(), tt.parse_rnum) == 4
    client.close()
    assert server.stop() == 0


def test_sigterm_syncs_a_hash_file(tmp_path):
    path = str(tmp_path / "data.tch")
    server = start_server(tmp_path, path)
    client = Client(server)
    for i in range(200):
        client.call(tt.encode_put(b"k%d" % i, b"v%d" % i), tt.parse_put)
    client.close()
    assert server.stop() == 0
    with TokyoCabinetDB(path) as db:  # the file is complete and readable by Tokyo Cabinet
        assert db.rnum() == 200 and db.get(b"k199") == b"v199"


def test_sixteen_concurrent_clients_lose_nothing(tmp_path):
    server = start_server(tmp_path, str(tmp_path / "c.tcb"), thnum=8)
    errors = []

    def worker(n: int) -> None:
        try:
            client = Client(server)
            for i in range(150):
                key = b"c%02d-%04d" % (n, i)
                client.call(tt.encode_put(key, key[::-1]), tt.parse_put)
                client.call(tt.encode_addint(b"counter", 1), tt.parse_addint)
                client.call(tt.encode_putcat(b"log%02d" % n, b"x"), tt.parse_putcat)
                assert client.call(tt.encode_get(key), tt.parse_get) == key[::-1]
            client.close()
        except Exception as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    client = Client(server)
    assert client.call(tt.encode_rnum(), tt.parse_rnum) == 16 * 150 + 1 + 16
    assert client.call(tt.encode_addint(b"counter", 0), tt.parse_addint) == 16 * 150
    for n in range(16):
        assert client.call(tt.encode_get(b"log%02d" % n), tt.parse_get) == b"x" * 150
    keys = client.call(tt.encode_fwmkeys(b"c07-", -1), tt.parse_fwmkeys)
    assert len(keys) == 150
    stat = client.call(tt.encode_stat(), tt.parse_stat)
    assert int(stat["cnt_put"]) == 2400 and int(stat["cnt_addint"]) == 2401
    client.close()
    assert server.stop() == 0


HOSTILE = [
    b"\xc8\xff",                                          # unknown command byte
    b"\xc8\x10" + struct.pack(">ii", -1, 1),              # negative key size
    b"\xc8\x30" + struct.pack(">i", (1 << 28) + 1),       # oversized key
    b"\xc8\x13" + struct.pack(">iii", 1, 1, -5),          # putshl negative width
    b"\xc8\x90" + struct.pack(">iii", 1024, 0, 0),        # misc name too long
    b"\xc8\x68" + struct.pack(">iiii", 2000, 0, 0, 0),    # ext name too long
    b"\xc8\x31" + struct.pack(">i", -3),                  # mget negative count
    b"\xc8\x90" + struct.pack(">iii", 3, 0, (1 << 20) + 1),  # too many misc args
]


@pytest.mark.parametrize("payload", HOSTILE, ids=lambda p: p[:2].hex())
def test_hostile_requests_close_without_reply(hash_server, payload):
    victim = Client(hash_server)
    victim.sock.sendall(payload)
    data, eof = read_idle(victim.sock, 2.0)
    assert data == b"" and eof
    other = Client(hash_server)
    assert other.call(tt.encode_put(b"still", b"alive"), tt.parse_put) is True
    assert other.call(tt.encode_get(b"still"), tt.parse_get) == b"alive"
    other.close()
    assert hash_server.alive()


def test_a_stalled_or_garbage_client_does_not_block_others(hash_server):
    stalled = Client(hash_server)
    stalled.sock.sendall(b"\xc8\x10\x00\x00\x00\x05\x00")  # truncated header: server waits
    garbage = Client(hash_server)
    garbage.sock.sendall(os.urandom(4096).replace(b"\n", b" "))  # text protocol, no newline yet
    client = Client(hash_server)
    for i in range(50):
        assert client.call(tt.encode_put(b"k%d" % i, b"v"), tt.parse_put)
    assert client.call(tt.encode_rnum(), tt.parse_rnum) == 50
    stalled.sock.shutdown(socket.SHUT_WR)
    assert closed_within(stalled.sock, 2.0)
    garbage.sock.sendall(b"bogus line\n")
    assert closed_within(garbage.sock, 2.0)
    for c in (stalled, garbage, client):
        c.close()


def test_random_bytes_never_crash_the_server(hash_server):
    import random

    rng = random.Random(1978)
    for _ in range(60):
        c = Client(hash_server, timeout=2.0)
        payload = bytes([0xC8, rng.choice(list(tt.COMMAND_NAMES) + [0, 0xFF])])
        payload += bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 40)))
        c.sock.sendall(payload)
        c.sock.shutdown(socket.SHUT_WR)
        read_idle(c.sock, 2.0)
        c.close()
    client = Client(hash_server)
    assert client.call(tt.encode_put(b"after", b"fuzz"), tt.parse_put)
    assert client.call(tt.encode_get(b"after"), tt.parse_get) == b"fuzz"
    client.close()


def test_pipelined_requests_and_putnr(hash_server):
    client = Client(hash_server)
    batch = b"".join([tt.encode_putnr(b"a", b"1"), tt.encode_put(b"b", b"2"), tt.encode_get(b"a"),
                      tt.encode_mget([b"a", b"zz", b"b"]), tt.encode_vsiz(b"b")])
    client.sock.sendall(batch)
    assert client.read(tt.parse_put) is True  # putnr answered nothing
    assert client.read(tt.parse_get) == b"1"
    assert client.read(tt.parse_mget) == [(b"a", b"1"), (b"b", b"2")]
    assert client.read(tt.parse_vsiz) == 1
    client.close()


def test_counters_addint_adddouble_and_putshl(hash_server):
    client = Client(hash_server)
    assert client.call(tt.encode_addint(b"n", 5), tt.parse_addint) == 5
    assert client.call(tt.encode_addint(b"n", -7), tt.parse_addint) == -2
    assert client.call(tt.encode_get(b"n"), tt.parse_get) == struct.pack("<i", -2)
    assert client.call(tt.encode_adddouble(b"d", 1.25), tt.parse_adddouble) == 1.25
    assert client.call(tt.encode_adddouble(b"d", -3.0), tt.parse_adddouble) == -1.75
    assert client.call(tt.encode_addint(b"d", 1), tt.parse_ok) is False  # 8-byte value: one-byte failure
    assert client.call(tt.encode_putshl(b"s", b"12345", 4), tt.parse_putshl)
    assert client.call(tt.encode_get(b"s"), tt.parse_get) == b"12345"
    assert client.call(tt.encode_putshl(b"s", b"ab", 4), tt.parse_putshl)
    assert client.call(tt.encode_get(b"s"), tt.parse_get) == b"45ab"
    client.close()


def test_iterator_is_shared_between_connections(hash_server):
    a, b = Client(hash_server), Client(hash_server)
    for key in (b"x", b"y", b"z"):
        a.call(tt.encode_put(key, b"v"), tt.parse_put)
    assert a.call(tt.encode_iterinit(), tt.parse_ok)
    seen = [a.call(tt.encode_iternext(), tt.parse_iternext), b.call(tt.encode_iternext(), tt.parse_iternext),
            a.call(tt.encode_iternext(), tt.parse_iternext)]
    assert sorted(seen) == [b"x", b"y", b"z"]
    assert b.call(tt.encode_iternext(), tt.parse_iternext) is None
    a.close()
    b.close()


def test_repl_without_update_log_sends_sid_then_closes(tmp_path):
    server = start_server(tmp_path, "*", extra=["-sid", "7"])
    c = Client(server)
    c.sock.sendall(tt.encode_repl(1, 2))
    data, eof = read_idle(c.sock, 2.0)
    assert data == struct.pack(">I", 7) and eof
    c.close()
    c = Client(server)
    c.sock.sendall(tt.encode_repl(1, 7))  # circular: closed without a reply
    assert read_idle(c.sock, 2.0) == (b"", True)
    c.close()
    assert server.stop() == 0


def test_mask_forbids_commands_like_ttserver(tmp_path):
    server = start_server(tmp_path, "*", extra=["-mask", "allwrite,stat"])
    c = Client(server)
    assert c.call(tt.encode_putkeep(b"k", b"v"), tt.parse_putkeep) is False
    assert c.call(tt.encode_misc(b"put", [b"k", b"v"]), tt.parse_misc) == []  # masked misc: empty success
    assert c.call(tt.encode_get(b"k"), tt.parse_get) is None  # ... that wrote nothing
    stat = c.call(tt.encode_stat(), tt.parse_stat)
    assert list(stat)[0] == "cnt_put" and stat["cnt_putkeep"] == "1"  # only the counters
    c.close()
    assert server.stop() == 0
    server = start_server(tmp_path, "*", extra=["-mask", "allread,put", "-unmask", "put"])
    c = Client(server)
    assert c.call(tt.encode_put(b"k", b"v"), tt.parse_put)  # unmasked again, in order
    assert c.call(tt.encode_get(b"k"), tt.parse_get) is None
    assert c.call(tt.encode_mget([b"k"]), tt.parse_mget) == []
    assert c.call(tt.encode_rnum(), tt.parse_rnum) == 0
    assert c.call(tt.encode_misc(b"get", [b"k"]), tt.parse_misc) == [b"v"]
    c.close()
    assert server.stop() == 0


def test_every_ttserver_option_is_accepted(tmp_path):
    pid_file = tmp_path / "tt.pid"
    (tmp_path / "ulog").mkdir()
    extra = ["-tout", "30", "-pid", str(pid_file), "-kl", "-ld", "-ulog", str(tmp_path / "ulog"),
             "-ulim", "1m", "-uas", "-sid", "3", "-mhost", "localhost", "-mport", "1979",
             "-rts", str(tmp_path / "rts"), "-rcc", "-skel", "x", "-extpc", "echo", "5",
             "-mask", "repl", "-unmask", "repl"]
    server = start_server(tmp_path, str(tmp_path / "o.tch#bnum=1000"), extra=extra, thnum=2)
    c = Client(server)
    assert c.call(tt.encode_stat(), tt.parse_stat)["sid"] == "3"
    c.close()
    deadline = time.monotonic() + 10
    while not pid_file.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pid_file.read_text().strip() == str(server.proc.pid)
    assert server.stop() == 0
    assert not pid_file.exists()
    log = Path(server.log_path).read_text()
    assert "-uas" in log and "-skel" in log and "no effect" in log


def test_idle_timeout_closes_sessions(tmp_path):
    server = start_server(tmp_path, "*", extra=["-tout", "1"])
    c = Client(server)
    assert c.call(tt.encode_put(b"k", b"v"), tt.parse_put)
    assert closed_within(c.sock, 4.0)
    c.close()
    assert server.stop() == 0


def test_fixed_length_database(tmp_path):
    server = start_server(tmp_path, str(tmp_path / "f.tcf#width=4"))
    c = Client(server)
    assert c.call(tt.encode_put(b"1", b"abcdef"), tt.parse_put)
    assert c.call(tt.encode_get(b"1"), tt.parse_get) == b"abcd"  # truncated to the width
    assert c.call(tt.encode_put(b"x", b"v"), tt.parse_ok) is False  # not an ID
    assert c.call(tt.encode_misc(b"range", [b"1", b"0", b"9"]), tt.parse_misc) == [b"1", b"abcd"]
    c.close()
    assert server.stop() == 0


def test_bad_database_name_exits_with_error(tmp_path):
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "kt.server", "tt", "-port", "0", str(tmp_path / "x.bad")],
                          capture_output=True, timeout=30)
    assert proc.returncode == 1 and b"cannot open" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "kt.server", "tt", "*", "extra"], capture_output=True,
                          timeout=30)
    assert proc.returncode == 1 and b"usage" in proc.stderr


def test_pid_file_guards_and_kl_replaces_the_running_server(tmp_path):
    import subprocess
    import sys

    pid_file = tmp_path / "tt.pid"

    def pid_in_file(expected: int) -> bool:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if pid_file.exists() and pid_file.read_text().strip() == str(expected):
                return True
            time.sleep(0.05)
        return False

    first = start_server(tmp_path, "*", extra=["-pid", str(pid_file)])
    assert pid_in_file(first.proc.pid)
    proc = subprocess.run([sys.executable, "-m", "kt.server", "tt", "-port", "0", "-pid", str(pid_file), "*"],
                          capture_output=True, timeout=30)
    assert proc.returncode == 1 and b"may be already running" in proc.stderr
    second = start_server(tmp_path, "*", extra=["-pid", str(pid_file), "-kl"])
    assert first.proc.wait(15) == 0  # stopped cleanly by SIGTERM
    assert pid_in_file(second.proc.pid)
    assert second.stop() == 0


LUA = """
counter = 0
function tick(key, value)
  _addint("ticks", 1)
  return "ok"
end
function listing(key, value)
  _put(key .. "1", "a")
  _put(key .. "2", "b")
  local keys = _fwmkeys(key)
  local got = _misc("getlist", keys)
  return #keys .. ":" .. table.concat(got, ",")
end
function bump(key, value)
  local old = _get(key) or "0"
  _put(key, tostring(tonumber(old) + 1))
  return _get(key)
end
function stash(key, value)
  _stashput(key, value)
  return _stashget(key)
end
function utils(key, value)
  local common = table.concat(_isect({"a", "b", "c"}, {"b", "c", "d"}), ",")
  return table.concat({_hash("md5", value), _codec("base", value), _bit("left", 1, 4),
                       _dist("kitten", "sitting"), common, _ucs(_ucs("h\\195\\169"))}, ";")
end
function whoami(key, value)
  return _version .. "/" .. _thnum
end
function packing(key, value)
  local p = _pack("NnCw*", 1, 2, 255, 300, 5)
  _misc("putlist", "pa", "1", {"pb", "2"})
  local got = _misc("$getlist", {"pa", "pb"})
  local tail = tostring(_regex("Hello", "*^h")) .. ";" .. _codec("url", "a b") .. ";" .. _hash("crc32", "abc")
  return _codec("hex", p) .. ";" .. table.concat(_unpack("NnCw*", p), ",") .. ";" .. table.concat(got, ",")
         .. ";" .. tail
end
function wordcount(key, value)
  _put("doc1", "a b a")
  _put("doc2", "b c")
  local counts = {}
  local function mapper(k, v, emit)
    if string.sub(k, 1, 3) ~= "doc" then return true end
    for word in string.gmatch(v, "%S+") do emit(word, "1") end
    return true
  end
  local function reducer(k, vs)
    table.insert(counts, k .. "=" .. #vs)
    return true
  end
  _mapreduce(mapper, reducer)
  return table.concat(counts, ",")
end
function thread(key, value)
  return _thid
end
function everywhere(key, value)
  _eval("marker = '" .. value .. "'")
  return marker
end
function marker_here(key, value)
  _sleep(0.3)  -- keeps this state busy so concurrent calls use the other states
  return marker .. _thid
end
function logit(key, value)
  _log("hello from lua " .. value, 2)
  return "logged"
end
"""


def test_lua_extension_builtins_locking_and_extpc(tmp_path):
    script = tmp_path / "ext.lua"
    script.write_text(LUA)
    server = start_server(tmp_path, "+", script=str(script), thnum=4, extra=["-extpc", "tick", "0.2"])
    c = Client(server)
    assert c.call(tt.encode_ext(b"listing", b"p"), tt.parse_ext) == b"2:p1,a,p2,b"
    assert c.call(tt.encode_ext(b"stash", b"k", b"v"), tt.parse_ext) == b"v"
    assert c.call(tt.encode_ext(b"whoami"), tt.parse_ext) == b"1.1.41/4"
    assert c.call(tt.encode_ext(b"thread"), tt.parse_ext) in (b"1", b"2", b"3", b"4")
    assert c.call(tt.encode_ext(b"wordcount"), tt.parse_ext) == b"a=2,b=2,c=1"
    assert c.call(tt.encode_ext(b"packing"), tt.parse_ext) == (
        b"000000010002ff822c05;1,2,255,300,5;pa,1,pb,2;true;a%20b;891568578")
    assert c.call(tt.encode_ext(b"everywhere", b"", b"m1"), tt.parse_ext) == b"m1"
    assert c.call(tt.encode_ext(b"logit", b"", b"x1"), tt.parse_ext) == b"logged"
    assert c.call(tt.encode_ext(b"utils", b"", b"abc"), tt.parse_ext) == (
        b"900150983cd24fb0d6963f7d28e17f72;YWJj;16;3;b,c;h\xc3\xa9")
    errors = []

    def hammer() -> None:
        try:
            client = Client(server)
            for _ in range(100):
                client.call(tt.encode_ext(b"bump", b"shared", opts=1), tt.parse_ext)  # record lock
            client.close()
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=hammer) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert c.call(tt.encode_get(b"shared"), tt.parse_get) == b"600"  # no lost update
    time.sleep(0.7)
    ticks = c.call(tt.encode_addint(b"ticks", 0), tt.parse_addint)
    assert ticks >= 2  # -extpc ran periodically
    answers = []

    def ask() -> None:
        other = Client(server)
        answers.append(other.call(tt.encode_ext(b"marker_here"), tt.parse_ext))
        other.close()

    askers = [threading.Thread(target=ask) for _ in range(4)]  # 4 calls at once: all 4 states
    for t in askers:
        t.start()
    for t in askers:
        t.join(30)
    assert sorted(answers) == [b"m11", b"m12", b"m13", b"m14"]  # _eval reached every state
    c.close()
    assert server.stop() == 0
    assert "hello from lua x1" in Path(server.log_path).read_text()


def _talk(server, data: bytes, idle: float = 0.5):
    sock = server.connect()
    sock.sendall(data)
    got = read_idle(sock, idle)
    sock.close()
    return got


def test_memcached_front_end(hash_server):
    data, eof = _talk(hash_server, b"set k 0 0 3\r\nabc\r\nappend k 0 0 2\r\nde\r\nprepend k 0 0 1\r\nZ\r\n"
                                   b"get k missing\r\nadd k 0 0 1\r\nx\r\nreplace zz 0 0 1\r\nx\r\n"
                                   b"set n 0 0 2\r\n10\r\nincr n 5\r\ndecr n 100\r\nincr nothere 1\r\n"
                                   b"delete k\r\ndelete k\r\ndelete n noreply\r\nversion\r\n")
    assert data == (b"STORED\r\nSTORED\r\nSTORED\r\nVALUE k 0 6\r\nZabcde\r\nEND\r\nNOT_STORED\r\n"
                    b"NOT_STORED\r\nSTORED\r\n15\r\n0\r\nNOT_FOUND\r\nDELETED\r\nNOT_FOUND\r\n"
                    b"VERSION 1.1.41\r\n")
    assert not eof
    data, eof = _talk(hash_server, b"stats\r\nquit\r\n")
    assert data.startswith(b"STAT pid ") and b"STAT cmd_set 6\r\n" in data and data.endswith(b"END\r\n")
    assert eof  # quit closes
    assert _talk(hash_server, b"set k\r\n") == (b"CLIENT_ERROR error\r\n", True)
    assert _talk(hash_server, b"set k 0 0 3\r\nabcXY") == (b"", True)  # bad data terminator
    assert _talk(hash_server, b"nonsense here\r\n") == (b"", True)


def test_http_front_end(hash_server):
    data, eof = _talk(hash_server, b"PUT /a%20b HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"
                                   b"GET /a+b HTTP/1.1\r\n\r\n"
                                   b"PUT /a%20b HTTP/1.1\r\nX-TT-PDMODE: 1\r\nContent-Length: 1\r\n\r\nx"
                                   b"HEAD /a%20b HTTP/1.1\r\n\r\n"
                                   b"DELETE /a%20b HTTP/1.1\r\n\r\n"
                                   b"GET /a%20b HTTP/1.0\r\n\r\n")
    text = b"Content-Type: text/plain\r\nContent-Length: "
    octets = b"Content-Type: application/octet-stream\r\nContent-Length: "
    assert data == (b"HTTP/1.1 201 Created\r\n" + text + b"8\r\n\r\nCreated\n"
                    + b"HTTP/1.1 200 OK\r\n" + octets + b"5\r\n\r\nhello"
                    + b"HTTP/1.1 409 Conflict\r\n" + text + b"9\r\n\r\nConflict\n"
                    + b"HTTP/1.1 200 OK\r\n" + octets + b"5\r\n\r\n"
                    + b"HTTP/1.1 200 OK\r\n" + text + b"3\r\n\r\nOK\n"
                    + b"HTTP/1.1 404 Not Found\r\n" + text + b"10\r\n\r\nNot Found\n")
    assert eof  # HTTP/1.0 without keep-alive
    post = b"POST / HTTP/1.1\r\nX-TT-MNAME: %s\r\nContent-Length: %d\r\n\r\n%s"
    requests = post % (b"putlist", 15, b"a=x&b=1&c=y&d=2") + post % (b"getlist", 7, b"a=x&b=y")
    data, _ = _talk(hash_server, requests)
    assert data.endswith(b"Content-Length: 27\r\n\r\nres1=x&res2=1&res3=y&res4=2")
    data, eof = _talk(hash_server, b"OPTIONS * HTTP/1.1\r\nConnection: close\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nAllow: OPTIONS, GET, HEAD, PUT, POST")
    assert b"X-TT-TYPE: on-memory hash\r\n" in data and eof


def test_dmn_detaches_and_serves_until_sigterm(tmp_path):
    import subprocess
    import sys

    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    pid_file = tmp_path / "d.pid"
    proc = subprocess.Popen([sys.executable, "-m", "kt.server", "tt", "-dmn", "-port", str(port),
                             "-pid", str(pid_file), "-log", str(tmp_path / "d.log"), str(tmp_path / "d.tch")])
    assert proc.wait(30) == 0  # the foreground process returns at once
    deadline = time.monotonic() + 15
    while not (pid_file.exists() and pid_file.read_text().strip()) and time.monotonic() < deadline:
        time.sleep(0.05)
    daemon_pid = int(pid_file.read_text())
    assert daemon_pid > 0 and daemon_pid != proc.pid  # a detached grandchild serves
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(tt.encode_put(b"k", b"v"))
    assert sock.recv(1) == b"\x00"
    sock.close()
    os.kill(daemon_pid, signal.SIGTERM)
    deadline = time.monotonic() + 15
    while pid_file.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not pid_file.exists()  # clean shutdown removed it
    with TokyoCabinetDB(str(tmp_path / "d.tch")) as db:
        assert db.get(b"k") == b"v"


def test_update_log_replication_stream_matches_ttserver(tmp_path):
    ulog = tmp_path / "ulog"
    ulog.mkdir()
    server = start_server(tmp_path, "*", extra=["-ulog", str(ulog), "-sid", "1"])
    c = Client(server)
    assert c.call(tt.encode_put(b"k", b"v"), tt.parse_put)
    assert c.call(tt.encode_misc(b"putlist", [b"a", b"1"]), tt.parse_misc) == []
    assert c.call(tt.encode_misc(b"getlist", [b"a"], opts=1), tt.parse_misc) == [b"a", b"1"]  # not logged
    assert c.call(tt.encode_addint(b"n", 3), tt.parse_addint) == 3
    assert c.call(tt.encode_addint(b"n", 0), tt.parse_addint) == 3  # zero increments are not logged
    repl = Client(server)
    repl.sock.sendall(tt.encode_repl(1, 2))
    assert repl.read(tt.parse_repl_sid) == 1
    items = []
    while len([i for i in items if i is not None]) < 3:
        items.append(repl.read(tt.parse_repl_item))
    assert items[0] is None  # the NOP sent first
    records = [i for i in items if i is not None]
    assert [r.sid for r in records] == [1, 1, 1]
    assert records[0].message == bytes.fromhex("c81000000001000000016b7600")
    assert records[1].message == bytes.fromhex("c8900000000700000002") + b"putlist" + bytes.fromhex(
        "0000000161000000013100")
    assert records[2].message == bytes.fromhex("c86000000001000000036e00")
    assert records[0].ts < records[1].ts < records[2].ts
    c.call(tt.encode_put(b"live", b"1"), tt.parse_put)  # streamed as it happens
    item = None
    while item is None:
        item = repl.read(tt.parse_repl_item)
    assert tt.parse_log_message(item.message)[0].key == b"live"
    repl.close()
    c.close()
    assert server.stop() == 0
    assert sorted(p.name for p in ulog.iterdir()) == ["00000001.ulog"]


def test_master_slave_replication_and_restore(tmp_path):
    ulog = tmp_path / "mlog"
    ulog.mkdir()
    master = start_server(tmp_path, "*", extra=["-ulog", str(ulog), "-sid", "1"])
    slave = start_server(tmp_path, str(tmp_path / "slave.tch"),
                         extra=["-sid", "2", "-mhost", "127.0.0.1", "-mport", str(master.port),
                                "-rts", str(tmp_path / "slave.rts")])
    m = Client(master)
    for i in range(50):
        m.call(tt.encode_put(b"k%d" % i, b"v%d" % i), tt.parse_put)
    m.call(tt.encode_misc(b"putlist", [b"x", b"y"]), tt.parse_misc)
    m.call(tt.encode_out(b"k0"), tt.parse_out)
    s = Client(slave)
    deadline = time.monotonic() + 15
    # The slave applies the log in order, so "x" present and "k0" gone means the
    # removal (the last update) has arrived; rnum alone passes 50 on the way (50 puts).
    while time.monotonic() < deadline and not (
            s.call(tt.encode_get(b"x"), tt.parse_get) == b"y"
            and s.call(tt.encode_get(b"k0"), tt.parse_get) is None):
        time.sleep(0.1)
    assert s.call(tt.encode_rnum(), tt.parse_rnum) == 50
    assert s.call(tt.encode_get(b"k49"), tt.parse_get) == b"v49"
    assert s.call(tt.encode_get(b"x"), tt.parse_get) == b"y"
    assert s.call(tt.encode_get(b"k0"), tt.parse_get) is None
    stat = s.call(tt.encode_stat(), tt.parse_stat)
    assert stat["mhost"] == "127.0.0.1" and stat["mport"] == str(master.port) and int(stat["rts"]) > 0
    s.call(tt.encode_setmst(b"", 0), tt.parse_ok)  # stop following
    assert "mhost" not in s.call(tt.encode_stat(), tt.parse_stat)
    s.close()
    m.close()
    assert slave.stop() == 0
    assert master.stop() == 0
    assert int((tmp_path / "slave.rts").read_text()) > 0

    fresh = start_server(tmp_path, "+")
    f = Client(fresh)
    assert f.call(tt.encode_restore(str(ulog).encode(), 1, 1), tt.parse_ok) is True
    assert f.call(tt.encode_rnum(), tt.parse_rnum) == 50
    assert f.call(tt.encode_restore(b"/nonexistent-dir", 1), tt.parse_ok) is False
    f.close()
    assert fresh.stop() == 0


def test_update_log_rotates_and_streams_across_files(tmp_path):
    ulog = tmp_path / "rlog"
    ulog.mkdir()
    server = start_server(tmp_path, "*", extra=["-ulog", str(ulog), "-sid", "5", "-ulim", "2k"])
    c = Client(server)
    for i in range(100):
        c.call(tt.encode_put(b"key%03d" % i, b"x" * 40), tt.parse_put)
    assert len(list(ulog.iterdir())) > 2
    repl = Client(server)
    repl.sock.sendall(tt.encode_repl(1, 9))
    assert repl.read(tt.parse_repl_sid) == 5
    keys = []
    while len(keys) < 100:
        item = repl.read(tt.parse_repl_item)
        if item is not None:
            keys.append(tt.parse_log_message(item.message)[0].key)
    assert keys == [b"key%03d" % i for i in range(100)]
    repl.close()
    c.close()
    assert server.stop() == 0


def test_text_protocol_garbage_never_hurts_the_server(hash_server):
    import random

    rng = random.Random(7)
    pieces = [b"set", b"get", b"GET", b"PUT", b"POST", b"HTTP/1.1", b"/k", b"0", b"-1", b"99999999999",
              b"noreply", b"Content-Length: -5", b"X-TT-MNAME: put", b"\r\n", b"\n", b" ", b"\x00", b"\xff"]
    for _ in range(40):
        count = rng.randint(1, 30)
        payload = b"".join(rng.choice(pieces) + rng.choice([b" ", b"\r\n", b""]) for _ in range(count))
        sock = hash_server.connect()
        sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)
        read_idle(sock, 2.0)
        sock.close()
    sock = hash_server.connect()
    sock.sendall(b"GET /x HTTP/1.1\r\n" + b"X-Filler: y\r\n" * 90000)  # over 1 MiB of headers
    assert read_idle(sock, 3.0) == (b"", True)
    sock.close()
    client = Client(hash_server)
    assert client.call(tt.encode_put(b"alive", b"1"), tt.parse_put)
    client.close()


def test_large_requests_arrive_whole(hash_server):
    client = Client(hash_server)
    args = [b"k%d" % i for i in range(100000)]  # one ~1 MB misc of 100k small fields
    assert client.call(tt.encode_misc(b"putlist", args), tt.parse_misc) == []
    assert client.call(tt.encode_rnum(), tt.parse_rnum) == 50000
    big = os.urandom(3 << 20)
    assert client.call(tt.encode_put(b"big", big), tt.parse_put)
    assert client.call(tt.encode_get(b"big"), tt.parse_get) == big
    client.close()
