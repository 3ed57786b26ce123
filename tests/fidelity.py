"""Helpers for the bundled == real tests: start either server with options, talk raw protocol.

``start_kt``/``start_tt`` run the bundled server (``flavour="bundled"``) or the real binary
named by ``KTSERVER``/``TTSERVER`` (``flavour="real"``; the test skips when it is unset).
``KTWire.rpc`` sends one RPC with base64-encoded columns, so keys and values may hold any byte,
and returns ``(status, output map)`` exactly as the server answered.
"""

from __future__ import annotations

import http.client
import os
import socket
from typing import Dict, Iterator, Optional, Sequence, Tuple

import pytest

from kt.embedded import EmbeddedServer, EmbeddedTokyoTyrantServer
from kt.protocol import kt_rpc
from kt.server.lua_runtime import load_lua_runtime
from kt_server_harness import recv_idle

FLAVOURS = ["bundled", "real"]


def require_lua() -> None:
    """Skip the calling test module when lupa (the bundled servers' Lua) is missing."""
    try:
        load_lua_runtime("-scr")
    except Exception:  # pragma: no cover - lupa missing
        pytest.skip("lupa is not installed", allow_module_level=True)


def _binary(flavour: str, variable: str) -> Optional[str]:
    if flavour == "bundled":
        return None
    binary = os.environ.get(variable)
    if not binary:
        pytest.skip(f"{variable} is not set (the path of a real {variable.lower()} binary)")
    return binary


def start_kt(flavour: str, databases: Sequence[str] = ("*",), args: Sequence[str] = ()) -> EmbeddedServer:
    server = EmbeddedServer(server=_binary(flavour, "KTSERVER"), database=list(databases), server_args=args)
    server.run()
    return server


def start_tt(flavour: str, database: str = "*", args: Sequence[str] = ()) -> EmbeddedTokyoTyrantServer:
    binary = _binary(flavour, "TTSERVER")
    server = EmbeddedTokyoTyrantServer(server=binary, database=database, server_args=args)
    server.run()
    return server


class KTWire:
    """One HTTP connection to a KT server, requests as ktserver's own client sends them."""

    def __init__(self, server: EmbeddedServer) -> None:
        self.server = server
        self.conn = http.client.HTTPConnection(server.host, server.port, timeout=10)

    def close(self) -> None:
        self.conn.close()

    def request(self, method: str, path: str, body: bytes = b"", headers: Optional[dict] = None):
        """``(status, headers, body)`` of one plain HTTP request."""
        self.conn.request(method, path, body=body, headers=headers or {})
        resp = self.conn.getresponse()
        data = resp.read()
        return resp.status, dict(resp.getheaders()), data

    def rpc(self, procedure: str, **params) -> Tuple[int, Dict[bytes, bytes]]:
        pairs = [(k.encode(), v if isinstance(v, bytes) else str(v).encode()) for k, v in params.items()]
        return self.rpc_pairs(procedure, pairs)

    def rpc_pairs(self, procedure: str, pairs) -> Tuple[int, Dict[bytes, bytes]]:
        """``rpc`` with the input as a list of byte pairs (keys that are not identifiers)."""
        body = kt_rpc.encode_tsv(pairs, "B")
        status, headers, data = self.request(
            "POST", f"/rpc/{procedure}", body, {"Content-Type": "text/tab-separated-values; colenc=B"}
        )
        return status, kt_rpc.decode_tsv_response(data, headers.get("Content-Type"))


def tt_exchange(server: EmbeddedTokyoTyrantServer, request: bytes, idle: float = 0.5) -> Tuple[bytes, bool]:
    """Send raw bytes on a new connection; ``(everything answered, connection closed)``."""
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        sock.sendall(request)
        return recv_idle(sock, idle)


def served_with_script(start, flavour: str, directory, name: str, text: str, **kwargs) -> Iterator:
    """``served`` for a server started with a Lua script (``-scr`` for KT, ``-ext`` for TT)."""
    path = directory / name
    path.write_text(text)
    option = "-scr" if start is start_kt else "-ext"
    yield from served(start(flavour, args=[option, str(path)], **kwargs))


def served(server) -> Iterator:
    """Yield a started server and stop it afterwards (for fixtures)."""
    try:
        yield server
    finally:
        server.stop()
