"""The compiled client codecs (``kt._speedups.client_codecs``) against their pure-Python twins.

Every compiled function must give exactly its twin's result: the same bytes, the same parsed
value (types included: str vs bytes), ``None`` for the same partial buffers, and the same
exception (type and message) for malformed replies and bad arguments.  Replies are built from
random records by the codecs' own encoders and then fed whole, cut short, byte by byte, at an
offset and as a bytearray/memoryview.
"""

from __future__ import annotations

import struct
from typing import Any, Callable, List, Tuple

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kt import _native
from kt.protocol import kt_binary, tt_binary
from kt.serializers import KT_BINARY, KT_JSON, KT_NONE, encode_key

native = _native.load("client_codecs")
pytestmark = pytest.mark.skipif(native is None, reason="client_codecs not built (or KT_PURE_PYTHON=1)")

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

keys_st = st.one_of(
    st.binary(max_size=40),
    st.text(max_size=20),  # unicode, including non-ASCII and empty
    st.text(alphabet="abcXYZ019-_", max_size=20),  # plain ASCII
)
values_st = st.one_of(st.binary(max_size=300), st.text(max_size=50).map(lambda t: t.encode("utf-8")))
records_st = st.lists(st.tuples(st.binary(max_size=30), values_st), max_size=25)


def outcome(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Tuple[str, Any]:
    """A call's result, or its exception as (type, message), for comparing twins."""
    try:
        return "ok", fn(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001 - comparing whatever the twins raise
        return "raised", (type(exc), str(exc))


class Once(list):
    """An argument given to each twin as a fresh one-shot iterator over these items."""


def _fresh(args: Tuple[Any, ...]) -> List[Any]:
    return [iter(list(a)) if isinstance(a, Once) else a for a in args]


def same(name: str, *args: Any, **kwargs: Any) -> Any:
    twin = {**kt_binary.TWINS, **tt_binary.TWINS}[name]
    got = outcome(getattr(native, name), *_fresh(args), **kwargs)
    want = outcome(twin, *_fresh(args), **kwargs)
    assert got == want, (name, args[1:] if len(args) > 1 else args)
    if got[0] == "ok" and got[1] is not None and isinstance(got[1], tuple):
        assert [type(x) for x in _flat(got[1])] == [type(x) for x in _flat(want[1])]
    return got


def _flat(value: Any) -> List[Any]:
    if isinstance(value, dict):
        return [x for kv in value.items() for x in kv]
    if isinstance(value, (list, tuple)):
        return [y for x in value for y in _flat(x)]
    return [value]


def feed_all_ways(name: str, reply: bytes, **kwargs: Any) -> None:
    """Whole, every prefix (byte by byte), after junk at an offset, and as other buffer types."""
    for cut in range(len(reply) + 1):
        same(name, reply[:cut], 0, **kwargs)
    same(name, b"\x00\x01\x02" + reply, 3, **kwargs)
    same(name, bytearray(reply), 0, **kwargs)
    same(name, memoryview(reply), 0, **kwargs)
    same(name, reply + b"extra", 0, **kwargs)


def test_every_compiled_function_has_a_twin() -> None:
    compiled = {name for name in dir(native) if name.startswith(("kt_", "tt_"))}
    assert compiled == set(kt_binary.TWINS) | set(tt_binary.TWINS)


def test_protocol_modules_use_the_compiled_versions() -> None:
    assert kt_binary.parse_get_bulk_dict is native.kt_parse_get_bulk_dict
    assert tt_binary.parse_mget_dict is native.tt_parse_mget_dict


# -- Kyoto Tycoon ---------------------------------------------------------------------------


def kt_get_bulk_reply(records: List[Tuple[bytes, bytes]], db: int = 0, xt: int = 1 << 40) -> bytes:
    return kt_binary.encode_get_bulk_reply([(db, k, v, xt) for k, v in records])


@FAST
@given(records_st, st.integers(0, 0xFFFF), st.integers(-(1 << 63), (1 << 63) - 1))
def test_kt_get_bulk_parsers(records: List[Tuple[bytes, bytes]], db: int, xt: int) -> None:
    reply = kt_get_bulk_reply(records, db, xt)
    feed_all_ways("kt_parse_get_bulk_pairs", reply)
    feed_all_ways("kt_parse_get_bulk_reply", reply)
    for text_keys in (False, True):
        for text_values in (False, True):
            feed_all_ways("kt_parse_get_bulk_dict", reply, text_keys=text_keys, text_values=text_values)


def test_kt_get_bulk_dict_decodes_like_the_serializers() -> None:
    reply = kt_get_bulk_reply([(b"a", "é".encode()), (b"\xff", b"\xfe"), (b"a", b"last")])
    result, end = native.kt_parse_get_bulk_dict(reply, 0, text_keys=True, text_values=True)
    assert result == {"a": "last", b"\xff": b"\xfe"} and end == len(reply)
    pairs = kt_binary.parse_get_bulk_pairs(reply)[0]
    assert result == {KT_BINARY.decode(k): KT_BINARY.decode(v) for k, v in pairs}
    raw, _ = native.kt_parse_get_bulk_dict(reply, 0, text_keys=False, text_values=False)
    assert raw == {k: KT_NONE.decode(v) for k, v in pairs}


MALFORMED_KT = [
    b"\xbf",  # error reply
    b"\xbf\x00\x00",
    b"\x12",  # foreign magic
    b"\xb8\x00\x00\x00\x01",  # another command's reply
    b"\xba\x00\x00\x00\x01" + struct.pack(">HIIq", 0, 1 << 29, 0, 0) + b"k",  # oversized key
    b"\xba\x00\x00\x00\x01" + struct.pack(">HIIq", 0, 1, (1 << 28) + 1, 0) + b"k" * 20,
    b"\xba\x00\x00\x00\x02" + struct.pack(">HIIq", 0, 1, 1, 0) + b"kv",  # one record missing
    b"\xba\xff\xff\xff\xff",  # absurd count
    b"\xba\x00\x00\x00\x00",  # no hits
    b"\xba\x00\x00\x00\x02" + struct.pack(">HIIq", 0, 1, 1, 0) + b"kv" + struct.pack(">HI", 0, 1 << 30),
]


@pytest.mark.parametrize("reply", MALFORMED_KT)
def test_kt_malformed_replies_fail_alike(reply: bytes) -> None:
    for cut in range(len(reply) + 1):
        for name in ("kt_parse_get_bulk_pairs", "kt_parse_get_bulk_reply", "kt_parse_get_bulk_dict",
                     "kt_parse_get_value_reply", "kt_parse_set_bulk_reply", "kt_parse_remove_bulk_reply"):
            same(name, reply[:cut], 0)


@FAST
@given(st.binary(max_size=40), values_st, st.booleans())
def test_kt_single_record_replies(key: bytes, value: bytes, found: bool) -> None:
    reply = kt_get_bulk_reply([(key, value)] if found else [])
    feed_all_ways("kt_parse_get_value_reply", reply)
    two = kt_get_bulk_reply([(key, value), (key, value)])
    feed_all_ways("kt_parse_get_value_reply", two)
    for magic, name in ((0xB8, "kt_parse_set_bulk_reply"), (0xB9, "kt_parse_remove_bulk_reply")):
        feed_all_ways(name, kt_binary.encode_count_reply(magic, len(value)))


@FAST
@given(st.lists(keys_st, max_size=30), st.integers(0, 0xFFFF), st.booleans())
def test_kt_key_bulk_requests(keys: List[Any], db: int, no_reply: bool) -> None:
    for magic in (kt_binary.MAGIC_GET_BULK, kt_binary.MAGIC_REMOVE_BULK):
        same("kt_encode_key_bulk", magic, keys, db, encode_key, no_reply)
        same("kt_encode_key_bulk", magic, Once(keys), db, encode_key, no_reply)
        same("kt_encode_key_bulk", magic, [bytearray(k) if isinstance(k, bytes) else k for k in keys],
             db, encode_key, no_reply)


@FAST
@given(st.lists(st.tuples(keys_st, st.one_of(values_st, st.text(max_size=10), st.integers())), max_size=20),
       st.integers(0, 0xFFFF), st.integers(-(1 << 63), (1 << 63) - 1), st.booleans())
def test_kt_set_bulk_requests(items: List[Tuple[Any, Any]], db: int, xt: int, no_reply: bool) -> None:
    for serializer in (KT_BINARY, KT_NONE, KT_JSON):
        for pass_through in (False, True):
            same("kt_encode_set_bulk_items", items, db, xt, encode_key, serializer.encode, no_reply,
                 pass_through)
    same("kt_encode_set_bulk_items", dict(items).items(), db, xt, encode_key, KT_BINARY.encode)


@FAST
@given(st.binary(max_size=40), st.binary(max_size=200), st.integers(0, 0xFFFF),
       st.integers(-(1 << 63), (1 << 63) - 1), st.booleans())
def test_kt_single_record_requests(key: bytes, value: bytes, db: int, xt: int, no_reply: bool) -> None:
    same("kt_encode_get_one", db, key)
    same("kt_encode_set_one", db, key, value, xt, no_reply)


@FAST
@given(st.lists(st.tuples(st.integers(0, 0xFFFF), st.binary(max_size=30)), max_size=20), st.integers(0, 1))
def test_kt_key_record_requests(records: List[Tuple[int, bytes]], flags: int) -> None:
    for magic in (kt_binary.MAGIC_GET_BULK, kt_binary.MAGIC_REMOVE_BULK):
        same("kt_encode_key_records", magic, records, flags)
        same("kt_encode_key_records", magic, Once(records), flags)
    assert native.kt_encode_key_records(0xBA, records, 0) == kt_binary.encode_get_bulk(records)


@pytest.mark.parametrize("records", [
    [(0, "text")], [(-1, b"k")], [(1 << 16, b"k")], [(0, b"k", 1)], [b"k"], [(0, bytearray(b"k"))], None,
    [(True, b"k")], [(0, b"k" * ((1 << 28) + 1))],
])
def test_kt_bad_key_records_fail_alike(records: Any) -> None:
    same("kt_encode_key_records", 0xBA, records, 0)


@pytest.mark.parametrize("args", [
    (0xBA, ["ok", 1.5], 0), (0xBA, ["ok"], -1), (0xBA, ["ok"], 1 << 16), (0xBA, [], 70000),
    (0xBA, ["\ud800"], 0), (0x1BA, ["k"], 0), (0xBA, ["k"], True), (0xBA, None, 0),
])
def test_kt_bad_key_bulk_arguments_fail_alike(args: tuple) -> None:
    same("kt_encode_key_bulk", *args, encode_key)


@pytest.mark.parametrize("args", [
    ([("k", object())], 0, 0), ([("k", b"v")], 1 << 16, 0), ([("k", b"v")], 0, 1 << 63), ([(1, b"v")], 0, 0),
    ([("k", b"v", 3)], 0, 0), ([b"kv"], 0, 0), ([], -1, 0), ([("k", 1 << 100)], 0, 0),
])
def test_kt_bad_set_bulk_arguments_fail_alike(args: tuple) -> None:
    same("kt_encode_set_bulk_items", *args, encode_key, KT_BINARY.encode)
    same("kt_encode_set_one", args[1], "k", b"v", args[2])
    same("kt_encode_get_one", args[1], b"k")


def test_kt_oversized_keys_fail_alike() -> None:
    huge = b"k" * ((1 << 28) + 1)
    assert same("kt_encode_key_bulk", 0xBA, [b"a", huge], 0, encode_key)[0] == "raised"
    assert same("kt_encode_set_bulk_items", [(b"a", huge)], 0, 0, encode_key, KT_NONE.encode)[0] == "raised"
    assert same("kt_encode_set_one", 0, b"a", huge, 0)[0] == "raised"


# -- Tokyo Tyrant ---------------------------------------------------------------------------


def tt_mget_reply(records: List[Tuple[bytes, bytes]], code: int = 0) -> bytes:
    body = b"".join(struct.pack(">ii", len(k), len(v)) + k + v for k, v in records)
    return struct.pack(">Bi", code, len(records)) + body


def tt_list_reply(items: List[bytes], code: int = 0) -> bytes:
    return struct.pack(">Bi", code, len(items)) + b"".join(struct.pack(">i", len(i)) + i for i in items)


@FAST
@given(records_st, st.sampled_from([0, 1]))
def test_tt_mget_parsers(records: List[Tuple[bytes, bytes]], code: int) -> None:
    reply = tt_mget_reply(records, code)
    feed_all_ways("tt_parse_mget", reply)
    for text_keys in (False, True):
        for text_values in (False, True):
            feed_all_ways("tt_parse_mget_dict", reply, text_keys=text_keys, text_values=text_values)


@FAST
@given(st.lists(values_st, max_size=25), st.sampled_from([0, 1]))
def test_tt_misc_parser(items: List[bytes], code: int) -> None:
    feed_all_ways("tt_parse_misc", tt_list_reply(items, code))


@FAST
@given(values_st, st.sampled_from([0, 1]))
def test_tt_single_record_replies(value: bytes, code: int) -> None:
    feed_all_ways("tt_parse_get", struct.pack(">Bi", code, len(value)) + value if code == 0 else b"\x01")
    feed_all_ways("tt_parse_put", bytes([code]))


MALFORMED_TT = [
    b"\x02", b"\x05\x00\x00\x00\x00", b"\x00\xff\xff\xff\xff",  # bad code, negative count
    b"\x00\x00\x00\x00\x01\xff\xff\xff\xff\x00\x00\x00\x00",  # negative size
    b"\x00\x00\x00\x00\x01\x00\x00\x00\x01\xff\xff\xff\xfe",
    b"\x01\x00\x00\x00\x00", b"\x01\x00\x00\x00\x01\x00\x00\x00\x01\x00\x00\x00\x01kv",  # failure
    b"\x00\x80\x00\x00\x00",
]


@pytest.mark.parametrize("reply", MALFORMED_TT)
def test_tt_malformed_replies_fail_alike(reply: bytes) -> None:
    for cut in range(len(reply) + 1):
        for name in ("tt_parse_mget", "tt_parse_mget_dict", "tt_parse_misc", "tt_parse_get", "tt_parse_put"):
            same(name, reply[:cut], 0)


@FAST
@given(st.lists(keys_st, max_size=30))
def test_tt_mget_requests(keys: List[Any]) -> None:
    for name in ("tt_encode_mget_keys", "tt_encode_outlist"):
        same(name, keys, encode_key)
        same(name, Once(keys), encode_key)


@FAST
@given(st.lists(st.tuples(keys_st, st.one_of(values_st, st.text(max_size=10), st.integers())), max_size=20))
def test_tt_putlist_requests(items: List[Tuple[Any, Any]]) -> None:
    for serializer in (KT_BINARY, KT_NONE, KT_JSON):
        for pass_through in (False, True):
            same("tt_encode_putlist", items, encode_key, serializer.encode, pass_through)
            same("tt_encode_putnr_items", Once(items), encode_key, serializer.encode, pass_through)


@FAST
@given(st.binary(max_size=30), st.lists(st.binary(max_size=40), max_size=10), st.integers(0, 3))
def test_tt_misc_and_single_requests(name: bytes, args: List[bytes], opts: int) -> None:
    same("tt_encode_misc", name, args, opts)
    same("tt_encode_misc", name, tuple(args))
    same("tt_encode_get", name)
    same("tt_encode_put", name, b"".join(args))


@pytest.mark.parametrize("args", [
    (b"x" * 1024, []), ("putlist", [b"a"]), (b"putlist", ["a"]), (b"putlist", [b"a"], -1),
    (b"putlist", [b"a"], 1 << 32), (b"putlist", [1]), (b"putlist", None),
])
def test_tt_bad_misc_arguments_fail_alike(args: tuple) -> None:
    assert same("tt_encode_misc", *args)[0] == "raised"


def test_tt_bad_keys_and_values_fail_alike() -> None:
    for items in ([(1.5, b"v")], [("k", object())], [("\ud800", b"v")], [("k",)]):
        assert same("tt_encode_putlist", items, encode_key, KT_BINARY.encode)[0] == "raised"
        assert same("tt_encode_putnr_items", items, encode_key, KT_BINARY.encode)[0] == "raised"
    assert same("tt_encode_mget_keys", [b"a", 2], encode_key)[0] == "raised"
    assert same("tt_encode_outlist", ["a", b"b", 2], encode_key)[0] == "raised"
    huge = b"k" * ((1 << 28) + 1)
    assert same("tt_encode_putnr_items", [(b"a", huge)], encode_key, KT_NONE.encode)[0] == "raised"
    assert same("tt_encode_putlist", [("a", huge)], encode_key, KT_NONE.encode)[0] == "raised"
    assert same("tt_encode_outlist", ["a", huge], encode_key)[0] == "raised"
    assert same("tt_encode_get", "text")[0] == "raised"
    assert same("tt_encode_put", b"k", "text")[0] == "raised"
