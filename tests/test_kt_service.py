"""KTService (the ktserver Worker logic) in-process: vectors recorded from the real ktserver,
replayed procedure by procedure, plus the behaviours the vectors do not cover."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest

from kt.protocol import kt_binary as kb
from kt.protocol import kt_rpc
from kt.server.engines import kc
from kt.server.engines.kc import KCError
from kt.server.kt_service import KTService, datestr_http, strmktime
from kt.server.ulog import parse_db_message

VECTORS = Path(__file__).resolve().parents[1].parent / "shared" / "vectors" / "kt_rpc.json"
# fields that name the build (vectors/README.md) and, for status, KC's on-disk format version
BUILD_FIELDS = {b"conf_kc_version", b"conf_kc_features", b"conf_kt_version", b"conf_kt_features",
                b"libver", b"librev", b"fmtver"}


def _load():
    if not VECTORS.exists():
        return None
    return json.loads(VECTORS.read_text())


DATA = _load()


def _b(value) -> bytes:
    if isinstance(value, dict):
        return bytes.fromhex(value["hex"])
    return value.encode("utf-8")


def _make_service(profile: str, tmp_path: Path) -> KTService:
    if profile == "kt":
        script = tmp_path / "kt_script.lua"
        script.write_text("\n".join(DATA["scripts"]["kt_script.lua"]))
        return KTService(["*", "%"], script_path=str(script), thread_count=4)
    if profile == "kt_noscript":
        return KTService(["*"], thread_count=4)
    if profile == "kt_ulog":
        return KTService(["*"], ulog_dir=str(tmp_path / "ulog"), sid=1, thread_count=4)
    raise AssertionError(profile)


def _request_parts(req):
    path = req["path"].encode()
    query = None
    if b"?" in path:
        path, query = path.split(b"?", 1)
    headers = {k.lower(): v for k, v in req["headers"]}
    body = bytes.fromhex(req["body_hex"])
    if req["method"] not in ("POST", "PUT") and req["method"] in ("GET", "HEAD", "DELETE"):
        body = b""
    return path, query, headers, body


def _rest_call(svc, req, port):
    from kt.protocol.kt_rpc import url_decode

    path, _query, headers, body = _request_parts(req)
    rest = path[1:] if path.startswith(b"/") else path
    db_expr = None
    if b"/" in rest:
        db_expr, rest = rest.split(b"/", 1)
        if rest.startswith(b"/"):
            rest = rest[1:]
        db_expr = url_decode(db_expr)
    key = url_decode(rest)
    method = req["method"]
    if method == "GET":
        return svc.rest_get(db_expr, key)
    if method == "HEAD":
        return svc.rest_head(db_expr, key)
    if method == "DELETE":
        return svc.rest_delete(db_expr, key)
    if method == "PUT":
        hdrs = {k.encode(): v.encode() for k, v in headers.items()}
        return svc.rest_put(db_expr, key, body, hdrs, b"http://localhost:%d%s" % (port, req["path"].encode()))
    return None


def _scenarios():
    if DATA is None:
        return []
    return [s for s in DATA["scenarios"] if s["server_profile"].startswith("kt")]


@pytest.mark.skipif(DATA is None, reason="vectors not found")
@pytest.mark.parametrize("scenario", _scenarios(), ids=lambda s: s["name"])
def test_vector_scenario(scenario, tmp_path):
    """Every RPC/REST step of the recording gives the recorded status, fields and errors."""
    svc = _make_service(scenario["server_profile"], tmp_path)
    port = DATA["server_profiles"][scenario["server_profile"]]["port"]
    session = svc.session()
    checked = 0
    try:
        for step in scenario["steps"]:
            req, resp = step.get("request"), step.get("response")
            if not isinstance(req, dict) or not isinstance(resp, dict) or "method" not in req:
                continue
            if req.get("version") not in ("HTTP/1.0", "HTTP/1.1") or "status" not in resp:
                continue
            if step.get("sleep_before_s"):
                time.sleep(step["sleep_before_s"])
            volatile = {v.rsplit(".", 1)[-1].encode() for v in step.get("volatile_fields", [])
                        if v.startswith("response.body_tsv.")}
            path, query, headers, body = _request_parts(req)
            if path.startswith(b"/rpc/"):
                params = kt_rpc.parse_rpc_params(query, body, headers.get("content-type"))
                status, out = svc.rpc(kt_rpc.parse_procedure(path), params, session)
                expected = {_b(k): _b(v) for k, v in (resp.get("body_tsv") or [])}
                assert status == resp["status"], (req, out)
                skip = volatile | BUILD_FIELDS
                if scenario["name"] == "ulog_with_ulog" and b"ERROR" not in expected:
                    skip |= set(expected) | set(out)  # the log path is the recorder's directory
                    assert len(out) == len(expected)
                if scenario["name"] == "report_status" and b"db_0" in expected:
                    skip |= {k for k in expected if k.startswith(b"sys_") or k.startswith(b"db_")}
                got = {k: v for k, v in out.items() if k not in skip}
                want = {k: v for k, v in expected.items() if k not in skip}
                assert got == want, req
            else:
                result = _rest_call(svc, req, port)
                if result is None:
                    continue
                status, rheaders, rbody = result
                assert status == resp["status"], req
                want_headers = {k: v for k, v in resp["headers"] if k.startswith("X-Kt") or k == "Location"}
                got_headers = {k: v for k, v in rheaders.items() if k.startswith("X-Kt") or k == "Location"}
                assert got_headers == want_headers, req
                if req["method"] != "HEAD":
                    assert rbody == bytes.fromhex(resp["body_hex"]), req
            checked += 1
    finally:
        session.close()
        svc.close()
    assert checked > 0 or scenario["name"] in ("bad_http_version", "keepalive", "connection_close_header")


BIN_VECTORS = VECTORS.with_name("kt_binary.json")
BIN_DATA = json.loads(BIN_VECTORS.read_text()) if BIN_VECTORS.exists() else None


def _bin_scenarios():
    return BIN_DATA["scenarios"] if BIN_DATA else []


@pytest.mark.skipif(BIN_DATA is None, reason="vectors not found")
@pytest.mark.parametrize("scenario", _bin_scenarios(), ids=lambda s: s["name"])
def test_binary_vector_scenario(scenario, tmp_path):
    """Complete binary requests of the recording: the service's results encode to the recorded reply."""
    from kt.protocol import kt_binary as kb

    global DATA
    if DATA is None:
        DATA = BIN_DATA
    svc = _make_service(scenario["server_profile"], tmp_path)
    try:
        for step in scenario["steps"]:
            raw = bytes.fromhex(step["request_hex"])
            if not raw or not kb.is_binary_start(raw[0]):
                continue
            parsed = kb.parse_request(raw, 0, eof=True)
            req = parsed[0]
            if not req.known or req.failure or req.magic == kb.MAGIC_REPLICATION:
                continue
            if req.magic == kb.MAGIC_SET_BULK:
                reply = kb.encode_set_bulk_reply(svc.bin_set_bulk(req.records))
            elif req.magic == kb.MAGIC_REMOVE_BULK:
                reply = kb.encode_remove_bulk_reply(svc.bin_remove_bulk(req.records))
            elif req.magic == kb.MAGIC_GET_BULK:
                reply = kb.encode_get_bulk_reply(svc.bin_get_bulk(req.records))
            else:
                out = svc.bin_play_script(req.name, req.records)
                reply = kb.ERROR_REPLY if out is None else kb.encode_play_script_reply(out)
            if req.no_reply:
                continue
            want = bytes.fromhex(step["response_hex"])
            if step.get("volatile_fields"):
                assert len(reply) == len(want)
            else:
                assert reply == want, step["request"]
    finally:
        svc.close()


# ------------------------------------------------------------------------------ beyond the vectors


@pytest.fixture
def svc(tmp_path):
    service = KTService(["%", "*", str(tmp_path / "c.kch")])
    yield service
    service.close()


def test_db_lookup_by_index_and_name(svc):
    sess = svc.session()
    assert svc.rpc("set", {b"DB": b"c.kch", b"key": b"k", b"value": b"v"}, sess)[0] == 200
    assert svc.rpc("get", {b"DB": b"2", b"key": b"k"}, sess) == (200, {b"value": b"v"})
    assert svc.rpc("get", {b"DB": b"3", b"key": b"k"}, sess) == (400, {b"ERROR": b"no such database"})
    assert svc.rpc("get", {b"key": b"k"}, sess)[0] == 450
    assert svc.has_db(None) and svc.has_db(b"*") and svc.has_db(b"2x") and not svc.has_db(b"9")


def test_cursor_created_even_when_procedure_fails(svc):
    sess = svc.session()
    status, out = svc.rpc("cur_get", {b"CUR": b"5"}, sess)
    assert (status, out) == (450, {b"ERROR": b"DB: 7: no record: no record"})
    assert 5 in sess.cursors
    assert svc.rpc("nosuch", {b"CUR": b"6"}, sess)[0] == 501
    assert 6 in sess.cursors
    assert svc.rpc("cur_delete", {b"CUR": b"6"}, sess) == (200, {})
    assert svc.rpc("cur_delete", {b"CUR": b"6"}, sess) == (501, {b"ERROR": b"not implemented: cur_delete"})
    sess.close()
    assert sess.cursors == {}


def test_cursor_jump_back_on_hash_db_is_not_implemented(svc):
    sess = svc.session()
    svc.rpc("set", {b"DB": b"*", b"key": b"a", b"value": b"1"}, sess)
    status, out = svc.rpc("cur_jump_back", {b"DB": b"*", b"CUR": b"1"}, sess)
    assert (status, out) == (501, {b"ERROR": b"DB: 1: not implemented: not implemented"})


def test_expired_records_over_rpc(svc):
    sess = svc.session()
    past = str(-(int(time.time()) - 10)).encode()
    svc.rpc("set", {b"key": b"old", b"value": b"v", b"xt": past}, sess)
    assert svc.rpc("get", {b"key": b"old"}, sess)[0] == 450
    assert svc.rpc("check", {b"key": b"old"}, sess)[0] == 450
    assert svc.rpc("status", {}, sess)[1][b"count"] == b"1"
    assert svc.rpc("remove", {b"key": b"old"}, sess)[0] == 450
    assert svc.rpc("status", {}, sess)[1][b"count"] == b"0"
    svc.rpc("set", {b"key": b"x", b"value": b"v", b"xt": b"-2000000000"}, sess)
    assert svc.rpc("get", {b"key": b"x"}, sess) == (200, {b"value": b"v", b"xt": b"2000000000"})
    assert svc.rpc("get_bulk", {b"_x": b"", b"_old": b""}, sess) == (200, {b"_x": b"v", b"num": b"1"})


def test_wait_and_signal(svc):
    results = []

    def waiter():
        results.append(svc.rpc("get", {b"WAIT": b"c1", b"WAITTIME": b"5", b"key": b"k"}, svc.session()))

    t = threading.Thread(target=waiter)
    t.start()
    deadline = time.time() + 5
    signaled = b"0"
    while signaled == b"0" and time.time() < deadline:
        svc.rpc("set", {b"key": b"k", b"value": b"v"}, svc.session())
        signaled = svc.rpc("void", {b"SIGNAL": b"c1"}, svc.session())[1][b"SIGNALED"]
        time.sleep(0.01)
    t.join(5)
    assert signaled == b"1"
    assert results == [(200, {b"value": b"v"})]
    assert svc.rpc("void", {b"WAIT": b"none", b"WAITTIME": b"0.05"}, svc.session()) == (
        503, {b"ERROR": b"the condition timed out"})
    assert svc.rpc("remove", {b"key": b"zz", b"SIGNAL": b"x", b"SIGNALBROAD": b""}, svc.session()) == (
        450, {b"ERROR": b"DB: 7: no record: no record", b"SIGNALED": b"0"})


def test_stop_wakes_waiters_with_timeout(svc):
    results = []
    t = threading.Thread(target=lambda: results.append(svc.rpc("void", {b"WAIT": b"w"}, svc.session())))
    t.start()
    time.sleep(0.1)
    svc.stop()
    t.join(5)
    assert results == [(503, {b"ERROR": b"the condition timed out"})]


def test_binary_bulk_ops(svc):
    records = [(0, b"a", b"1", 0x7FFFFFFFFFFFFFFF), (9, b"x", b"y", 1), (1, b"b", b"2", -2000000000)]
    assert svc.bin_set_bulk(records) == 2
    assert svc.bin_get_bulk([(0, b"a"), (1, b"b"), (0, b"zz"), (7, b"a"), (0, b"a")]) == [
        (0, b"a", b"1", (1 << 40) - 1), (1, b"b", b"2", 2000000000), (0, b"a", b"1", (1 << 40) - 1)]
    assert svc.bin_remove_bulk([(0, b"a"), (0, b"a"), (5, b"b"), (1, b"b")]) == 2
    assert svc.bin_get_bulk([(0, b"a"), (1, b"b")]) == []
    assert svc.bin_play_script(b"echo", [(b"k", b"v")]) is None  # no -scr


def test_readonly_databases_refuse_writes(tmp_path):
    path = str(tmp_path / "r.kct")
    KTService([path]).close()
    ro = KTService([path], readonly=True)
    try:
        status, out = ro.rpc("set", {b"key": b"k", b"value": b"v"}, ro.session())
        assert status == 500 and out[b"ERROR"].startswith(b"DB: 4: no permission")
        with pytest.raises(KCError):
            ro.bin_set_bulk([(0, b"k", b"v", 1)])
    finally:
        ro.close()


def test_file_database_keeps_records_across_restart(tmp_path):
    spec = str(tmp_path / "keep.kch")
    first = KTService([spec])
    sess = first.session()
    for i in range(200):
        params = {b"key": b"k%d" % i, b"value": b"v%d" % i, b"xt": b"-2000000000"}
        assert first.rpc("set", params, sess)[0] == 200
    first.close()
    second = KTService([spec])
    try:
        assert second.rpc("get", {b"key": b"k150"}, second.session()) == (
            200, {b"value": b"v150", b"xt": b"2000000000"})
        assert second.rpc("status", {}, second.session())[1][b"count"] == b"200"
    finally:
        second.close()


def test_rest_operations_and_xt_header(svc):
    date = "Wed, 18 May 2033 03:33:20 GMT"
    assert svc.rest_put(None, b"k", b"v", {b"x-kt-xt": date.encode()}, b"http://x/k")[:2] == (
        201, {"Location": "http://x/k"})
    assert svc.rest_get(None, b"k") == (200, {"X-Kt-Xt": date}, b"v")
    assert svc.rest_head(b"0", b"k")[:2] == (200, {"X-Kt-Xt": date, "Content-Length": "1"})
    assert svc.rest_put(b"*", b"k", b"v", {b"x-kt-mode": b"REPLACE"})[0] == 450
    assert svc.rest_delete(None, b"k") == (204, {}, b"")
    assert svc.rest_delete(None, b"k")[0] == 404
    assert svc.rest_get(b"nosuch", b"k") == (400, {}, b"no such database\n")


@pytest.mark.parametrize("text, epoch", [
    (b"2000000000", 2000000000),
    (b"0x10", 16),
    (b"10m", 600),
    (b"2033-05-18T03:33:20Z", 2000000000),
    (b"2033-05-18T05:33:20+02:00", 2000000000),
    (b"2033/05/18 03:33:20", 2000000000),
    (b"Wed, 18 May 2033 03:33:20 GMT", 2000000000),
    (b"", -(1 << 63)),
])
def test_strmktime(text, epoch):
    assert strmktime(text) == epoch


def test_datestr_http():
    assert datestr_http(2000000000) == "Wed, 18 May 2033 03:33:20 GMT"


def test_update_log_files_and_replication_reader(tmp_path):
    svc = KTService(["*", "%"], ulog_dir=str(tmp_path / "ulog"), sid=3)
    try:
        sess = svc.session()
        svc.rpc("set", {b"key": b"r1", b"value": b"v1", b"xt": b"-2000000000"}, sess)
        svc.rpc("remove", {b"key": b"r1"}, sess)
        svc.rpc("clear", {b"DB": b"1"}, sess)
        files = svc.rpc("ulog_list", {}, sess)[1]
        assert list(files) == [str(tmp_path / "ulog" / "0000000001.ulog").encode()]
        size, ts = map(int, list(files.values())[0].split(b":"))
        assert size == os.path.getsize(tmp_path / "ulog" / "0000000001.ulog") and ts > 0
        stream = svc.ulog_reader(0, 7)
        msgs = []
        while True:
            rec = stream.read()
            if rec is None:
                break
            msgs.append(rec)
        assert [m for _, m in msgs] == [
            bytes.fromhex("0003 0000 A1 02 07 7231 0077359400 7631"),
            bytes.fromhex("0003 0000 A2 02 7231"),
            bytes.fromhex("0003 0001 A5"),
        ]
        assert [ts for ts, _ in msgs] == sorted(ts for ts, _ in msgs)
        assert parse_db_message(msgs[2][1]) == (3, 1, b"\xa5")
        later = svc.ulog_reader(msgs[0][0], 7)
        assert later.read()[1] == msgs[1][1]
        own = svc.ulog_reader(0, 3)
        assert own.read()[1] is None  # the slave's own records are skipped
        assert svc.rpc("ulog_remove", {b"ts": b"now"}, sess) == (200, {})
        assert len(svc.rpc("ulog_list", {}, sess)[1]) == 1  # the newest file always stays
    finally:
        svc.close()


@pytest.mark.parametrize("pure_log", [False, True])
def test_update_log_rotates_files(tmp_path, pure_log: bool, monkeypatch: pytest.MonkeyPatch):
    """Records written one by one (rpc set) and by a binary batch (queued in C when built)."""
    from kt.server import ulog

    if pure_log:
        monkeypatch.setattr(ulog, "_pending_log", ulog.PendingLog)
    svc = KTService(["*"], ulog_dir=str(tmp_path / "u"), ulog_limit=200, sid=1)
    try:
        for i in range(10):
            svc.rpc("set", {b"key": b"key%d" % i, b"value": b"x" * 20}, svc.session())
        records = [(0, b"key%d" % i, b"x" * 20, NEVER) for i in range(10, 20)]
        native = kc.bulk_speedups()
        if native is not None and not pure_log:
            batch = native.parse(kb.encode_set_bulk(records), 9, kb.MAGIC_SET_BULK, len(records))[0]
            assert svc.bin_set_bulk_batch(batch) == 10 and svc.dbs[0].native_log is not None
        else:
            assert svc.bin_set_bulk(records) == 10
        names = sorted(os.listdir(tmp_path / "u"))
        assert len(names) > 2 and names[0] == "0000000001.ulog"
        stream = svc.ulog_reader(0, 9)
        count = 0
        while stream.read() is not None:
            count += 1
        assert count == 20
    finally:
        svc.close()


def test_lua_scripts_reach_the_databases(tmp_path):
    script = tmp_path / "s.lua"
    script.write_text(
        "kt = __kyototycoon__\n"
        "function incr(inmap, outmap)\n"
        "  local n = kt.dbs['%']:increment(inmap.key, 2)\n"
        "  local v, xt = kt.db:get('missing')\n"
        "  outmap.n = n\n"
        "  outmap.missing = tostring(v)\n"
        "  outmap.keys = #kt.dbs['%']:match_prefix('c')\n"
        "  return kt.RVSUCCESS\n"
        "end\n"
    )
    svc = KTService(["*", "%"], script_path=str(script))
    try:
        sess = svc.session()
        assert svc.rpc("play_script", {b"name": b"incr", b"_key": b"cnt"}, sess) == (
            200, {b"_n": b"2", b"_missing": b"nil", b"_keys": b"1"})
        params = {b"DB": b"1", b"key": b"cnt", b"num": b"0"}
        assert svc.rpc("increment", params, sess) == (200, {b"num": b"2"})
    finally:
        svc.close()


def test_without_lupa_only_builtin_echo(tmp_path, monkeypatch):
    import kt.server.kt_lua as kt_lua
    from kt.errors import EngineError

    def no_lupa():
        raise EngineError("no lupa")

    monkeypatch.setattr(kt_lua, "_runtime_class", no_lupa)
    script = tmp_path / "s.lua"
    script.write_text("function hello(i, o) return 0 end\n")
    svc = KTService(["*"], script_path=str(script))
    try:
        sess = svc.session()
        assert svc.rpc("play_script", {b"name": b"echo", b"_a": b"1"}, sess) == (200, {b"_a": b"1"})
        missing = (501, {b"ERROR": b"no such scripting procedure"})
        assert svc.rpc("play_script", {b"name": b"hello"}, sess) == missing
    finally:
        svc.close()


def test_idle_vacuum_purges_expired(svc):
    past = str(-(int(time.time()) - 10)).encode()
    for i in range(5):
        svc.rpc("set", {b"key": b"k%d" % i, b"value": b"v", b"xt": past}, svc.session())
    for _ in range(20):
        svc.idle()
    assert svc.rpc("status", {}, svc.session())[1][b"count"] == b"0"


def _http_rpc(port: int, procedure: str, params: dict) -> tuple:
    import http.client

    from kt.protocol.kt_rpc import decode_tsv_response, encode_tsv

    body = encode_tsv(list(params.items()), "B")
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        headers = {"Content-Type": "text/tab-separated-values; colenc=B"}
        conn.request("POST", f"/rpc/{procedure}", body, headers)
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, decode_tsv_response(data, resp.getheader("Content-Type"))
    finally:
        conn.close()


def _wait_for(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_replication_slave_follows_a_bundled_master(tmp_path):
    """A slave KTService pulls a real (bundled) master's update log over the binary protocol."""
    from kt_server_harness import ServerProcess

    master = ServerProcess(["-ulog", str(tmp_path / "mlog"), "-sid", "1", "*", "%"], tmp_path / "m")
    rts = tmp_path / "slave.rts"
    slave = KTService(["*", "%"], sid=2, rts_path=str(rts), ulog_dir=str(tmp_path / "slog"))
    try:
        assert _http_rpc(master.port, "set", {b"key": b"before", b"value": b"1"})[0] == 200
        slave.start_replication("127.0.0.1", master.port)
        assert _wait_for(lambda: slave.dbs[0].get(b"before") is not None)
        _http_rpc(master.port, "set", {b"DB": b"1", b"key": b"k\x00", b"value": b"v", b"xt": b"-2000000000"})
        _http_rpc(master.port, "remove", {b"key": b"before"})
        assert _wait_for(lambda: slave.dbs[1].get(b"k\x00") == (b"v", 2000000000))
        assert _wait_for(lambda: slave.dbs[0].get(b"before") is None)
        report = slave.rpc("report", {}, slave.session())[1]
        assert report[b"repl_master_host"] == b"127.0.0.1"
        assert report[b"repl_master_port"] == str(master.port).encode()
        # the slave's own log keeps the origin sid (1), so the master would skip it
        stream = slave.ulog_reader(0, 1)
        assert stream.read()[1] is None
        _http_rpc(master.port, "clear", {b"DB": b"1"})
        assert _wait_for(lambda: slave.dbs[1].count() == 0)
        # tune_replication to nowhere stops following; the RTS file holds the position
        assert slave.rpc("tune_replication", {b"host": b""}, slave.session()) == (200, {})
        assert _wait_for(lambda: rts.exists() and int(rts.read_text().strip() or 0) > 0)
    finally:
        slave.close()
        master.terminate()
    assert rts.read_bytes().endswith(b"\n") and len(rts.read_bytes()) == 21


def test_replication_needs_an_rts_file():
    svc = KTService(["*"])
    try:
        with pytest.raises(ValueError, match="RTS"):
            svc.start_replication("127.0.0.1", 1)
    finally:
        svc.close()


LUA_VISITORS = r"""
kt = __kyototycoon__
db = kt.db

function increment(inmap, outmap)
  local num = inmap.num
  local function visit(rkey, rvalue, rxt)
    rvalue = tonumber(rvalue)
    if not rvalue then rvalue = 0 end
    num = rvalue + num
    return num
  end
  if not db:accept(inmap.key, visit) then return kt.RVEINTERNAL end
  outmap.num = num
  return kt.RVSUCCESS
end

function move(inmap, outmap)
  local first, srcval, srcxt = true, nil, nil
  local function visit(key, value, xt)
    if first then
      srcval, srcxt, first = value, xt, false
      return kt.Visitor.REMOVE
    end
    if srcval then return srcval, srcxt end
    return kt.Visitor.NOP
  end
  if not db:accept_bulk({ inmap.src, inmap.dest }, visit) then return kt.RVEINTERNAL end
  if not srcval then return kt.RVELOGIC end
  return kt.RVSUCCESS
end

function upcase(inmap, outmap)
  local n = 0
  db:iterate(function(key, value, xt) n = n + 1; return string.upper(value) end)
  outmap.n = n
  return kt.RVSUCCESS
end

function remove(inmap, outmap)
  if not db:remove(inmap.key) then
    local err = db:error()
    outmap.code = err:code()
    outmap.name = err:name()
    if err:code() == kt.Error.NOREC then return kt.RVELOGIC end
    return kt.RVEINTERNAL
  end
  return kt.RVSUCCESS
end

function misc(inmap, outmap)
  outmap.match = kt.regex("hello world", "o w")
  outmap.replaced = kt.regex("a-b-c", "-", "+")
  local dumped = kt.mapdump({ k = "v" })
  outmap.loaded = kt.mapload(dumped).k
  outmap.arr = kt.arrayload(kt.arraydump({ "x", "y" }))[2]
  outmap.fnv = kt.hash_fnv("abc") > 0
  return kt.RVSUCCESS
end
"""


def test_lua_visitors_and_utilities(tmp_path):
    script = tmp_path / "v.lua"
    script.write_text(LUA_VISITORS)
    svc = KTService(["%"], script_path=str(script))
    try:
        sess = svc.session()
        call = lambda name, **kw: svc.rpc(  # noqa: E731
            "play_script", {b"name": name.encode(), **{b"_" + k.encode(): v for k, v in kw.items()}}, sess)
        assert call("increment", key=b"c", num=b"5") == (200, {b"_num": b"5"})
        assert call("increment", key=b"c", num=b"2") == (200, {b"_num": b"7"})
        assert svc.dbs[0].get(b"c") == (b"7", (1 << 40) - 1)
        svc.dbs[0].set(b"src", b"payload", -2000000000)
        assert call("move", src=b"src", dest=b"dst") == (200, {})
        assert svc.dbs[0].get(b"src") is None
        value, xt = svc.dbs[0].get(b"dst")
        # a visitor's returned xt is relative, as in ktserver (the example script's quirk)
        assert value == b"payload" and xt > 2000000000 + time.time() - 5
        assert call("move", src=b"nothing", dest=b"dst2")[0] == 450
        assert call("upcase") == (200, {b"_n": b"2"})
        assert svc.dbs[0].get(b"dst")[0] == b"PAYLOAD"
        assert call("remove", key=b"none") == (450, {b"ERROR": b"the scripting procedure failed"})
        assert call("misc") == (200, {b"_match": b"true", b"_replaced": b"a+b+c", b"_loaded": b"v",
                                      b"_arr": b"y", b"_fnv": b"true"})
    finally:
        svc.close()


def test_hostile_numbers_are_bounded(svc):
    sess = svc.session()
    svc.rpc("set_bulk", {b"_a1": b"", b"_a2": b""}, sess)
    for proc, arg in [("match_regex", b"regex"), ("match_prefix", b"prefix"), ("match_similar", b"origin")]:
        status, out = svc.rpc(proc, {arg: b"a", b"max": b"999999999999999", b"range": b"5"}, sess)
        assert status == 200 and out[b"num"] == b"2"
    results = []

    def waiter():
        results.append(svc.rpc("void", {b"WAIT": b"big", b"WAITTIME": b"inf"}, svc.session()))

    t = threading.Thread(target=waiter)
    t.start()
    assert _wait_for(lambda: svc.rpc("void", {b"SIGNAL": b"big"}, sess)[1][b"SIGNALED"] == b"1")
    t.join(5)
    assert results == [(200, {})]


def test_lua_levdist_counts_bytes_or_characters(tmp_path):
    pytest.importorskip("lupa")
    script = tmp_path / "lev.lua"
    script.write_text(
        "kt = __kyototycoon__\n"
        "function lev(i, o)\n"
        "  o.bytes = kt.levdist(i.a, i.b)\n"
        "  o.chars = kt.levdist(i.a, i.b, true)\n"
        "  return kt.RVSUCCESS\n"
        "end\n"
    )
    svc = KTService(["*"], script_path=str(script))
    try:
        params = {b"name": b"lev", b"_a": "日本".encode(), b"_b": "日x".encode()}
        assert svc.rpc("play_script", params, svc.session()) == (200, {b"_bytes": b"3", b"_chars": b"1"})
    finally:
        svc.close()


NEVER = (1 << 63) - 1


def _binary_exchange(sock, request: bytes, parse) -> object:
    """Send one binary request and read its whole reply with ``parse`` (a kt_binary parser)."""
    sock.sendall(request)
    buf = b""
    while True:
        done = parse(buf)
        if done is not None:
            return done[0]
        chunk = sock.recv(1 << 20)
        assert chunk, "the server closed the connection"
        buf += chunk


def test_slave_of_a_master_taking_concurrent_binary_batches_ends_equal(tmp_path):
    """Binary set/remove_bulk from several connections (small ones inline, one over 1 MiB in
    a worker thread) on the same keys: the master logs each batch from C, so the log's order
    must be the apply order, or the slave replaying it would end with other values."""
    import random

    from kt_server_harness import ServerProcess

    master = ServerProcess(["-ulog", str(tmp_path / "mlog"), "-sid", "1", "*"], tmp_path / "m")
    rts = tmp_path / "slave.rts"
    slave = KTService(["*"], sid=2, rts_path=str(rts))
    keys = [b"k%02d" % i for i in range(40)]
    failures: list = []

    def writer(seed: int) -> None:
        rng = random.Random(seed)
        try:
            with master.connect() as sock:
                for step in range(60):
                    picked = rng.sample(keys, rng.choice([1, 3, 20, 40]))
                    if rng.random() < 0.3:
                        request = kb.encode_remove_bulk([(0, k) for k in picked])
                        _binary_exchange(sock, request, kb.parse_remove_bulk_reply)
                        continue
                    size = rng.randrange(1, 50)
                    if seed == 0 and step % 15 == 0:  # 1.6 MB: applied in a worker thread
                        picked, size = keys, 40000
                    value = b"%d.%d." % (seed, step) + b"v" * size
                    request = kb.encode_set_bulk([(0, k, value, NEVER) for k in picked])
                    assert _binary_exchange(sock, request, kb.parse_set_bulk_reply) == len(picked)
        except Exception as exc:  # reported by the main thread
            failures.append(exc)

    try:
        slave.start_replication("127.0.0.1", master.port)
        threads = [threading.Thread(target=writer, args=(seed,)) for seed in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not failures
        with master.connect() as sock:
            request = kb.encode_get_bulk([(0, k) for k in keys])
            records = _binary_exchange(sock, request, kb.parse_get_bulk_reply)
        on_master = {key: value for _, key, value, _ in records}
        assert on_master

        def slave_equal() -> bool:
            return {k: rec[0] for k in keys if (rec := slave.dbs[0].get(k)) is not None} == on_master

        assert _wait_for(slave_equal, timeout=20)
    finally:
        slave.close()
        master.terminate()
