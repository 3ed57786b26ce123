"""kt: a fast, complete Python client for Kyoto Tycoon and Tokyo Tyrant.

This module only re-exports the public names of the API reference (seed-api.rst).
"""

from kt.embedded import EmbeddedServer, EmbeddedTokyoTyrantServer
from kt.errors import (
    KyotoTycoonError,
    ProtocolError,
    ScriptError,
    ServerConnectionError,
    ServerError,
    ServerTimeoutError,
    TokyoTyrantError,
)
from kt.serializers import KT_BINARY, KT_JSON, KT_MSGPACK, KT_NONE, KT_PICKLE, TT_TABLE

__version__ = "0.1.0"

__all__ = [
    "EmbeddedServer",
    "EmbeddedTokyoTyrantServer",
    "KT_BINARY",
    "KT_JSON",
    "KT_MSGPACK",
    "KT_NONE",
    "KT_PICKLE",
    "TT_TABLE",
    "KyotoTycoonError",
    "TokyoTyrantError",
    "ProtocolError",
    "ScriptError",
    "ServerConnectionError",
    "ServerError",
    "ServerTimeoutError",
]
