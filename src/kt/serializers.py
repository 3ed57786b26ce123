"""Value and key encodings shared by both clients.

A serializer is a pair of functions: ``encode(value) -> bytes`` for what goes on the wire and
``decode(bytes) -> value`` for what comes back.  The seed's constants are ``Serializer``
objects; any ``(encode, decode)`` pair of callables is accepted wherever a serializer is.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Dict, NamedTuple, Tuple, Union

from kt.errors import ImproperlyConfigured

Encoder = Callable[[Any], bytes]
Decoder = Callable[[bytes], Any]


class Serializer(NamedTuple):
    """A named pair of value codecs."""

    name: str
    encode: Encoder
    decode: Decoder

    def __repr__(self) -> str:
        return f"<Serializer {self.name}>"


SerializerLike = Union[Serializer, Tuple[Encoder, Decoder]]

_BYTES_LIKE = (bytes, bytearray, memoryview)


def _as_bytes(value: Any, what: str = "value") -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    raise TypeError(f"{what} must be bytes with serializer KT_NONE, not {type(value).__name__}")


def _binary_encode(value: Any) -> bytes:
    # str is stored as UTF-8; bytes pass through; numbers are stored as their decimal text.
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, _BYTES_LIKE):
        return bytes(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value).encode("ascii")
    raise TypeError(
        f"KT_BINARY stores str, bytes, int or float values, not {type(value).__name__}; "
        "choose KT_JSON, KT_MSGPACK or KT_PICKLE for other objects"
    )


def _binary_decode(data: bytes) -> Union[str, bytes]:
    # Values written by other programs need not be text: give them back as bytes, never raise.
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return bytes(data)


def _json_encode(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _json_decode(data: bytes) -> Any:
    return json.loads(bytes(data).decode("utf-8"))


def _load_msgpack() -> Any:
    try:
        import msgpack  # type: ignore[import-not-found]
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError(
            "KT_MSGPACK needs the msgpack package: pip install 'kt-tycoon[msgpack]'"
        ) from None
    return msgpack


def _msgpack_encode(value: Any) -> bytes:
    return _load_msgpack().packb(value, use_bin_type=True)


def _msgpack_decode(data: bytes) -> Any:
    return _load_msgpack().unpackb(data, raw=False, strict_map_key=False)


# pickle is imported on use, like msgpack: few programs use KT_PICKLE, and every ``kt``
# command would otherwise pay for loading it.


def _pickle_encode(value: Any) -> bytes:
    import pickle

    return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)


def _pickle_decode(data: bytes) -> Any:
    import pickle

    return pickle.loads(data)


def _none_decode(data: bytes) -> bytes:
    return bytes(data)


def _table_field(value: Any, what: str) -> bytes:
    if isinstance(value, str):
        data = value.encode("utf-8")
    elif isinstance(value, _BYTES_LIKE):
        data = bytes(value)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        data = str(value).encode("ascii")
    else:
        raise TypeError(f"TT_TABLE {what} must be str or bytes, not {type(value).__name__}")
    if b"\x00" in data:
        raise ValueError(f"TT_TABLE {what} {data!r} contains a NUL byte, which the table format cannot hold")
    return data


def encode_table(columns: Dict[Any, Any]) -> bytes:
    """Encode a column map as Tokyo Cabinet's ``col\\0val\\0col\\0val`` string."""
    if not isinstance(columns, dict):
        raise TypeError(f"TT_TABLE values are dicts of column -> value, not {type(columns).__name__}")
    parts = []
    for name, value in columns.items():
        column = _table_field(name, "column name")
        if not column:
            raise ValueError("TT_TABLE column names must not be empty (Tokyo Cabinet rejects them)")
        parts.append(column)
        parts.append(_table_field(value, f"value of column {column!r}"))
    return b"\x00".join(parts)


def decode_table(data: bytes) -> Dict[Union[str, bytes], Union[str, bytes]]:
    """Decode ``col\\0val\\0...`` into a dict; text that is not UTF-8 stays bytes."""
    if not data:
        return {}
    fields = bytes(data).split(b"\x00")
    if len(fields) % 2:
        # A trailing odd field is what Tokyo Cabinet itself ignores.
        fields.pop()
    it = iter(fields)
    return {_binary_decode(name): _binary_decode(value) for name, value in zip(it, it)}


KT_BINARY = Serializer("KT_BINARY", _binary_encode, _binary_decode)
KT_JSON = Serializer("KT_JSON", _json_encode, _json_decode)
KT_MSGPACK = Serializer("KT_MSGPACK", _msgpack_encode, _msgpack_decode)
KT_NONE = Serializer("KT_NONE", _as_bytes, _none_decode)
KT_PICKLE = Serializer("KT_PICKLE", _pickle_encode, _pickle_decode)
TT_TABLE = Serializer("TT_TABLE", encode_table, decode_table)


# coleifer/kt's serializer constants were these strings; code that spelled them out keeps working.
_BY_KT_NAME = {
    "binary": KT_BINARY,
    "json": KT_JSON,
    "msgpack": KT_MSGPACK,
    "none": KT_NONE,
    "pickle": KT_PICKLE,
    "table": TT_TABLE,
}


def resolve_serializer(serializer: Any) -> Serializer:
    """Turn a seed constant or an ``(encode, decode)`` pair into a ``Serializer``.

    Fails early (at client construction) for unknown values and for KT_MSGPACK without msgpack.
    """
    if serializer is None:
        return KT_BINARY
    if isinstance(serializer, str) and serializer in _BY_KT_NAME:
        serializer = _BY_KT_NAME[serializer]
    if isinstance(serializer, Serializer):
        if serializer is KT_MSGPACK:
            _load_msgpack()
        return serializer
    if isinstance(serializer, tuple) and len(serializer) == 2 and all(map(callable, serializer)):
        return Serializer("custom", serializer[0], serializer[1])
    raise ImproperlyConfigured(
        "serializer must be KT_BINARY, KT_JSON, KT_MSGPACK, KT_NONE, KT_PICKLE, TT_TABLE "
        f"or an (encode, decode) pair of callables, not {serializer!r}"
    )


def encode_key(key: Any) -> bytes:
    """Keys are bytes on the wire: str is encoded as UTF-8, bytes pass through."""
    if isinstance(key, str):
        return key.encode("utf-8")
    if isinstance(key, _BYTES_LIKE):
        return bytes(key)
    raise TypeError(f"keys must be str or bytes, not {type(key).__name__}")


def key_decoder(decode_keys: bool) -> Callable[[bytes], Union[str, bytes]]:
    """The function that turns wire keys back into Python keys for a client."""
    return _binary_decode if decode_keys else _none_decode


__all__ = [
    "Serializer",
    "KT_BINARY",
    "KT_JSON",
    "KT_MSGPACK",
    "KT_NONE",
    "KT_PICKLE",
    "TT_TABLE",
    "resolve_serializer",
    "encode_key",
    "key_decoder",
    "encode_table",
    "decode_table",
]
