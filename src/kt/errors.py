"""One exception hierarchy for everything kt raises on purpose.

The root keeps the name ``KyotoTycoonError`` for compatibility with older clients; Tokyo
Tyrant errors share it.  Logical outcomes ("no such record", "already exists") are return
values, never exceptions.
"""

from __future__ import annotations

import builtins
from typing import Optional


class KyotoTycoonError(Exception):
    """Root of every error kt raises."""


TokyoTyrantError = KyotoTycoonError


class ServerConnectionError(KyotoTycoonError, builtins.ConnectionError):
    """The server could not be reached, or the connection broke mid-request."""


class ConnectionDroppedError(ServerConnectionError):
    """The peer closed or reset the connection before any byte of the reply arrived.

    When the request was sent and is not safe to repeat, its outcome is unknown: the server
    may or may not have applied it (the message says so).  See docs/reliability.md.
    """


class ServerTimeoutError(ServerConnectionError, builtins.TimeoutError):
    """Connecting or waiting for a reply took longer than the configured timeout."""


class ProtocolError(KyotoTycoonError):
    """The peer sent bytes that do not follow the protocol (truncated, corrupt, unexpected)."""


class ServerError(KyotoTycoonError):
    """The server reported a failure.

    ``code`` is the HTTP status (Kyoto Tycoon RPC/REST) or the reply byte (binary protocols);
    ``message`` is the server's own ERROR text when it sent one.  ``end``: when a reply parser
    raised it for a complete error reply, the offset just past that reply in the parser's
    buffer (a pipelining reader goes on from there); None when unknown.
    """

    def __init__(
        self,
        message: str,
        code: Optional[int] = None,
        procedure: Optional[str] = None,
        end: Optional[int] = None,
    ):
        self.message = message
        self.code = code
        self.procedure = procedure
        self.end = end
        where = f"{procedure}: " if procedure else ""
        status = f" (code {code})" if code is not None else ""
        super().__init__(f"{where}{message}{status}")


class ScriptError(ServerError):
    """A server-side Lua procedure was missing, disabled or failed."""


class ImproperlyConfigured(KyotoTycoonError, TypeError):
    """A client was configured wrongly (unknown serializer, msgpack not installed...)."""


class EngineError(KyotoTycoonError):
    """The bundled server's storage engine (Kyoto/Tokyo Cabinet) reported an error."""


__all__ = [
    "KyotoTycoonError",
    "TokyoTyrantError",
    "ServerConnectionError",
    "ConnectionDroppedError",
    "ServerTimeoutError",
    "ProtocolError",
    "ServerError",
    "ScriptError",
    "EngineError",
    "ImproperlyConfigured",
]
