"""The KT server's fast RPC path (kt.protocol.fast_rpc) against its general HTTP path.

Two handlers on two fresh services take the same byte stream, split the same random way: one
with the fast path, one without.  Their replies (Date aside) and their databases must be the
same, for ordinary requests and for the unusual ones the fast path must leave alone.
"""

from __future__ import annotations

import re
from typing import Optional

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kt.protocol import fast_rpc, kt_rpc
from kt.protocol import http_server as hs
from kt.server.common import AGAIN, LOG_ALL, Connection, Logger, Offload
from kt.server.kt_server import KTServerHandler
from kt.server.kt_service import KTService

_DATE = re.compile(rb"\r\nDate: [^\r]*\r\n")
KEYS = [b"a", b"b", b"k\tt", b"n\x00l", b"\xff\xfe", b"num"]
PROCEDURES = ["get", "set", "add", "replace", "remove", "check", "increment", "append", "cas",
              "seize", "get_bulk", "set_bulk", "remove_bulk", "echo", "void", "increment_double",
              "nosuch", "cur_jump", "status"]


def _handler(fast: bool, logger: Optional[Logger] = None) -> KTServerHandler:
    handler = KTServerHandler(KTService(["*", "%"]), server_name=b"localhost:1978",
                              logger=logger or Logger(kinds=0))
    handler.use_fast_rpc = fast
    return handler


def _pump(handler: KTServerHandler, conn: Connection, out: list, eof: bool) -> bool:
    """Step like EventLoopServer._process; False once the connection is closed."""
    while conn.buf or (eof and conn.state is not None):
        result = handler.step(conn, eof)
        if result is None:
            return not eof
        if result is AGAIN:
            continue
        if isinstance(result, Offload):
            result = result.run()
        reply, keep = result
        out.append(_DATE.sub(b"\r\nDate: -\r\n", reply))
        if not keep:
            return False
    return True


def _serve(handler: KTServerHandler, pieces: list) -> bytes:
    conn = Connection(None, "127.0.0.1:1")
    handler.open(conn)
    out: list = []
    try:
        for piece in pieces:
            conn.buf += piece
            if not _pump(handler, conn, out, False):
                return b"".join(out)
        _pump(handler, conn, out, True)
        return b"".join(out)
    finally:
        handler.close(conn)


def _state(service: KTService) -> tuple:
    records = []
    for idx in (b"0", b"1"):
        for key in KEYS:
            records.append(service.rpc("get", {b"key": key, b"DB": idx})[1])
    return records, list(service._counts)


params_st = st.lists(st.tuples(
    st.sampled_from([b"key", b"value", b"num", b"xt", b"orig", b"oval", b"nval", b"DB", b"_a", b"_b",
                     b"_k\tt", b"atomic", b"SIGNAL", b"CUR", b"x"]),
    st.one_of(st.sampled_from(KEYS + [b"1", b"-3", b"0", b"99999999999", b"2.5", b"try", b"set"]),
              st.binary(max_size=40))), max_size=6)


@st.composite
def requests(draw) -> bytes:
    procedure = draw(st.sampled_from(PROCEDURES)).encode()
    params = draw(params_st)
    colenc = draw(st.sampled_from([None, "B", "U", "Q", "auto", "raw"]))
    if colenc == "raw":  # bytes the encoding-less TSV cannot carry, sent anyway
        body = b"".join(k + b"\t" + v + draw(st.sampled_from([b"\n", b"\r\n"])) for k, v in params)
        colenc = None
    else:
        body = kt_rpc.encode_tsv(params, None if colenc == "auto" else colenc) if params else b""
        if colenc == "auto":
            colenc = kt_rpc.choose_request_encoding(params)
            body = kt_rpc.encode_tsv(params, colenc)
    ctype = kt_rpc.tsv_content_type(colenc).encode()
    kind = draw(st.integers(0, 12))
    method, version, target = b"POST", b"HTTP/1.1", b"/rpc/" + procedure
    headers = [b"Host: localhost", b"Content-Type: " + ctype, b"Content-Length: %d" % len(body)]
    if kind == 1:
        version = b"HTTP/1.0"
    elif kind == 2:
        headers.append(draw(st.sampled_from([b"Connection: close", b"Connection: keep-alive",
                                             b"connection:  Close"])))
    elif kind == 3:
        target += b"?" + draw(st.sampled_from([b"key=a", b"DB=1&key=b", b"WAIT=x&WAITTIME=0.01",
                                               b"value=%00z"]))
    elif kind == 4:
        method = draw(st.sampled_from([b"GET", b"PUT", b"HEAD", b"FOO", b"DELETE"]))
    elif kind == 5:
        headers = [h.lower() for h in headers]
    elif kind == 6:
        headers[1] = draw(st.sampled_from([b"Content-Type: application/x-www-form-urlencoded",
                                           b"Content-Type: text/plain", b"X-A: b",
                                           b"Content-Type: text/tab-separated-values; colenc=\"B\""]))
    elif kind == 7:  # chunked
        headers[2] = b"Transfer-Encoding: chunked"
        body = (b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)) if body else b"0\r\n\r\n"
    elif kind == 8:  # a body longer or shorter than announced
        headers[2] = b"Content-Length: %d" % max(0, len(body) + draw(st.integers(-3, 3)))
    elif kind == 9:  # bare LF line ends / stray CR
        sep = draw(st.sampled_from([b"\n", b"\r\r\n"]))
        return method + b" " + target + b" " + version + sep + sep.join(headers) + sep + sep + body
    elif kind == 10:
        headers.insert(draw(st.integers(0, len(headers))), draw(st.sampled_from(
            [b"X-Junk:\x00z", b"Content-Length: 5", b"Expect: 100-continue", b": empty", b"no colon",
             b"Content-Length:  %d" % len(body), b"User-Agent: t"])))
    elif kind == 11:
        target = b"/rpc/" + procedure.replace(b"e", b"%65")
    line = method + b" " + target + b" " + version
    return b"\r\n".join([line] + headers) + b"\r\n\r\n" + body


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(requests(), min_size=1, max_size=6), st.data())
def test_fast_path_answers_and_stores_like_the_general_path(reqs, data):
    stream = b"".join(reqs)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=3)))
    pieces = [stream[a:b] for a, b in zip([0] + cuts, cuts + [len(stream)])]
    fast, general = _handler(True), _handler(False)
    try:
        assert _serve(fast, pieces) == _serve(general, pieces)
        assert _state(fast.service) == _state(general.service)
    finally:
        fast.service.close()
        general.service.close()


def test_fast_path_takes_ordinary_requests_and_leaves_unusual_ones():
    ordinary = kt_rpc.build_rpc_request("set", [(b"key", b"a"), (b"value", b"v")])
    got = fast_rpc.find_head(ordinary)
    assert got is not None and got[0].procedure == "set" and got[1] + got[0].clen == len(ordinary)
    for unusual in (ordinary.replace(b"POST", b"PUT"), ordinary.replace(b"\r\nHost", b"\nHost"),
                    ordinary.replace(b"Content-Length", b"Transfer-Encoding: chunked\r\nX"),
                    ordinary.replace(b"text/tab-separated-values", b"application/x-www-form-urlencoded"),
                    ordinary.replace(b"HTTP/1.1", b"HTTP/1.2"), ordinary.replace(b"/rpc/set", b"/set")):
        assert fast_rpc.find_head(unusual) is None, unusual


@settings(max_examples=500, deadline=None)
@given(st.sampled_from([200, 400, 450, 500, 501, 503]),
       st.dictionaries(st.binary(max_size=300), st.binary(max_size=300), max_size=4)
       | st.dictionaries(st.sampled_from([b"value", b"xt", b"num", b"ERROR", b"_a"]),
                         st.binary(max_size=20) | st.sampled_from([b"abc", b"1", b"a b", b"%~"]), max_size=3),
       st.booleans())
def test_rpc_response_is_build_response_of_the_encoded_output(code, output, keep):
    body, ctype = kt_rpc.encode_rpc_output(output)
    want = hs.build_response(code, body, {"content-type": ctype}, keep_alive=keep)
    assert _DATE.sub(b"", fast_rpc.rpc_response(code, output, keep)) == _DATE.sub(b"", want)


def _logged(path, fast: bool, stream: bytes, broken: bool = False) -> tuple:
    """The replies to ``stream`` and the log lines (timestamps cut) of a handler logging all."""
    logger = Logger(str(path), kinds=LOG_ALL)
    handler = _handler(fast, logger)
    if broken:  # a bug below the handler
        handler.service.rpc = lambda *_args: 1 // 0
    try:
        reply = _serve(handler, [stream])
    finally:
        handler.service.close()
        logger.close()
    return reply, [line.split(": ", 1)[1] for line in path.read_text().splitlines()]


def test_fast_path_logs_like_the_general_path(tmp_path):
    stream = b"".join([
        kt_rpc.build_rpc_request("set", [(b"key", b"a"), (b"value", b"\x00v")]),
        kt_rpc.build_rpc_request("get", [(b"key", b"a")]),
        kt_rpc.build_rpc_request("get", [(b"key", b"missing")]),
        kt_rpc.build_rpc_request("increment", [(b"key", b"a"), (b"num", b"1")]),
        kt_rpc.build_rpc_request("nosuch", []),
        kt_rpc.build_rpc_request("get", [(b"key", b"a")], keep_alive=False),
    ])
    fast = _logged(tmp_path / "fast.log", True, stream)
    assert fast == _logged(tmp_path / "general.log", False, stream)
    assert len(fast[1]) == 6
    assert fast[1][0] == "[INFO]: (127.0.0.1:1): POST /rpc/set HTTP/1.1: 200"
    # a bug below answers 500 "logic error" and closes, logged alike
    fast = _logged(tmp_path / "fast-broken.log", True, stream, broken=True)
    assert fast == _logged(tmp_path / "general-broken.log", False, stream, broken=True)
    assert b"500 Internal Server Error" in fast[0] and len(fast[1]) == 1
    assert "ZeroDivisionError" in fast[1][0]
