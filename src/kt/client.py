"""coleifer/kt's ``kt.client`` module: the names its users import from there.

Everything here is a binding of this package's own object (``KyotoTycoon is
kt.kyototycoon.KyotoTycoon``); only ``encode``/``decode`` are small functions, because kt
exported its text helpers from this module and its model code calls them.
"""

from __future__ import annotations

from typing import Any, Optional

from kt.kyototycoon import KyotoTycoon
from kt.lua import ScriptRunner
from kt.serializers import (
    KT_BINARY,
    KT_JSON,
    KT_MSGPACK,
    KT_NONE,
    KT_PICKLE,
    TT_TABLE,
)
from kt.serializers import decode_table as table_to_dict
from kt.serializers import encode_table as dict_to_table
from kt.tokyotyrant import QueryBuilder, TokyoTyrant

KT_SERIALIZERS = frozenset((KT_BINARY, KT_JSON, KT_MSGPACK, KT_NONE, KT_PICKLE, TT_TABLE))


def encode(obj: Any) -> Optional[bytes]:
    """``str`` -> UTF-8 bytes; bytes unchanged; ``None`` stays ``None``; anything else via ``str()``."""
    if isinstance(obj, str):
        return obj.encode("utf-8")
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return bytes(obj)
    if obj is None:
        return None
    return str(obj).encode("utf-8")


def decode(obj: Any) -> Optional[str]:
    """UTF-8 bytes -> ``str``; ``str`` unchanged; ``None`` stays ``None``; anything else via ``str()``."""
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return bytes(obj).decode("utf-8")
    if obj is None or isinstance(obj, str):
        return obj
    return str(obj)



__all__ = [
    "KT_BINARY",
    "KT_JSON",
    "KT_MSGPACK",
    "KT_NONE",
    "KT_PICKLE",
    "TT_TABLE",
    "KT_SERIALIZERS",
    "KyotoTycoon",
    "TokyoTyrant",
    "QueryBuilder",
    "ScriptRunner",
    "encode",
    "decode",
    "dict_to_table",
    "table_to_dict",
]
