"""The compiled TT server paths (``kt._speedups.tt_server_bulk``) against their Python twins.

Two identical databases get the same seeded random requests (get, put, mget, record ``misc``
functions and table searches, with missing keys, empty and binary keys/values, B+ tree duplicates and a table
database): one through the compiled ``serve``, one through the Python request path of
``TTService``.  Replies, request ends, update-log messages and the final contents must be the
same byte for byte.  ``scan_request`` is compared with its Python twin on random truncations.
"""

from __future__ import annotations

import random
from typing import List, Optional, Tuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kt.protocol import tt_binary as tt
from kt.server.engines.tc import TokyoCabinetDB, bulk_speedups
from kt.server.tt_server import TTService

native = bulk_speedups()
pytestmark = pytest.mark.skipif(native is None, reason="kt._speedups.tt_server_bulk is not built")


class _CapturedLog:
    """What LoggedDB writes to the update log, kept in order (sid included)."""

    def __init__(self) -> None:
        self.records: List[Tuple[bytes, int]] = []

    def write(self, message: bytes, sid: int, mid: int = 0, ts: int = 0) -> int:
        self.records.append((message, sid))
        return 0


def _key(rng: random.Random, table: bool = False) -> bytes:
    kind = rng.random()
    if kind < 0.05 and not table:  # (Tokyo Cabinet aborts on an empty table primary key)
        return b""
    if kind < 0.2:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 6)))  # binary, NULs
    return b"k%d" % rng.randrange(40)


def _value(rng: random.Random) -> bytes:
    kind = rng.random()
    if kind < 0.1:
        return b""
    if kind < 0.3:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 40)))
    return b"v%d" % rng.randrange(10 ** 6)


def _requests(rng: random.Random, table: bool, count: int) -> List[bytes]:
    out = []
    for _ in range(count):
        op = rng.randrange(9)
        keys = [_key(rng, table) for _ in range(rng.randrange(0, 12))]
        if op == 0:
            out.append(tt.encode_get(_key(rng)))
        elif op == 1:
            if table:  # a table record: NUL-separated column pairs
                out.append(tt.encode_put(b"t%d" % rng.randrange(30), b"name\0%s\0age\0%d"
                                         % (_value(rng).replace(b"\0", b"_"), rng.randrange(99))))
            else:
                out.append(tt.encode_put(_key(rng), _value(rng)))
        elif op == 2:
            out.append(tt.encode_mget(keys))
        elif op == 3:
            args = [x for k in keys for x in (k, _value(rng))]
            if table:
                args = [x for i, k in enumerate(keys) for x in (b"t%d" % i, b"name\0x%d" % i)]
            out.append(tt.encode_misc(b"putlist", args, opts=rng.choice((0, tt.MISC_NO_UPDATE_LOG))))
        elif op == 4:
            out.append(tt.encode_misc(b"outlist", keys))
        elif op == 5:
            out.append(tt.encode_misc(b"getlist", keys))
        elif op == 6:
            name = rng.choice((b"put", b"out", b"get"))
            args = [_key(rng, table), _value(rng)] if name == b"put" else [_key(rng, table)]
            out.append(tt.encode_misc(name, args[: rng.randrange(len(args) + 1)]))
        elif op == 7 and table and rng.random() < 0.5:
            cond = tt.query_addcond("name", rng.choice((0, 1, 2)), f"x{rng.randrange(5)}")
            out.append(tt.encode_misc(b"search", [cond, tt.query_setlimit(rng.randrange(1, 5), 0)]))
        elif op == 7:
            out.append(tt.encode_misc(b"putdup", [_key(rng), _value(rng)]))  # B+ tree duplicates
        else:
            out.append(tt.encode_misc(b"put\0junk", [_key(rng, table), _value(rng)]))  # name cut at NUL
    return out


def _python_path(service: TTService, request: bytes) -> Tuple[int, bytes]:
    parsed = tt.parse_request(request, 0)
    assert parsed is not None
    req, end = parsed
    return end, service.handle(req) or b""


def _native_path(service: TTService, request: bytes, log: Optional[_CapturedLog]):
    served = native.serve(service.db.handle, bytearray(request), log is not None)
    if served is None:
        return None
    end, reply, _cmd, _ok, message = served
    if message is not None:
        log.write(message, service.sid)
    return end, reply


@pytest.mark.parametrize("dbname", ["*", "+", "table.tct"])
@pytest.mark.parametrize("logged", [False, True])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_serve_matches_the_python_path(tmp_path, dbname: str, logged: bool, seed: int) -> None:
    rng = random.Random(seed)
    table = dbname.endswith(".tct")
    services, logs = [], []
    for side in ("c", "py"):
        name = str(tmp_path / f"{side}-{dbname}") if table else dbname
        service = TTService(TokyoCabinetDB(name), sid=7)
        log = _CapturedLog() if logged else None
        if log is not None:
            service.attach_update_log(log)
        services.append(service)
        logs.append(log)
    compiled, python = services
    taken = 0
    try:
        for request in _requests(rng, table, 300):
            got = _native_path(compiled, request, logs[0])
            if got is None:  # not a request the compiled path serves: both sides use Python
                got = _python_path(compiled, request)
            else:
                taken += 1
            assert got == _python_path(python, request), request
        assert taken > 150
        assert logs[0] is None or logs[0].records == logs[1].records
        for service in services:
            service.db.iterinit()
        dump = [[], []]
        for i, service in enumerate(services):
            while True:
                key = service.db.iternext()
                if key is None:
                    break
                dump[i].append((key, service.db.misc(b"getlist", [key])))
        assert dump[0] == dump[1]
    finally:
        for service in services:
            service.db.close()


def test_malformed_and_incomplete_requests_are_left_to_python(tmp_path) -> None:
    db = TokyoCabinetDB("*")
    try:
        handle = db.handle
        whole = tt.encode_mget([b"a", b"bb"])
        for cut in range(len(whole)):
            assert native.serve(handle, bytearray(whole[:cut]), False) is None
        bad_size = bytearray(tt.encode_get(b"key"))
        bad_size[2:6] = (-1).to_bytes(4, "big", signed=True)
        assert native.serve(handle, bad_size, False) is None
        assert native.serve(handle, bytearray(tt.encode_misc(b"setindex", [b"a", b"0"])), False) is None
        assert native.serve(handle, bytearray(tt.encode_vsiz(b"a")), False) is None
        assert native.serve(handle, bytearray(b"get a\r\n"), False) is None
    finally:
        db.close()


def _scan_all(scan, data: bytes, cuts: List[int]):
    """Feed ``data`` in growing prefixes, resuming the scan state like the server does."""
    answers = []
    state = None
    for cut in sorted(set(cuts)) + [len(data)]:
        decidable, state = scan(bytearray(data[:cut]), 0, state)
        answers.append((decidable, state))
        if decidable:
            state = None
    return answers


_items = st.lists(st.binary(max_size=20), max_size=12)


@settings(max_examples=200, deadline=None)
@given(items=_items, is_misc=st.booleans(), cuts=st.lists(st.integers(0, 400), max_size=6),
       corrupt=st.integers(-1, 60))
def test_scan_request_matches_python(items, is_misc: bool, cuts: List[int], corrupt: int) -> None:
    data = bytearray(tt.encode_misc(b"putlist", items) if is_misc else tt.encode_mget(items))
    if 0 <= corrupt < len(data):
        data[corrupt] ^= 0x80  # bad sizes and counts, or another command byte
    data = bytes(data)
    cuts = [c for c in cuts if c < len(data)]
    assert _scan_all(native.scan_request, data, cuts) == _scan_all(tt.scan_request, data, cuts)
