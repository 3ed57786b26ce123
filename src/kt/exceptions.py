"""coleifer/kt's ``kt.exceptions`` names, bound to this package's one hierarchy (:mod:`kt.errors`).

kt 0.9.6 had six flat classes under ``KyotoTycoonError``; here they are the same objects as
:mod:`kt.errors`' classes, so ``except kt.exceptions.ServerError`` catches what the clients
raise.  ``ImproperlyConfigured`` (a bad client configuration such as an unknown serializer
or a missing msgpack) is also a ``TypeError``.
"""

from kt.errors import (
    ImproperlyConfigured,
    KyotoTycoonError,
    ProtocolError,
    ScriptError,
    ServerConnectionError,
    ServerError,
)

__all__ = [
    "KyotoTycoonError",
    "ImproperlyConfigured",
    "ProtocolError",
    "ScriptError",
    "ServerConnectionError",
    "ServerError",
]
