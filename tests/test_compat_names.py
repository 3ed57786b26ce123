"""coleifer/kt 0.9.6's modules and names: kt.constants, kt.exceptions, kt.client, kt.embedded.

Every name kt exported from these modules must import, and each must be (``is``) this
package's own object, so nothing can drift between the two spellings.
"""

from __future__ import annotations

import pytest

import kt
import kt.client
import kt.constants as C
import kt.embedded
import kt.errors
import kt.exceptions
import kt.tokyotyrant as tt
from kt.serializers import resolve_serializer

# kt 0.9.6's kt/constants.py, name -> value (Tokyo Cabinet's tctdb.h numbers).
KT_CONSTANTS = {
    "OP_STR_EQ": 0, "OP_STR_CONTAINS": 1, "OP_STR_STARTSWITH": 2, "OP_STR_ENDSWITH": 3,
    "OP_STR_ALL": 4, "OP_STR_ANY": 5, "OP_STR_ANYEXACT": 6, "OP_STR_REGEX": 7,
    "OP_NUM_EQ": 8, "OP_NUM_GT": 9, "OP_NUM_GE": 10, "OP_NUM_LT": 11, "OP_NUM_LE": 12,
    "OP_NUM_BETWEEN": 13, "OP_NUM_ANYEXACT": 14, "OP_FTS_PHRASE": 15, "OP_FTS_ALL": 16,
    "OP_FTS_ANY": 17, "OP_FTS_EXPRESSION": 18, "OP_NEGATE": 1 << 24, "OP_NOINDEX": 1 << 25,
    "ORDER_STR_ASC": 0, "ORDER_STR_DESC": 1, "ORDER_NUM_ASC": 2, "ORDER_NUM_DESC": 3,
    "INDEX_STR": 0, "INDEX_NUM": 1, "INDEX_TOKEN": 2, "INDEX_QGRAM": 3,
    "IOP_OPTIMIZE": 9998, "IOP_DELETE": 9999, "IOP_KEEP": 1 << 24,
}


@pytest.mark.parametrize("name", sorted(KT_CONSTANTS))
def test_constants_have_kt_values(name):
    assert getattr(C, name) == KT_CONSTANTS[name]
    assert name in C.__all__
    if hasattr(tt, name):  # one definition: the constants module binds the client's
        assert getattr(C, name) is getattr(tt, name)


def test_from_kt_import_constants():
    from kt import constants

    assert constants is C


@pytest.mark.parametrize(
    "name", ["KyotoTycoonError", "ImproperlyConfigured", "ProtocolError", "ScriptError",
             "ServerConnectionError", "ServerError"])
def test_exceptions_are_the_errors_hierarchy(name):
    cls = getattr(kt.exceptions, name)
    assert cls is getattr(kt.errors, name)
    assert issubclass(cls, kt.errors.KyotoTycoonError)
    assert getattr(kt, name) is cls


def test_improperly_configured_is_raised_for_a_bad_serializer():
    with pytest.raises(kt.exceptions.ImproperlyConfigured):
        kt.KyotoTycoon(serializer="no-such-serializer")
    with pytest.raises(TypeError):  # and stays a TypeError, as before
        kt.TokyoTyrant(serializer=object())


@pytest.mark.parametrize(
    "text, serializer",
    [("binary", kt.KT_BINARY), ("json", kt.KT_JSON), ("msgpack", kt.KT_MSGPACK), ("none", kt.KT_NONE),
     ("pickle", kt.KT_PICKLE), ("table", kt.TT_TABLE)])
def test_kt_serializer_strings_resolve(text, serializer):
    assert resolve_serializer(text) is serializer


def test_client_module_names():
    for name in ("KT_BINARY", "KT_JSON", "KT_MSGPACK", "KT_NONE", "KT_PICKLE", "TT_TABLE",
                 "KyotoTycoon", "TokyoTyrant", "QueryBuilder"):
        assert getattr(kt.client, name) is getattr(kt, name)
    assert kt.client.KT_SERIALIZERS == {kt.KT_BINARY, kt.KT_JSON, kt.KT_MSGPACK, kt.KT_NONE,
                                        kt.KT_PICKLE, kt.TT_TABLE}
    assert kt.client.dict_to_table({"a": "1", "b": "x"}) == b"a\x001\x00b\x00x"
    assert kt.client.table_to_dict(b"a\x001\x00b\x00x") == {"a": "1", "b": "x"}


@pytest.mark.parametrize(
    "value, expected", [("ü", b"\xc3\xbc"), (b"\xff", b"\xff"), (None, None), (12, b"12"), (1.5, b"1.5")])
def test_client_encode(value, expected):
    assert kt.client.encode(value) == expected


@pytest.mark.parametrize("value, expected", [(b"\xc3\xbc", "ü"), ("x", "x"), (None, None), (12, "12")])
def test_client_decode(value, expected):
    assert kt.client.decode(value) == expected


def test_client_decode_rejects_invalid_utf8():
    with pytest.raises(UnicodeDecodeError):
        kt.client.decode(b"\xff")


def test_embedded_module_names():
    assert kt.embedded.EmbeddedServer is kt.EmbeddedServer
    assert kt.embedded.EmbeddedTokyoTyrantServer is kt.EmbeddedTokyoTyrantServer


def test_embedded_takes_kt_keywords():
    server = kt.EmbeddedServer(server=None, serializer=kt.KT_JSON, quiet=False, connection_pool=True)
    assert server.serializer is kt.KT_JSON and server.quiet is False and server.connection_pool
    assert "-ls" not in server.command(20000)  # not quiet: the server's normal log level
    assert "-ls" in kt.EmbeddedServer(server=None).command(20000)
    # kt's positional order put the serializer fifth
    legacy = kt.EmbeddedTokyoTyrantServer(None, "127.0.0.1", None, "*", kt.KT_PICKLE)
    assert legacy.serializer is kt.KT_PICKLE and legacy.server_args == []


def test_embedded_client_uses_the_serializer():
    with kt.EmbeddedTokyoTyrantServer(server=None, serializer=kt.KT_JSON) as server:
        assert server.pid is not None
        server.client.set("k", {"a": [1, 2]})
        assert server.client.get("k") == {"a": [1, 2]}
        assert server.client.get_raw("k") == b'{"a":[1,2]}'
    assert server.pid is None


def test_embedded_not_quiet_still_starts():
    with kt.EmbeddedServer(server=None, quiet=False) as server:
        assert server.client.set("k", "v") == 1
        assert server.client.get("k") == "v"
