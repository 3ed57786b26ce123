"""kt.protocol.http_server: ktserver's request-parsing quirks and response framing (sans-IO)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kt.protocol import http_server as hs


def _parse(data: bytes, eof: bool = False):
    return hs.parse_request(data, 0, eof)


def test_body_only_for_post_put_and_unknown_methods():
    for method, has_body in ((b"GET", False), (b"HEAD", False), (b"DELETE", False), (b"POST", True),
                             (b"PUT", True), (b"FOO", True)):
        data = method + b" /x HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"
        req, end = _parse(data)
        assert (req.body == b"abc") is has_body
        assert end == (len(data) if has_body else len(data) - 3)  # else "abc" starts the next request
    assert _parse(b"FOO /x HTTP/1.1\r\n\r\n")[0].kind == hs.M_UNKNOWN


@pytest.mark.parametrize("line", [b"GET /x HTTP/2.0", b"GET /x HTTP/1.1 ", b"GET /x", b"GET ?q HTTP/1.1",
                                  b"GET", b"GET /a b HTTP/1.1", b"", b"GET /x http/1.1"])
def test_bad_request_lines_drop_the_connection(line):
    with pytest.raises(hs.DropConnection):
        _parse(line + b"\r\nHost: a\r\n\r\n")


def test_keep_alive_rules():
    assert _parse(b"GET /x HTTP/1.1\r\n\r\n")[0].keep_alive
    assert not _parse(b"GET /x HTTP/1.0\r\n\r\n")[0].keep_alive
    assert _parse(b"GET /x HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n")[0].keep_alive
    assert not _parse(b"GET /x HTTP/1.1\r\nconnection:   CLOSE\r\n\r\n")[0].keep_alive


def test_incomplete_requests_wait_then_fail_like_ktserver_at_eof():
    assert _parse(b"POST /x HTTP/1.1\r\nContent-Length: 5\r\n\r\nab") is None
    with pytest.raises(hs.HTTPErrorReply) as info:
        _parse(b"POST /x HTTP/1.1\r\nContent-Length: 5\r\n\r\nab", eof=True)
    assert info.value.code == 400 and info.value.reply.endswith(b"(receiving data failed)\n")
    assert _parse(b"GET /x HTTP/1.1\r\nHost") is None
    with pytest.raises(hs.DropConnection):
        _parse(b"GET /x HTTP/1.1\r\nHost", eof=True)


def test_size_limits():
    with pytest.raises(hs.HTTPErrorReply) as info:
        _parse(b"PUT /x HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % (hs.BODY_MAX + 1))
    assert info.value.code == 413
    # a line longer than 8191 bytes is cut there; the rest becomes the next line
    req, _ = _parse(b"GET /x HTTP/1.1\r\nX-A: " + b"a" * 9000 + b"\r\n\r\n")
    assert len(req.headers[b"x-a"]) == hs.LINE_MAX - 5
    with pytest.raises(hs.DropConnection):
        _parse(b"GET /" + b"b" * 9000 + b" HTTP/1.1\r\n\r\n")


def test_chunked_bodies():
    data = b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    req, end = _parse(data)
    assert req.body == b"abcde" and end == len(data)
    with pytest.raises(hs.HTTPErrorReply) as info:
        _parse(b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n")
    assert info.value.code == 400 and info.value.message == "invalid chunk"
    assert _parse(b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nab") is None


def test_response_header_order_and_forms():
    raw = hs.build_response(450, b"x", {"x-kt-error": "DB: 7", "content-type": "text/plain"},
                            keep_alive=False)
    lines = raw.split(b"\r\n")
    assert lines[0] == b"HTTP/1.1 450 Logical Inconsistency"
    assert lines[1] == b"Server: KyotoTycoon/0.9.56b" and lines[2].startswith(b"Date: ")
    assert lines[3:7] == [b"Connection: close", b"Content-Length: 1", b"Content-Type: text/plain",
                          b"X-Kt-Error: DB: 7"]
    head = hs.build_response(200, b"ignored", {"content-length": "7"}, head=True)
    assert head.endswith(b"\r\nContent-Length: 7\r\n\r\n") and head.count(b"Content-Length") == 1
    assert hs.status_name(299) == "Unknown Success Status"


_NAME_CHARS = "".join(chr(c) for c in range(0x21, 0x7F) if c != 0x3A)
_VALUE_CHARS = "".join(chr(c) for c in range(0x20, 0x7F))
_token = st.text(alphabet=_NAME_CHARS, min_size=1, max_size=20).map(str.encode)
_value = st.text(alphabet=_VALUE_CHARS, max_size=40).map(str.encode)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(_token, _value), max_size=6), st.binary(max_size=30))
def test_fast_and_byte_exact_paths_agree(headers, body):
    """CRLF heads take the fast path; bare-LF heads the byte-exact one: same result."""
    lines = [b"PUT /k?q=1 HTTP/1.1"] + [name + b": " + value for name, value in headers]
    lines.append(b"Content-Length: %d" % len(body))
    fast = _parse(b"\r\n".join(lines) + b"\r\n\r\n" + body)
    slow = _parse(b"\n".join(lines) + b"\n\n" + body)
    assert fast is not None and slow is not None
    for attr in hs.HTTPRequest.__slots__:
        assert getattr(fast[0], attr) == getattr(slow[0], attr)
