"""``Codec``: how one client turns keys, values and arguments into bytes and back.

Both servers' operations and both drivers (sync and asyncio) share it, so the rules live
once: keys are str (UTF-8) or bytes; values go through the client's serializer; decoded keys
follow ``decode_keys``.  KT's RPC arguments (prefix, regex, script name) must be text or
bytes (:meth:`Codec.text`); TT's misc arguments may also be numbers (:meth:`Codec.arg`).
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from kt.serializers import KT_BINARY, KT_NONE, Serializer, encode_key, key_decoder, resolve_serializer

__all__ = ["Codec", "check_db", "check_int"]


def check_db(db: Any) -> int:
    if isinstance(db, bool) or not isinstance(db, int) or not 0 <= db <= 0xFFFF:
        raise TypeError(f"db must be a database index (int 0..65535), not {db!r}")
    return db


def check_int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an int, not {type(value).__name__}")
    return value


class Codec:
    """A client's encoding settings and the conversions built on them (no I/O)."""

    __slots__ = (
        "serializer",
        "encode_value",
        "decode_value",
        "decode_optional",
        "decode_keys",
        "decode_key",
        "raw_keys",
        "raw_values",
        "bytes_pass_through",
        "default_db",
        "host_header",
    )

    def __init__(
        self,
        serializer: Any = KT_BINARY,
        decode_keys: bool = True,
        default_db: int = 0,
        host_header: str = "",
    ) -> None:
        self.serializer: Serializer = resolve_serializer(serializer)
        self.encode_value = self.serializer.encode
        self.decode_value = decode = self.serializer.decode
        # A plain function, not a method: it is the finishing step of every get.
        self.decode_optional = lambda raw: None if raw is None else decode(raw)
        self.decode_keys = decode_keys
        self.decode_key = key_decoder(decode_keys)
        # Decoders that would only copy bytes are skipped on the bulk paths.
        self.raw_keys = not decode_keys
        self.raw_values = self.serializer is KT_NONE
        # Serializers that store bytes unchanged: encoding skips calling them for bytes.
        self.bytes_pass_through = self.serializer in (KT_BINARY, KT_NONE)
        self.default_db = check_db(default_db)
        self.host_header = host_header  # KT HTTP requests' Host

    # -- keys and arguments -------------------------------------------------------------

    @staticmethod
    def key(key: Any) -> bytes:
        kind = type(key)
        if kind is str:
            return key.encode("utf-8")
        if kind is bytes:
            return key
        return encode_key(key)

    @staticmethod
    def keys(keys: Iterable[Any]) -> List[bytes]:
        """``key`` over many keys, without a call per str/bytes key."""
        return [
            k.encode("utf-8") if type(k) is str else k if type(k) is bytes else encode_key(k) for k in keys
        ]

    @staticmethod
    def text(value: Any, what: str) -> bytes:
        """A name, pattern or path given as str or bytes."""
        if isinstance(value, str):
            return value.encode("utf-8")
        if isinstance(value, (bytes, bytearray, memoryview)):
            return bytes(value)
        raise TypeError(f"{what} must be str or bytes, not {type(value).__name__}")

    @staticmethod
    def arg(value: Any, what: str) -> bytes:
        """Like :meth:`text`, but numbers are accepted too (as their decimal text)."""
        if isinstance(value, int) and not isinstance(value, bool):
            return b"%d" % value
        if isinstance(value, float):
            return repr(value).encode("ascii")
        try:
            return Codec.text(value, what)
        except TypeError:
            raise TypeError(f"{what} must be str, bytes or a number, not {type(value).__name__}") from None

    def db(self, db: Optional[int]) -> int:
        return self.default_db if db is None else check_db(db)

    # -- values -------------------------------------------------------------------------

    def value(self, value: Any) -> bytes:
        if type(value) is bytes and self.bytes_pass_through:
            return value
        return self.encode_value(value)

    def decode_key_list(self, keys: List[bytes]) -> List[Any]:
        """Wire keys -> Python keys; UTF-8 in one pass, per key only when some are not text."""
        if self.raw_keys:
            return keys
        try:
            return [k.decode("utf-8") for k in keys]
        except UnicodeDecodeError:
            decode_key = self.decode_key
            return [decode_key(k) for k in keys]

    def records(self, records: Sequence[Tuple[bytes, bytes]], raw_values: bool) -> Dict[Any, Any]:
        """``{key: value}`` of wire pairs (values left as bytes when ``raw_values``)."""
        if not raw_values and self.serializer is KT_BINARY:
            try:  # text keys and values: decode without a call per record
                if self.raw_keys:
                    return {k: v.decode("utf-8") for k, v in records}
                return {k.decode("utf-8"): v.decode("utf-8") for k, v in records}
            except UnicodeDecodeError:
                pass
        if self.raw_keys:
            if raw_values:
                return dict(records)
            decode = self.decode_value
            return {k: decode(v) for k, v in records}
        if raw_values:
            try:
                return {k.decode("utf-8"): v for k, v in records}
            except UnicodeDecodeError:
                decode_key = self.decode_key
                return {decode_key(k): v for k, v in records}
        decode_key = self.decode_key
        decode = self.decode_value
        return {decode_key(k): decode(v) for k, v in records}

    def text_flags(self, decode_values: bool = True) -> Optional[Tuple[bool, bool]]:
        """``(text_keys, text_values)`` when a bulk reply parser can decode the records itself
        (keys and values either bytes or KT_BINARY's "UTF-8 text, else bytes"); None when the
        values need the serializer (decoded after the reply, by :meth:`records`)."""
        raw_values = self.raw_values or not decode_values
        if raw_values or self.serializer is KT_BINARY:
            return not self.raw_keys, not raw_values
        return None

    def record(self, key: bytes, value: bytes) -> Tuple[Any, Any]:
        return self.decode_key(key), self.decode_value(value)
