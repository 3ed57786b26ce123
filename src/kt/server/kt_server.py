"""The bundled Kyoto Tycoon server: HTTP (TSV-RPC + REST) and the binary protocol on one port.

This module is the network half: it reads requests with the sans-IO codecs
(:mod:`kt.protocol.http_server`, :mod:`kt.protocol.kt_binary`, :mod:`kt.protocol.kt_rpc`),
hands them to :class:`kt.server.kt_service.KTService` (storage and semantics) and writes the
replies with exactly ktserver's framing and close rules (protocol.md §A.1-A.7, §B.1, §B.5):

* per request the first byte decides: ``0x00`` or ``>= 0x80`` is binary, anything else HTTP;
* binary errors: set/remove/get_bulk failures answer ``0xBF`` and close (set/remove first apply
  the records that arrived complete, as ktserver does record by record; a truncated request
  waits for more bytes and is answered at EOF), a failed play_script answers ``0xBF`` and keeps
  the connection, unknown magic closes without a reply, replication without ``-ulog`` answers
  ``0xBF`` and closes;
* HTTP: ``/rpc/NAME`` for any method is RPC, every other path is REST; keep-alive per
  HTTP version and ``Connection`` header; requests may be pipelined.

``main(argv)`` is ``python -m kt.server kt [ktserver options] [db ...]``.
"""

from __future__ import annotations

import os
import select
import socket
import sys
import threading
import time
from typing import List, Optional, Sequence

from kt.protocol import http_server as hs
from kt.protocol import kt_binary as kb
from kt.protocol import kt_rpc
from kt.server.common import (
    LOG_INFO,
    Connection,
    Logger,
    OptionSpec,
    ThreadedServer,
    UsageError,
    daemonize,
    ineffective_options,
    kinds_from_options,
    parse_options,
)

__all__ = ["KT_OPTIONS", "KTServerHandler", "main", "VERSION_TEXT"]

VERSION_TEXT = "Kyoto Tycoon (bundled with kt) protocol 0.9.56b"

_V = OptionSpec(True)
_F = OptionSpec(False)
_V_NOOP = OptionSpec(True, effective=False)
_F_NOOP = OptionSpec(False, effective=False)

KT_OPTIONS = {
    "-host": _V, "-port": _V, "-tout": _V, "-th": _V, "-log": _V,
    "-li": _F, "-ls": _F, "-le": _F, "-lz": _F,
    "-ulog": _V, "-ulim": _V, "-uasi": _V_NOOP, "-sid": _V, "-ord": _F,
    "-oat": _F, "-oas": _F, "-onl": _F, "-otl": _F, "-onr": _F,
    "-asi": _V_NOOP, "-ash": _F_NOOP, "-bgs": _V_NOOP, "-bgsi": _V_NOOP, "-bgsc": _V_NOOP,
    "-dmn": _F, "-pid": _V, "-cmd": _V, "-scr": _V,
    "-mhost": _V, "-mport": _V, "-rts": _V, "-riv": _V,
    "-plsv": _V_NOOP, "-plex": _V_NOOP, "-pldb": _V_NOOP,
}

USAGE = """usage: kt-server kt [-host str] [-port num] [-tout num] [-th num] [-log file] [-li|-ls|-le|-lz]
       [-ulog dir] [-ulim num] [-uasi num] [-sid num] [-ord] [-oat|-oas|-onl|-otl|-onr]
       [-asi num] [-ash] [-bgs dir] [-bgsi num] [-bgsc str] [-dmn] [-pid file] [-cmd dir]
       [-scr file] [-mhost str] [-mport num] [-rts file] [-riv num]
       [-plsv file] [-plex str] [-pldb file] [db...]
"""

_ERROR_BYTE = kb.ERROR_REPLY
_RPC_PREFIX = b"/rpc/"
_DRAIN_FROM = 1 << 20  # buffered bytes of an incomplete HTTP request before _drain kicks in
_DRAIN_MAX = 16 << 20
_REPLICATION_DUMMY_FREQ = 256  # Slave::DUMMYFREQ: a heartbeat after this many skipped records


def _content_type(headers: dict) -> Optional[str]:
    value = headers.get(b"content-type")
    return None if value is None else value.decode("latin-1")


def _has_db(service, db_expr: Optional[bytes]) -> bool:
    has_db = getattr(service, "has_db", None)
    if has_db is not None:
        return bool(has_db(db_expr))
    return service._select(db_expr) is not None


class KTServerHandler:
    """Serves one connection at a time per thread; shared by all connection threads."""

    def __init__(self, service, *, server_name: bytes, logger: Logger):
        self.service = service
        self.server_name = server_name  # b"localhost:PORT" (ktserver's HTTPServer name)
        self.logger = logger
        self.stopping = False
        self._idle_wakeup = threading.Event()
        self._idle_thread: Optional[threading.Thread] = None

    def stop(self) -> None:
        """Server shutdown: end replication streams and the idle loop, wake WAITs (503)."""
        self.stopping = True
        self._idle_wakeup.set()
        if self._idle_thread is not None:
            self._idle_thread.join(10)
        self.service.stop()

    def start_idle_loop(self, interval: float = 0.5) -> None:
        """Run ``service.idle()`` (ktserver's process_idle: purge expired records) periodically."""
        idle = getattr(self.service, "idle", None)
        if idle is None:
            return

        def loop() -> None:
            while not self._idle_wakeup.wait(interval):
                try:
                    idle()
                except Exception as exc:
                    self.logger.error(f"idle processing failed: {exc}")

        self._idle_thread = threading.Thread(target=loop, name="idle", daemon=True)
        self._idle_thread.start()

    # ---------------------------------------------------------------- connection loop

    def __call__(self, conn: Connection) -> None:
        session = self.service.session()
        try:
            buf = conn.buf
            while True:
                if not buf and not conn.fill():
                    return
                first = buf[0]
                if first == 0 or first >= 0x80:
                    keep = self._binary(conn, session)
                else:
                    keep = self._http(conn, session)
                if not keep:
                    return
        finally:
            session.close()

    @staticmethod
    def _drain(conn: Connection) -> bool:
        """Read what already waits on the socket before parsing a big request again.

        A large (e.g. chunked) body would otherwise be re-parsed after every 64 KiB segment;
        parsing only once the socket has nothing more ready keeps the work linear and never
        waits for bytes that may not come.  False at EOF.
        """
        start = len(conn.buf)
        while len(conn.buf) - start < _DRAIN_MAX:
            try:
                ready, _, _ = select.select([conn.sock], [], [], 0)
            except (OSError, ValueError):
                return True
            if not ready:
                return True
            try:
                if not conn.fill():
                    return False
            except socket.timeout:
                return True
        return True

    def _fill_or_eof(self, conn: Connection) -> bool:
        """More bytes arrived (True), or the peer is done / idle too long (False)."""
        try:
            return conn.fill()
        except socket.timeout:
            return False

    # ---------------------------------------------------------------- HTTP

    def _http(self, conn: Connection, session) -> bool:
        buf = conn.buf
        eof = False
        while True:
            try:
                parsed = hs.parse_request(buf, 0, eof)
            except hs.DropConnection:
                return False
            except hs.HTTPErrorReply as exc:
                conn.send(exc.reply)
                return False
            if parsed is not None:
                break
            if eof:
                return False
            if not self._fill_or_eof(conn):
                eof = True
            elif len(buf) >= _DRAIN_FROM and not self._drain(conn):
                eof = True
        request, end = parsed
        conn.consume(end)
        try:
            code, headers, body = self._dispatch_http(request, session)
        except Exception as exc:  # a bug below must answer like ktserver's "logic error"
            self.logger.error(f"request failed: {request!r}: {type(exc).__name__}: {exc}")
            conn.send(hs.build_error(500, "logic error"))
            return False
        keep = request.keep_alive
        if self.logger.kinds & LOG_INFO:  # ktserver's per-request line
            self.logger.info(f"({conn.peer}): {request.method.decode('latin-1')} "
                             f"{request.target.decode('latin-1')} HTTP/1.{request.version}: {code}")
        reply = hs.build_response(code, body, headers, keep_alive=keep, head=request.kind == hs.M_HEAD)
        if not conn.send(reply):
            return False
        return keep

    def _dispatch_http(self, request: hs.HTTPRequest, session):
        path = request.path
        if path.startswith(_RPC_PREFIX):
            return self._rpc(request, session)
        return self._rest(request)

    def _rpc(self, request: hs.HTTPRequest, session):
        procedure = kt_rpc.parse_procedure(request.path)
        params = kt_rpc.parse_rpc_params(request.query, request.body, _content_type(request.headers))
        code, output = self.service.rpc(procedure, params, session)
        body, ctype = kt_rpc.encode_rpc_output(output)
        return code, {"content-type": ctype}, body

    def _rest(self, request: hs.HTTPRequest):
        path = request.path
        rest = path[1:] if path[:1] == b"/" else path
        db_expr: Optional[bytes] = None
        slash = rest.find(b"/")
        if slash >= 0:
            db_expr = kt_rpc.url_decode(rest[:slash])
            rest = rest[slash + 1:]
            if rest[:1] == b"/":
                rest = rest[1:]
            if db_expr[:1] == b"\0" or not db_expr:
                db_expr = None
            elif b"\0" in db_expr:
                db_expr = db_expr[:db_expr.index(b"\0")]
        key = kt_rpc.url_decode(rest)
        service = self.service
        kind = request.kind
        if kind == hs.M_GET:
            return service.rest_get(db_expr, key)
        if kind == hs.M_HEAD:
            return service.rest_head(db_expr, key)
        if kind == hs.M_PUT:
            url = b"http://" + self.server_name + request.target
            return service.rest_put(db_expr, key, request.body, request.headers, url)
        if kind == hs.M_DELETE:
            return service.rest_delete(db_expr, key)
        if not _has_db(service, db_expr):
            return 400, {}, b"no such database\n"
        return 501, {}, b""

    # ---------------------------------------------------------------- binary

    def _binary(self, conn: Connection, session) -> bool:
        buf = conn.buf
        eof = False
        state = None
        parsed = kb.parse_request(buf, 0, False)
        while parsed is None:
            # a large request arrives in many segments: walk only the new record headers
            # (scan_request) and parse once it is complete, instead of re-parsing each time
            if not self._fill_or_eof(conn):
                eof = True
            else:
                decidable, state = kb.scan_request(buf, 0, state)
                if not decidable:
                    continue
            parsed = kb.parse_request(buf, 0, eof)
        request, end = parsed
        magic = request.magic
        if not request.known:
            return False
        failure = request.failure
        if failure is None:
            conn.consume(end)
        if magic == kb.MAGIC_GET_BULK:
            return self._bin_get_bulk(conn, request, failure, end)
        if magic == kb.MAGIC_SET_BULK or magic == kb.MAGIC_REMOVE_BULK:
            return self._bin_update(conn, request, failure, end)
        if magic == kb.MAGIC_PLAY_SCRIPT:
            return self._bin_play_script(conn, request, failure)
        return self._bin_replication(conn, request, failure)

    @staticmethod
    def _header_complete(end: int, failure: Optional[str]) -> bool:
        """ktserver closes silently when even the fixed header (flags + rnum) is short."""
        return failure is None or end >= 9 or failure == kb.OVERSIZED

    def _bin_update(self, conn: Connection, request, failure: Optional[str], end: int) -> bool:
        if failure is not None and not self._header_complete(end, failure):
            return False
        service = self.service
        try:
            if request.magic == kb.MAGIC_SET_BULK:
                hits = service.bin_set_bulk(request.records)
                reply = kb.encode_set_bulk_reply(hits)
            else:
                hits = service.bin_remove_bulk(request.records)
                reply = kb.encode_remove_bulk_reply(hits)
            ok = failure is None
        except Exception as exc:
            self.logger.error(f"binary {kb.MAGIC_NAMES[request.magic]} failed: {exc}")
            ok = False
        if request.no_reply:
            return ok
        if not ok:
            conn.send(_ERROR_BYTE)
            return False
        return conn.send(reply)

    def _bin_get_bulk(self, conn: Connection, request, failure: Optional[str], end: int) -> bool:
        if failure is not None:
            if self._header_complete(end, failure):
                conn.send(_ERROR_BYTE)
            return False
        try:
            hits = self.service.bin_get_bulk(request.records)
        except Exception as exc:
            self.logger.error(f"binary get_bulk failed: {exc}")
            conn.send(_ERROR_BYTE)
            return False
        return conn.send(kb.encode_get_bulk_reply(hits))

    def _bin_play_script(self, conn: Connection, request, failure: Optional[str]) -> bool:
        if failure is not None:
            return False  # ktserver sends nothing for a broken play_script request
        try:
            result = self.service.bin_play_script(request.name, request.records)
        except Exception as exc:
            self.logger.error(f"binary play_script failed: {exc}")
            result = None
        if request.no_reply:
            return True
        if result is None:
            return conn.send(_ERROR_BYTE)
        return conn.send(kb.encode_play_script_reply(result))

    def _bin_replication(self, conn: Connection, request, failure: Optional[str]) -> bool:
        if failure is not None:
            return False
        white = bool(request.flags & kb.FLAG_NO_REPLY)  # WHITESID
        reader = self.service.ulog_reader(request.ts, request.sid, white)
        if reader is None:
            self.logger.info("no update log allows no replication")
            conn.send(_ERROR_BYTE)
            return False
        try:
            return self._stream_replication(conn, reader, request.sid)
        finally:
            reader.close()

    def _stream_replication(self, conn: Connection, reader, sid: int) -> bool:
        """ktserver's ``do_bin_replication`` loop: records, heartbeats, NOP + ack when caught up."""
        if not conn.send(kb.REPLICATION_ACK):
            return False
        self.logger.system(f"a slave was connected: sid={sid}")
        last_ts = 0
        misses = 0
        try:
            while not self.stopping:
                item = reader.read()
                if item is not None:
                    ts, message = item  # message None: filtered out by the slave's sid
                    if message is not None:
                        misses = 0
                        if not conn.send(kb.encode_replication_record(ts, message)):
                            return False
                    else:
                        misses += 1
                        if misses >= _REPLICATION_DUMMY_FREQ:
                            if not conn.send(kb.encode_replication_record(ts, b"")):
                                return False
                            misses = 0
                    last_ts = max(last_ts, ts)
                    continue
                cc = int(time.time() * 1000) * 1000000
                if cc > 1000000000:
                    cc -= 1000000000
                cc = max(cc, last_ts)
                if not conn.send(kb.encode_replication_nop(cc)):
                    return False
                if not conn.buf and not self._fill_or_eof(conn):
                    return False
                answer = conn.buf[0]
                conn.consume(1)
                if answer != kb.MAGIC_REPLICATION:
                    return False
                time.sleep(0.1)
        finally:
            self.logger.system(f"a slave was disconnected: sid={sid}")
        return False


# -------------------------------------------------------------------- command line

def _atoix(text: str) -> int:
    """``kc::atoix``: an integer with an optional k/m/g/t/p/e suffix (binary multiples)."""
    text = text.strip()
    mult = 1
    if text and text[-1].lower() in "kmgtpe":
        mult = 1 << (10 * ("kmgtpe".index(text[-1].lower()) + 1))
        text = text[:-1]
    return int(hs.kc_atoi(text.encode()) * mult)


def _atof(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return float(hs.kc_atoi(text.encode()))


_DAEMON_PATH_OPTIONS = ("-log", "-ulog", "-bgs", "-pid", "-cmd", "-scr", "-rts", "-plsv", "-pldb")


def _absolute_db_spec(spec: str) -> str:
    """A file database path made absolute (the daemon changes its directory to "/")."""
    path, sep, params = spec.partition("#")
    if path in ("", ":", "*", "%", "-", "+") or os.path.isabs(path):
        return spec
    return os.path.abspath(path) + sep + params


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the server; ``argv`` excludes the program name (and the ``kt`` selector)."""
    args: List[str] = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["--version"]:
        print(VERSION_TEXT)
        return 0
    try:
        options, db_specs = parse_options(args, KT_OPTIONS, stop_at_positional=True)
    except UsageError as exc:
        sys.stderr.write(f"kt-server kt: {exc}\n{USAGE}")
        return 1
    logger = Logger(options.get("-log"), kinds_from_options(options))
    for name in ineffective_options(options, KT_OPTIONS):
        logger.system(f"warning: option {name} is accepted but has no effect in this server")
    host = str(options.get("-host", "127.0.0.1"))
    port = _atoix(str(options.get("-port", "1978")))
    if not 0 <= port < 65536:
        sys.stderr.write(f"kt-server kt: invalid port: {options.get('-port')}\n{USAGE}")
        return 1
    tout = _atof(str(options.get("-tout", "30")))
    sid = _atoix(str(options.get("-sid", "0")))
    ulog_dir = options.get("-ulog")
    script_path = options.get("-scr")
    if script_path and not os.path.isfile(str(script_path)):
        logger.error(f"{script_path}: no such script file")
        return 1
    if not db_specs:
        db_specs = [":"]
    if options.get("-mhost") and not options.get("-rts"):
        sys.stderr.write(f"kt-server kt: -mhost needs -rts\n{USAGE}")
        return 1
    if options.get("-dmn"):
        relative = [name for name in _DAEMON_PATH_OPTIONS
                    if options.get(name) and not os.path.isabs(str(options[name]))]
        if relative:
            sys.stderr.write(f"kt-server kt: {options[relative[0]]}: only absolute path is supported "
                             "in the daemon mode\n")
            return 1
        db_specs = [_absolute_db_spec(spec) for spec in db_specs]
        daemonize()
        logger = Logger(options.get("-log"), kinds_from_options(options))  # reopened after the fork

    from kt.server.engines import kc
    from kt.server.kt_service import KTService

    open_flags = 0
    for name, flag in (("-oat", kc.OAUTOTRAN), ("-oas", kc.OAUTOSYNC), ("-onl", kc.ONOLOCK),
                       ("-otl", kc.OTRYLOCK), ("-onr", kc.ONOREPAIR)):
        if options.get(name):
            open_flags |= flag

    logger.system(f"starting the server: expr={host}:{port}")
    try:
        service = KTService(
            db_specs,
            script_path=script_path,
            ulog_dir=ulog_dir,
            sid=sid,
            readonly=bool(options.get("-ord")),
            logger=logger,
            cmd_dir=options.get("-cmd", "."),
            ulog_limit=_atoix(str(options.get("-ulim", "0"))),
            thread_count=max(1, min(64, _atoix(str(options.get("-th", "16"))))),
            rts_path=options.get("-rts"),
            open_flags=open_flags,
        )
        if options.get("-mhost"):
            service.start_replication(str(options["-mhost"]), _atoix(str(options.get("-mport", "1978"))),
                                      _atof(str(options.get("-riv", "0.04"))))
    except Exception as exc:
        logger.error(f"opening a database failed: {exc}")
        return 1
    server = ThreadedServer(lambda conn: None, host=host, port=port, timeout=tout, logger=logger)
    try:
        bound_host, bound_port = server.bind()
    except OSError as exc:
        logger.error(f"socket error: expr={host}:{port} msg={exc}")
        service.close()
        return 1
    server_name = b"localhost" if bound_port == 80 else b"localhost:%d" % bound_port
    handler = KTServerHandler(service, server_name=server_name, logger=logger)
    server.handler = handler
    service.connection_count = lambda: server.connection_count
    handler.start_idle_loop()
    status = server.run(pid_file=options.get("-pid"), on_stop=handler.stop, on_close=service.close)
    logger.close()
    return status


if __name__ == "__main__":
    sys.exit(main())
