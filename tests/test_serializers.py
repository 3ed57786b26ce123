"""Serializers: each seed constant round-trips what it promises and rejects what it cannot hold."""

from __future__ import annotations

import datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kt.serializers import (
    KT_BINARY,
    KT_JSON,
    KT_MSGPACK,
    KT_NONE,
    KT_PICKLE,
    TT_TABLE,
    Serializer,
    decode_table,
    encode_key,
    encode_table,
    key_decoder,
    resolve_serializer,
)

awkward_bytes = st.one_of(
    st.binary(max_size=64),
    st.sampled_from([b"", b"\t", b"\n", b"\x00", b"a\tb\nc\x00d", b"\xff\xfe", b"\x80abc"]),
)


@given(st.text())
def test_binary_round_trips_text(text):
    assert KT_BINARY.decode(KT_BINARY.encode(text)) == text


@given(awkward_bytes)
def test_binary_never_raises_on_stored_bytes(data):
    decoded = KT_BINARY.decode(data)
    # Valid UTF-8 comes back as str, anything else as the very same bytes.
    try:
        expected = data.decode("utf-8")
    except UnicodeDecodeError:
        expected = data
    assert decoded == expected


def test_binary_bytes_pass_through_and_numbers_become_text():
    assert KT_BINARY.encode(b"\x00\xff") == b"\x00\xff"
    assert KT_BINARY.encode(bytearray(b"ab")) == b"ab"
    assert KT_BINARY.encode(42) == b"42"
    assert KT_BINARY.encode(1.5) == b"1.5"


@pytest.mark.parametrize("bad", [None, True, object(), ["a"], {"a": 1}])
def test_binary_rejects_other_objects_with_a_clear_error(bad):
    with pytest.raises(TypeError, match="KT_BINARY"):
        KT_BINARY.encode(bad)


def nested(integers):
    return st.recursive(
        st.none() | st.booleans() | integers | st.text() | st.floats(allow_nan=False),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
        max_leaves=20,
    )


json_values = nested(st.integers())
# msgpack holds 64-bit integers only.
msgpack_values = nested(st.integers(min_value=-(2**63), max_value=2**64 - 1))


@given(json_values)
def test_json_round_trip(value):
    assert KT_JSON.decode(KT_JSON.encode(value)) == value


def test_json_is_utf8_text():
    assert KT_JSON.encode({"k": "日本"}) == '{"k":"日本"}'.encode()


@given(msgpack_values)
def test_msgpack_round_trip(value):
    assert KT_MSGPACK.decode(KT_MSGPACK.encode(value)) == value


def test_msgpack_keeps_bytes_and_str_apart():
    assert KT_MSGPACK.decode(KT_MSGPACK.encode([b"raw", "text"])) == [b"raw", "text"]


def test_msgpack_refuses_integers_it_cannot_hold():
    with pytest.raises(OverflowError):
        KT_MSGPACK.encode(2**64)


@given(st.one_of(json_values, st.binary(), st.tuples(st.integers(), st.text())))
def test_pickle_round_trip(value):
    assert KT_PICKLE.decode(KT_PICKLE.encode(value)) == value


def test_pickle_handles_rich_objects():
    value = {"when": datetime.datetime(2030, 1, 1), "set": {1, 2}}
    assert KT_PICKLE.decode(KT_PICKLE.encode(value)) == value


@given(awkward_bytes)
def test_none_is_identity_on_bytes(data):
    assert KT_NONE.decode(KT_NONE.encode(data)) == data


@pytest.mark.parametrize("bad", ["text", 1, None])
def test_none_rejects_non_bytes(bad):
    with pytest.raises(TypeError, match="bytes"):
        KT_NONE.encode(bad)


def test_none_accepts_bytes_like():
    assert KT_NONE.encode(memoryview(b"mv")) == b"mv"


columns = st.dictionaries(
    st.text(min_size=1).filter(lambda s: "\x00" not in s),
    st.text().filter(lambda s: "\x00" not in s),
    max_size=6,
)


@given(columns)
def test_table_round_trip(value):
    assert TT_TABLE.decode(TT_TABLE.encode(value)) == value


def test_table_wire_format_is_tokyo_cabinets():
    assert encode_table({"name": "alice", "age": 30}) == b"name\x00alice\x00age\x0030"
    assert decode_table(b"name\x00alice\x00age\x0030") == {"name": "alice", "age": "30"}
    assert decode_table(b"") == {}


def test_table_keeps_non_utf8_as_bytes():
    assert decode_table(b"bin\x00\xff\xfe") == {"bin": b"\xff\xfe"}


@pytest.mark.parametrize(
    "bad, error",
    [
        ({"a\x00b": "v"}, ValueError),
        ({"a": "v\x00w"}, ValueError),
        ({"": "v"}, ValueError),
        ({"a": None}, TypeError),
        ("not a dict", TypeError),
    ],
)
def test_table_rejects_what_the_format_cannot_hold(bad, error):
    with pytest.raises(error):
        encode_table(bad)


def test_custom_pair_is_accepted():
    ser = resolve_serializer((lambda v: v[::-1].encode(), lambda b: b.decode()[::-1]))
    assert isinstance(ser, Serializer)
    assert ser.decode(ser.encode("abc")) == "abc"


@pytest.mark.parametrize("bad", ["yaml", 3, (len,), (len, 3)])  # kt 0.9.6's "json"... are accepted
def test_unknown_serializer_is_rejected(bad):
    with pytest.raises(TypeError, match="serializer"):
        resolve_serializer(bad)


def test_resolve_defaults_and_constants():
    assert resolve_serializer(None) is KT_BINARY
    for ser in (KT_BINARY, KT_JSON, KT_MSGPACK, KT_NONE, KT_PICKLE, TT_TABLE):
        assert resolve_serializer(ser) is ser


@given(st.text())
def test_keys_round_trip(text):
    assert key_decoder(True)(encode_key(text)) == text
    assert key_decoder(False)(encode_key(text)) == text.encode("utf-8")


def test_keys_reject_other_types():
    with pytest.raises(TypeError, match="keys must be str or bytes"):
        encode_key(3)
    assert encode_key(b"\xff") == b"\xff"
    assert key_decoder(True)(b"\xff") == b"\xff"


def test_one_megabyte_values():
    big = b"\x00\t\n" * 350_000
    assert KT_NONE.decode(KT_NONE.encode(big)) == big
    assert KT_BINARY.decode(KT_BINARY.encode(big.decode("latin-1"))) == big.decode("latin-1")
    assert KT_PICKLE.decode(KT_PICKLE.encode(big)) == big
