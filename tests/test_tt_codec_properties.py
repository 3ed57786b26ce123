"""Property tests for the TT binary codec: round trips and hostile input.

Client requests are read back by the server parser and server replies by the client parsers,
so each direction checks the other.  Arbitrary or truncated bytes must only ever give "need
more bytes" (None), a result, or a ProtocolError (ServerError for a well-formed failure reply)
- never another exception and never a hang.
"""

from __future__ import annotations

import math

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from kt.errors import KyotoTycoonError, ProtocolError
from kt.protocol import tt_binary as tt

# Bytes that stress text handling: tabs, newlines, NULs, invalid UTF-8, the empty string.
nasty = st.one_of(
    st.binary(max_size=64),
    st.sampled_from([b"", b"\t", b"\n", b"\x00", b"a\tb\nc\x00d", b"\xff\xfe", b"\xc8\x10", "é".encode()]),
)
int32 = st.integers(-(1 << 31), (1 << 31) - 1)
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def read_request(data: bytes) -> tt.Request:
    request, end = tt.parse_request(data)
    assert end == len(data)
    # A request cut anywhere is "need more bytes", never an error.
    for cut in sorted({0, 1, 2, len(data) // 2, len(data) - 1}):
        if 0 <= cut < len(data):
            assert tt.parse_request(data[:cut]) is None
    return request


@SETTINGS
@given(key=nasty, value=nasty, width=st.integers(0, 1 << 20))
def test_key_value_requests_round_trip(key, value, width):
    for name in ("put", "putkeep", "putcat", "putnr"):
        request = read_request(getattr(tt, f"encode_{name}")(key, value))
        assert (request.command_name, request.key, request.value) == (name, key, value)
    request = read_request(tt.encode_putshl(key, value, width))
    assert (request.key, request.value, request.width) == (key, value, width)
    for name in ("out", "get", "vsiz"):
        request = read_request(getattr(tt, f"encode_{name}")(key))
        assert (request.command_name, request.key) == (name, key)


@SETTINGS
@given(keys=st.lists(nasty, max_size=20), limit=int32, num=int32)
def test_list_and_number_requests_round_trip(keys, limit, num):
    assert read_request(tt.encode_mget(keys)).keys == keys
    prefix = keys[0] if keys else b""
    request = read_request(tt.encode_fwmkeys(prefix, limit))
    assert (request.prefix, request.max) == (prefix, limit)
    request = read_request(tt.encode_addint(prefix, num))
    assert (request.key, request.num) == (prefix, num)
    for opts in (0, 1):
        request = read_request(tt.encode_misc(b"putlist", keys, opts))
        assert (request.name, request.args, request.opts) == (b"putlist", keys, opts)
    request = read_request(tt.encode_ext(b"fn", prefix, b"v", 3))
    assert (request.name, request.key, request.value, request.opts) == (b"fn", prefix, b"v", 3)


@SETTINGS
@given(path=nasty, ts=st.integers(1, (1 << 63) - 1), opts=st.integers(0, 3), port=st.integers(0, 65535))
def test_admin_requests_round_trip(path, ts, opts, port):
    assert read_request(tt.encode_optimize(path)).params == path
    assert read_request(tt.encode_copy(path)).path == path
    request = read_request(tt.encode_restore(path, ts, opts))
    assert (request.path, request.ts, request.opts) == (path, ts, opts)
    request = read_request(tt.encode_setmst(path, port, ts, opts))
    assert (request.host, request.port, request.ts, request.opts) == (path, port, ts, opts)
    request = read_request(tt.encode_repl(ts, port + 1))
    assert (request.ts, request.sid) == (ts, port + 1)
    for name in ("iterinit", "iternext", "sync", "vanish", "rnum", "size", "stat"):
        assert read_request(getattr(tt, f"encode_{name}")()).command_name == name


def parse_all(parse, data: bytes):
    result, end = parse(data)
    assert end == len(data)
    for cut in range(0, len(data), max(1, len(data) // 7)):
        assert parse(data[:cut]) is None
    # Inside a bigger buffer, from a bytearray: same result, same length.
    again, end = parse(bytearray(b"\x00\x00" + data + b"\x01"), 2)
    assert (again, end) == (result, len(data) + 2)
    return result


@SETTINGS
@given(
    value=st.one_of(st.none(), nasty), items=st.lists(nasty, max_size=20), count=st.integers(0, (1 << 63) - 1)
)
def test_replies_round_trip(value, items, count):
    assert parse_all(tt.parse_get, tt.encode_get_reply(value)) == value
    assert parse_all(tt.parse_iternext, tt.encode_iternext_reply(value)) == value
    size = None if value is None else len(value)
    assert parse_all(tt.parse_vsiz, tt.encode_vsiz_reply(size)) == size
    pairs = list(zip(items[::2], items[1::2]))
    assert parse_all(tt.parse_mget, tt.encode_mget_reply(pairs)) == pairs
    assert parse_all(tt.parse_fwmkeys, tt.encode_fwmkeys_reply(items)) == items
    assert parse_all(tt.parse_misc, tt.encode_misc_reply(items)) == items
    assert parse_all(tt.parse_misc, tt.encode_misc_reply(None)) is None
    assert parse_all(tt.parse_rnum, tt.encode_rnum_reply(count)) == count
    assert parse_all(tt.parse_size, tt.encode_size_reply(count)) == count


@SETTINGS
@given(num=int32)
def test_addint_reply_is_signed(num):
    assert parse_all(tt.parse_addint, tt.encode_addint_reply(num)) == num


def test_one_megabyte_value_round_trips():
    value = bytes(range(256)) * 4096
    request = read_request(tt.encode_put(b"big", value))
    assert request.value == value
    assert parse_all(tt.parse_get, tt.encode_get_reply(value)) == value
    assert parse_all(tt.parse_misc, tt.encode_misc_reply([value, b"", value])) == [value, b"", value]


@SETTINGS
@given(
    names=st.lists(
        st.text(
            alphabet=st.characters(blacklist_characters="\t\n", blacklist_categories=("Cs",)), min_size=1
        ),
        max_size=8,
    )
)
def test_stat_text_round_trips(names):
    pairs = {name: f"v{i}\x00é" for i, name in enumerate(names)}
    assert parse_all(tt.parse_stat, tt.encode_stat_reply(pairs)) == pairs


@SETTINGS
@given(
    number=st.one_of(
        st.floats(allow_nan=True, allow_infinity=True, min_value=None, max_value=None).filter(
            lambda x: not math.isfinite(x) or abs(x) < 9e18
        ),
        st.sampled_from([0.0, -0.0, 1.5, -1.75, 1e-12, -1e-13, 123456.789, -9e18, 2.5e-7]),
    )
)
def test_adddouble_numbers_round_trip(number):
    integ, fract = tt.pack_double(number)
    back = tt.unpack_double(integ, fract)
    if math.isnan(number):
        assert math.isnan(back) and (integ, fract) == (tt.INT64_MIN, tt.INT64_MIN)
    elif math.isinf(number):
        assert back == number and fract == 0
    else:
        # Truncated fixed point: never further than 1e-12 plus float rounding, same sign.
        assert abs(back - number) <= 1e-12 + abs(number) * 4e-16
        assert integ == int(number) and (fract == 0 or (fract > 0) == (number > 0))
    # Through the wire both ways.
    request = read_request(tt.encode_adddouble(b"k", number))
    reply = parse_all(tt.parse_adddouble, tt.encode_adddouble_reply(number))
    for got in (request.num, reply):
        assert (math.isnan(got) and math.isnan(back)) or got == back


def test_adddouble_rejects_numbers_the_wire_cannot_carry():
    for bad in (1e19, -1e300):
        try:
            tt.encode_adddouble(b"k", bad)
        except ValueError as exc:
            assert "adddouble" in str(exc)
        else:
            raise AssertionError(f"{bad} was accepted")
    # A server holding such a number answers what the C server answers on x86-64.
    assert tt.parse_adddouble(tt.encode_adddouble_reply(1e300))[0] == -math.inf


PARSERS = [
    tt.parse_ok,
    tt.parse_put,
    tt.parse_get,
    tt.parse_vsiz,
    tt.parse_mget,
    tt.parse_fwmkeys,
    tt.parse_ext,
    tt.parse_addint,
    tt.parse_adddouble,
    tt.parse_rnum,
    tt.parse_stat,
    tt.parse_misc,
    tt.parse_repl_item,
    tt.parse_request,
]


def only_clean_outcomes(parse, data: bytes) -> None:
    try:
        result = parse(data)
    except ProtocolError:
        return
    except KyotoTycoonError:
        # ServerError/ScriptError: a well-formed failure reply, which starts with code 1.
        assert data[:1] == b"\x01" and parse is not tt.parse_request
        return
    if result is not None:
        assert 0 < result[1] <= len(data)


@settings(max_examples=400, deadline=None)
@given(data=st.binary(max_size=80))
def test_arbitrary_bytes_give_clean_outcomes(data):
    for parse in PARSERS:
        only_clean_outcomes(parse, data)


@settings(max_examples=300, deadline=None)
@given(
    cmd=st.sampled_from(sorted(tt.COMMAND_NAMES)),
    sizes=st.lists(
        st.sampled_from([0, 1, 5, -1, -(1 << 31), (1 << 28) + 1, (1 << 31) - 1]), min_size=4, max_size=4
    ),
    tail=st.binary(max_size=24),
)
def test_hostile_sizes_in_requests(cmd, sizes, tail):
    header = b"".join(size.to_bytes(4, "big", signed=True) for size in sizes)
    data = bytes([tt.MAGIC, cmd]) + header + tail
    try:
        parsed = tt.parse_request(data)
    except tt.RequestError as exc:
        assert exc.kind in {"bad_size", "too_many_args", "bad_name", "bad_width", "bad_repl"}
        return
    if parsed is not None:
        assert parsed[1] <= len(data)


def test_server_parser_rejects_what_ttserver_drops():
    cases = {
        "unknown_command": b"\xc8\xff",
        "not_binary": b"GET / HTTP/1.1\r\n",
        "bad_size": b"\xc8\x10" + (-1).to_bytes(4, "big", signed=True) + b"\x00" * 4,
        "too_many_args": b"\xc8\x31" + ((1 << 20) + 1).to_bytes(4, "big"),
        "bad_name": b"\xc8\x90" + (1024).to_bytes(4, "big") + b"\x00" * 8,
        "bad_width": b"\xc8\x13" + b"\x00\x00\x00\x01" * 2 + (-1).to_bytes(4, "big", signed=True),
        "bad_repl": b"\xc8\xa0" + b"\x00" * 8 + b"\x00\x00\x00\x01",
    }
    for kind, data in cases.items():
        try:
            tt.parse_request(data)
        except tt.RequestError as exc:
            assert exc.kind == kind, (kind, exc.kind)
        else:
            raise AssertionError(f"{kind}: accepted {data!r}")
    # The size limit itself is accepted (the bytes are simply not there yet).
    assert tt.parse_request(b"\xc8\x30" + (1 << 28).to_bytes(4, "big")) is None
    assert tt.parse_request(b"\xc8\x68" + (1023).to_bytes(4, "big") + b"\x00" * 12) is None


def test_client_encoders_reject_what_the_server_would_drop():
    for call in (
        lambda: tt.encode_putshl(b"k", b"v", -1),
        lambda: tt.encode_ext(b"x" * 1024),
        lambda: tt.encode_misc(b"x" * 1024),
        lambda: tt.encode_addint(b"k", 1 << 31),
        lambda: tt.encode_fwmkeys(b"", 1 << 31),
    ):
        try:
            call()
        except ValueError:
            continue
        raise AssertionError("accepted")


@SETTINGS
@given(records=st.lists(st.tuples(nasty, nasty), max_size=6))
def test_search_helpers(records):
    # Column blobs without NULs inside names/values survive split/join.
    clean = [(k.replace(b"\x00", b"") or b"c", v.replace(b"\x00", b"")) for k, v in records]
    assume(len({k for k, _ in clean}) == len(clean))
    blob = tt.join_columns(clean)
    assert tt.split_columns(blob) == clean
    pkey, columns = tt.parse_search_record(b"\x00pk\x00" + blob if blob else b"\x00pk")
    assert (pkey, columns) == (b"pk", clean)
    items, hint = tt.split_hint([b"1", b"2", tt.HINT_PREFIX + b"scanning"])
    assert (items, hint) == ([b"1", b"2"], b"scanning")
    assert tt.split_hint([b"1"]) == ([b"1"], None)
    assert tt.parse_search_count([b"17"]) == 17
    assert tt.query_addcond("age", tt.QCNUMGE | tt.QCNEGATE, 5) == b"addcond\x00age\x0016777226\x005"
    assert tt.query_setlimit(10, 0) == b"setlimit\x0010\x000"
    assert tt.query_get(["a", b"b"]) == b"get\x00a\x00b"
