"""Property tests for the Kyoto Tycoon codecs: round trips and hostile bytes."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kt.errors import ProtocolError, ServerError
from kt.protocol import http, kt_binary, kt_rpc

# Bytes that stress every codec: separators, NUL, CR/LF, '=', '%', '+', and non-UTF-8.
tricky = st.binary(max_size=64) | st.lists(
    st.sampled_from(
        [b"\t", b"\n", b"\r", b"\0", b"=", b"%", b"+", b" ", b"\x7f", b"\xff", b"a", b"\xe6\x97"]
    ),
    max_size=12,
).map(b"".join)
dbidx = st.integers(0, 0xFFFF)
xt = st.integers(-(1 << 63), (1 << 63) - 1)
set_records = st.lists(st.tuples(dbidx, tricky, tricky, xt), max_size=8)
key_records = st.lists(st.tuples(dbidx, tricky), max_size=8)
script_records = st.lists(st.tuples(tricky, tricky), max_size=8)
BIG = bytes(range(256)) * 4096  # 1 MiB, every byte value


# --------------------------------------------------------------------------- binary


@given(set_records, st.booleans())
def test_set_bulk_request_round_trip(records, no_reply):
    raw = kt_binary.encode_set_bulk(records, no_reply)
    request, end = kt_binary.parse_request(raw)
    assert end == len(raw) and request.failure is None
    assert request.records == records and request.no_reply == no_reply


@given(key_records, st.booleans())
def test_key_requests_round_trip(records, no_reply):
    for raw, magic in (
        (kt_binary.encode_get_bulk(records), kt_binary.MAGIC_GET_BULK),
        (kt_binary.encode_remove_bulk(records, no_reply), kt_binary.MAGIC_REMOVE_BULK),
    ):
        request, end = kt_binary.parse_request(bytearray(raw))
        assert (request.magic, request.records, end) == (magic, records, len(raw))


@given(tricky, script_records, st.booleans())
def test_play_script_round_trip(name, records, no_reply):
    raw = kt_binary.encode_play_script(name, records, no_reply)
    request, end = kt_binary.parse_request(memoryview(raw))
    assert (request.name, request.records, request.no_reply, end) == (name, records, no_reply, len(raw))
    reply = kt_binary.encode_play_script_reply(records)
    got, end = kt_binary.parse_play_script_reply(reply)
    assert end == len(reply)
    assert got == sorted(records, key=lambda kv: kv[0])


@given(set_records)
def test_get_bulk_reply_round_trip_and_truncation(records):
    reply = kt_binary.encode_get_bulk_reply(records)
    got, end = kt_binary.parse_get_bulk_reply(reply)
    assert got == records and end == len(reply)
    for cut in range(0, len(reply), max(1, len(reply) // 16)):
        assert kt_binary.parse_get_bulk_reply(reply[:cut]) is None
    if len(records) == 1:
        one, _ = kt_binary.parse_get_one_reply(reply)
        assert one == (records[0][2], records[0][3])


@given(st.binary(max_size=200), st.integers(0, 3))
@settings(max_examples=300)
def test_hostile_replies_never_hang_or_crash(garbage, which):
    parser = (
        kt_binary.parse_set_bulk_reply,
        kt_binary.parse_get_bulk_reply,
        kt_binary.parse_play_script_reply,
        kt_binary.parse_get_one_reply,
    )[which]
    try:
        result = parser(garbage)
    except (ProtocolError, ServerError):
        return
    if result is not None:
        assert result[1] <= len(garbage)


@given(st.binary(max_size=200), st.booleans())
@settings(max_examples=300)
def test_hostile_requests_never_hang_or_crash(garbage, eof):
    result = kt_binary.parse_request(garbage, 0, eof)
    if eof and garbage:
        assert result is not None
    if result is not None:
        assert 0 < result[1] <= len(garbage)


def test_oversized_sizes_are_protocol_errors():
    bad = kt_binary.encode_count_reply(kt_binary.MAGIC_GET_BULK, 1) + b"\0\0" + (1 << 29).to_bytes(4, "big")
    with pytest.raises(ProtocolError):
        kt_binary.parse_get_bulk_reply(bad + b"\0" * 12)
    with pytest.raises(ProtocolError):
        kt_binary.parse_set_bulk_reply(b"\xb9\0\0\0\0")
    request, _ = kt_binary.parse_request(b"\xb4\0\0\0\0" + (1 << 29).to_bytes(4, "big") + b"\0\0\0\0")
    assert request.failure == kt_binary.OVERSIZED


def test_one_megabyte_value_binary():
    raw = kt_binary.encode_set_one(0, b"k", BIG, kt_binary.DATA_MAX_SIZE)
    request, end = kt_binary.parse_request(raw)
    assert request.records == [(0, b"k", BIG, kt_binary.DATA_MAX_SIZE)] and end == len(raw)
    reply = kt_binary.encode_get_bulk_reply([(0, b"k", BIG, 7)])
    assert kt_binary.parse_get_one_reply(bytearray(reply))[0] == (BIG, 7)
    assert kt_binary.parse_get_bulk_reply(reply[:-1]) is None


# --------------------------------------------------------------------------- RPC


@given(tricky)
def test_column_codecs_round_trip(data):
    assert kt_rpc.base_decode(kt_rpc.base_encode(data)) == data
    assert kt_rpc.url_decode(kt_rpc.url_encode(data)) == data
    assert kt_rpc.quote_decode(kt_rpc.quote_encode(data)) == data
    encoded = kt_rpc.url_encode(data)
    assert re.fullmatch(rb"(?:[A-Za-z0-9_.~-]|%[0-9a-f]{2})*", encoded)
    assert re.fullmatch(rb"(?:[\x20-\x3c\x3e-\x7e]|=[0-9A-F]{2})*", kt_rpc.quote_encode(data))


@given(st.binary(max_size=100))
def test_decoders_accept_anything(data):
    for decode in (kt_rpc.base_decode, kt_rpc.url_decode, kt_rpc.quote_decode):
        assert isinstance(decode(data), bytes)
    # urldecode drops raw control/high bytes and maps '+' to a space.
    plain = bytes(c for c in data.split(b"\0")[0] if 0x20 < c < 0x7F and c not in b"%+")
    if plain == data:
        assert kt_rpc.url_decode(data) == data


@given(st.lists(st.tuples(tricky, tricky), max_size=8), st.sampled_from(["B", "U", "Q"]))
def test_tsv_body_round_trip_through_server_parser(pairs, colenc):
    body = kt_rpc.encode_tsv(pairs, colenc)
    params = kt_rpc.parse_rpc_params(None, body, kt_rpc.tsv_content_type(colenc))
    assert params == dict(pairs)


@given(st.lists(st.tuples(tricky, tricky), max_size=8))
def test_auto_encoding_is_lossless(pairs):
    request = kt_rpc.build_rpc_request("echo", pairs, "h")
    head, _, body = request.partition(b"\r\n\r\n")
    content_type = [line for line in head.split(b"\r\n") if line.startswith(b"Content-Type: ")][0][14:]
    params = kt_rpc.parse_rpc_params(None, body, content_type.decode())
    assert params == dict(pairs)


@given(st.dictionaries(tricky, tricky, max_size=8))
def test_server_output_round_trip_through_client(output):
    body, content_type = kt_rpc.encode_rpc_output(output)
    assert kt_rpc.checkmapenc(output) in (None, "B", "U")
    raw = http.build_request("X", "/", [], b"")  # just to exercise the builder
    assert raw.startswith(b"X / HTTP/1.1\r\n")
    head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nContent-Type: %s\r\n\r\n"
    response = head % (len(body), content_type.encode()) + body
    parsed, end = http.parse_response(response)
    assert end == len(response)
    assert kt_rpc.decode_tsv_response(parsed.body, parsed.content_type) == output


def test_one_megabyte_value_rpc():
    for colenc in ("B", "U", "Q"):
        body = kt_rpc.encode_tsv([(b"value", BIG)], colenc)
        assert kt_rpc.parse_rpc_params(None, body, kt_rpc.tsv_content_type(colenc)) == {b"value": BIG}
    body, content_type = kt_rpc.encode_rpc_output({b"value": BIG})
    assert content_type.endswith("colenc=B")
    assert kt_rpc.decode_tsv_response(body, content_type) == {b"value": BIG}


def test_form_and_query_quirks():
    got = kt_rpc.parse_rpc_params(b" a=1;b=%zA&c&d=x+y", b"e=1\0f=2", kt_rpc.FORM_CONTENT_TYPE)
    assert got == {b"a": b"1", b"b": b"\n", b"c": b"", b"d": b"x y", b"e": b"1"}
    assert kt_rpc.parse_colenc('text/tab-separated-values; colenc="u"') == "U"
    assert kt_rpc.parse_colenc("text/plain; colenc=B") is None
    assert kt_rpc.parse_colenc("TEXT/Tab-Separated-Values;colenc=q; colenc=x") == "Q"  # last valid wins
    assert kt_rpc.parse_colenc("text/tab-separated-values; charset=utf-8; COLENC=b") == "B"
    with pytest.raises(ServerError) as info:
        kt_rpc.raise_for_rpc_status(500, {b"ERROR": b"DB: 9: boom"}, "set")
    assert (info.value.message, info.value.code, info.value.procedure) == ("DB: 9: boom", 500, "set")


# --------------------------------------------------------------------------- HTTP


@given(st.binary(max_size=300), st.lists(st.integers(1, 40), max_size=6))
def test_chunked_bodies(body, sizes):
    chunks, rest = [], body
    for size in sizes:
        chunks.append(rest[:size])
        rest = rest[size:]
    chunks.append(rest)
    wire = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks if c) + b"0\r\n\r\n"
    raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + wire
    response, end = http.parse_response(raw)
    assert response.body == body and end == len(raw)
    for cut in range(0, len(raw), 7):
        assert http.parse_response(raw[:cut]) is None


@given(st.binary(max_size=300), st.booleans())
@settings(max_examples=300)
def test_hostile_http_never_hangs(garbage, eof):
    try:
        result = http.parse_response(garbage, 0, eof=eof)
    except ProtocolError:
        return
    if result is not None:
        assert result[1] <= len(garbage)


def test_http_framing_cases():
    head, end = http.parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", head_request=True)
    assert head.body == b"" and head.header("CONTENT-LENGTH") == "5"
    closing = b"HTTP/1.0 200 OK\r\nServer: x\r\n\r\nabc"
    assert http.parse_response(closing) is None
    response, _ = http.parse_response(closing, eof=True)
    assert response.body == b"abc" and not response.keep_alive
    for bad in (b"HTTP/1.1 2x0 OK\r\n\r\n", b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n", b"\xba\0\0\0\0\0",
                b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n"):
        with pytest.raises(ProtocolError):
            http.parse_response(bad)
    with pytest.raises(ProtocolError):
        http.parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc", eof=True)
    with pytest.raises(ValueError):
        http.build_request("GET", "/", [("X", "a\r\nb")])


@given(set_records, dbidx, xt, st.booleans())
def test_fused_client_encoders_match_the_generic_ones(records, db, expire, no_reply):
    items = [(k, v) for _, k, v, _ in records]
    fused = kt_binary.encode_set_bulk_items(items, db, expire, bytes, bytes, no_reply)
    assert fused == kt_binary.encode_set_bulk([(db, k, v, expire) for k, v in items], no_reply)
    keys = [k for k, _ in items]
    assert kt_binary.encode_key_bulk(kt_binary.MAGIC_GET_BULK, keys, db, bytes, no_reply) == (
        kt_binary.encode_get_bulk([(db, k) for k in keys])
    )
    assert kt_binary.encode_key_bulk(kt_binary.MAGIC_REMOVE_BULK, keys, db, bytes, no_reply) == (
        kt_binary.encode_remove_bulk([(db, k) for k in keys], no_reply)
    )
    reply = kt_binary.encode_get_bulk_reply(records)
    pairs, end = kt_binary.parse_get_bulk_pairs(bytearray(reply))
    assert pairs == items and end == len(reply)
    for cut in range(0, len(reply), max(1, len(reply) // 16)):
        assert kt_binary.parse_get_bulk_pairs(reply[:cut]) is None


@given(set_records)
def test_get_value_fast_path_agrees_with_get_one(records):
    reply = kt_binary.encode_get_bulk_reply(records[:1])
    one = kt_binary.parse_get_one_reply(reply)
    value = kt_binary.parse_get_value_reply(memoryview(reply))
    assert value == ((None if one[0] is None else one[0][0]), one[1])
    for cut in range(len(reply)):
        assert kt_binary.parse_get_value_reply(reply[:cut]) is None
    with pytest.raises(ServerError):
        kt_binary.parse_get_value_reply(b"\xbf")
    with pytest.raises(ProtocolError):
        kt_binary.parse_get_value_reply(b"\xb8" + reply[1:])
