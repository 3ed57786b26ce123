"""What ``kt`` needs from a Kyoto Tycoon server that the public client does not return.

``kt export`` must keep each record's expiry, and ``Cursor.get`` returns ``(key, value)``
only; ``kt ulog`` lists update-log files, which the client has no method for.  Both are plain
TSV-RPC procedures, so this module speaks them on its own socket with the sans-IO codecs of
:mod:`kt.protocol` (no client internals), and pipelines the cursor walk: ``cur_get`` with
``step`` moves the server-side cursor, so ``window`` requests can be in flight at once and
the walk costs one round trip per ``window`` records instead of one per record.
"""

from __future__ import annotations

import socket
from typing import Dict, Iterator, List, Optional, Tuple

from kt.cli.formats import Record
from kt.errors import ProtocolError, ServerConnectionError, ServerError, ServerTimeoutError
from kt.protocol import http, kt_rpc

_NOT_FOUND = 450  # a logical miss: here, the cursor walked off the end


class RpcSocket:
    """One keep-alive HTTP connection for TSV-RPC calls (pipelined when asked)."""

    def __init__(self, host: str, port: int, timeout: Optional[float]) -> None:
        self.address = f"{host or '127.0.0.1'}:{port}"
        self._host = host or "127.0.0.1"
        try:
            self._sock = socket.create_connection((self._host, port), timeout=timeout)
        except socket.timeout:
            raise ServerTimeoutError(f"{self.address}: connect timed out") from None
        except OSError as exc:
            raise ServerConnectionError(f"{self.address}: {exc.strerror or exc}") from None
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._buf = bytearray()
        self._pos = 0

    def request_bytes(self, procedure: str, params: List[Tuple[bytes, bytes]]) -> bytes:
        return kt_rpc.build_rpc_request(procedure, params, self.address)

    def send(self, data: bytes) -> None:
        try:
            self._sock.sendall(data)
        except socket.timeout:
            raise ServerTimeoutError(f"{self.address}: send timed out") from None
        except OSError as exc:
            raise ServerConnectionError(f"{self.address}: {exc.strerror or exc}") from None

    def receive(self) -> Tuple[int, Dict[bytes, bytes]]:
        """The next response: ``(HTTP status, output map)``."""
        while True:
            parsed = http.parse_response(self._buf, self._pos)
            if parsed is not None:
                response, self._pos = parsed
                if self._pos == len(self._buf) or self._pos > 1 << 16:
                    del self._buf[: self._pos]  # parse_response copies the buffer: keep it short
                    self._pos = 0
                return kt_rpc.parse_rpc_response(response)
            try:
                chunk = self._sock.recv(1 << 18)
            except socket.timeout:
                raise ServerTimeoutError(f"{self.address}: no reply within the timeout") from None
            except OSError as exc:
                raise ServerConnectionError(f"{self.address}: {exc.strerror or exc}") from None
            if not chunk:
                raise ServerConnectionError(f"{self.address}: the server closed the connection")
            self._buf += chunk

    def call(self, procedure: str, params: List[Tuple[bytes, bytes]]) -> Tuple[int, Dict[bytes, bytes]]:
        self.send(self.request_bytes(procedure, params))
        return self.receive()

    def close(self) -> None:
        self._sock.close()


def _check(procedure: str, status: int, output: Dict[bytes, bytes]) -> None:
    if status >= 400 and status != _NOT_FOUND:
        raise ServerError(kt_rpc.error_message(output, status), code=status, procedure=procedure)


def walk_records(
    host: str, port: int, db: int, timeout: Optional[float], window: int = 64
) -> Iterator[Record]:
    """Every record of database ``db`` with its expiry, in the database's order.

    Memory stays flat: at most ``window`` replies are buffered.
    """
    rpc = RpcSocket(host, port, timeout)
    cur = [(b"CUR", b"1"), (b"DB", b"%d" % db)]
    try:
        status, output = rpc.call("cur_jump", list(cur))
        _check("cur_jump", status, output)
        if status == _NOT_FOUND:
            return
        step = rpc.request_bytes("cur_get", [(b"step", b""), *cur])
        in_flight = 0
        ended = False
        while True:
            if not ended and in_flight <= window // 2:  # top up in one send, not one per reply
                rpc.send(step * (window - in_flight))
                in_flight = window
            status, output = rpc.receive()
            in_flight -= 1
            _check("cur_get", status, output)
            if status == _NOT_FOUND:
                ended = True
            elif not ended:
                try:
                    xt = output.get(b"xt")
                    yield Record(output[b"key"], output[b"value"], int(xt) if xt else None)
                except (KeyError, ValueError):
                    raise ProtocolError(f"{rpc.address}: cur_get answered without key/value/xt") from None
            if ended and in_flight == 0:
                break
        rpc.call("cur_delete", list(cur))
    finally:
        rpc.close()


def ulog_list(host: str, port: int, timeout: Optional[float]) -> List[Dict[str, str]]:
    """The server's update-log files: ``path``, ``size``, ``ts`` (``ulog_list``)."""
    rpc = RpcSocket(host, port, timeout)
    try:
        status, output = rpc.call("ulog_list", [])
    finally:
        rpc.close()
    if status >= 400:
        raise ServerError(kt_rpc.error_message(output, status), code=status, procedure="ulog_list")
    files = []
    for path, info in output.items():
        size, _, ts = info.partition(b":")
        files.append({"path": path.decode("utf-8", "replace"), "size": size.decode(), "ts": ts.decode()})
    return files
