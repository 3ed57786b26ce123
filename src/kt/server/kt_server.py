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
import socket
import struct
import sys
import threading
import time
from typing import List, Optional, Sequence

from kt.protocol import fast_rpc, kt_rpc
from kt.protocol import http_server as hs
from kt.protocol import kt_binary as kb
from kt.server.common import (
    AGAIN,
    LOG_INFO,
    Connection,
    EventLoopServer,
    HandOver,
    Logger,
    Offload,
    OptionSpec,
    UsageError,
    daemonize,
    ineffective_options,
    kinds_from_options,
    parse_options,
)
from kt.server.engines import kc
from kt.server.engines.kc import KCError
from kt.server.kt_service import KTService

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
_INLINE_RECORDS = 64  # binary bulk requests with more records run in a worker thread
_INLINE_NATIVE_BYTES = 1 << 20  # ... unless a native batch of at most this many bytes
# RPC procedures that can take long (or block): run in a worker thread, not in the event loop
_SLOW_PROCEDURES = frozenset((
    "synchronize", "vacuum", "clear", "play_script", "match_prefix", "match_regex", "match_similar",
    "set_bulk", "remove_bulk", "get_bulk", "ulog_list", "ulog_remove", "tune_replication",
))
_REPLICATION_DUMMY_FREQ = 256  # Slave::DUMMYFREQ: a heartbeat after this many skipped records
_STREAMED = frozenset((kb.MAGIC_SET_BULK, kb.MAGIC_REMOVE_BULK, kb.MAGIC_GET_BULK))
_BULK_HEAD = struct.Struct(">BII")  # magic, flags, rnum
_BULK_BATCH = 1024  # records parsed (in the loop) and applied (in a worker) per step of a bulk request
_HEAD_LINES_PER_STEP = 128  # a longer head is parsed in slices, other connections served between
# RPC bulk procedures with at most this many parameters run in the loop (a worker costs more)
_INLINE_BULK_PARAMS = 64
_BULK_PROCEDURES = frozenset(("set_bulk", "remove_bulk", "get_bulk"))


def _offloaded(procedure: str, params) -> bool:
    """Whether an RPC runs in a worker thread (it may take long or block) or in the loop."""
    if b"WAIT" in params:
        return True
    if procedure in _SLOW_PROCEDURES:
        return procedure not in _BULK_PROCEDURES or len(params) > _INLINE_BULK_PARAMS
    return False


class _BulkStream:
    """A set/remove/get_bulk request being applied as it arrives (kept in ``conn.state``)."""

    __slots__ = ("magic", "flags", "rnum", "left", "hits", "found")

    def __init__(self, magic: int, flags: int, rnum: int):
        self.magic = magic
        self.flags = flags
        self.rnum = rnum
        self.left = rnum
        self.hits = 0
        self.found: List[bytes] = []  # get_bulk: each batch's reply records, encoded


def _content_type(headers: dict) -> Optional[str]:
    value = headers.get(b"content-type")
    return None if value is None else value.decode("latin-1")


def _has_db(service, db_expr: Optional[bytes]) -> bool:
    has_db = getattr(service, "has_db", None)
    if has_db is not None:
        return bool(has_db(db_expr))
    return service._select(db_expr) is not None


class KTServerHandler:
    """ktserver's request handling for :class:`EventLoopServer`: ``open``/``step``/``close``."""

    def __init__(self, service, *, server_name: bytes, logger: Logger):
        self.service = service
        self.server_name = server_name  # b"localhost:PORT" (ktserver's HTTPServer name)
        self.logger = logger
        self.stopping = False
        self.use_fast_rpc = True  # ordinary RPC requests through fast_rpc (False: the general path only)
        # binary bulk batches parsed and applied in C, when built (None: the pure-Python path)
        self._native = kc.bulk_speedups() if isinstance(service, KTService) else None
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

    # ---------------------------------------------------------------- connection steps

    def open(self, conn: Connection) -> None:
        conn.session = self.service.session()

    def close(self, conn: Connection) -> None:
        session, conn.session = conn.session, None
        if session is not None:
            session.close()

    def step(self, conn: Connection, eof: bool):
        """Handle the request at the start of ``conn.buf`` (see ``EventLoopServer``).

        Returns None (need more bytes), ``(reply, keep)``, ``Offload`` (may block: run in a
        worker) or ``HandOver`` (the replication stream).
        """
        if isinstance(conn.state, _BulkStream):  # a bulk request arriving (the buffer may be empty)
            return self._bulk_step(conn, conn.state, eof)
        first = conn.buf[0]
        if first == 0 or first >= 0x80:
            return self._binary(conn, eof)
        return self._http(conn, eof)

    # ---------------------------------------------------------------- HTTP

    def _http(self, conn: Connection, eof: bool):
        parser = conn.state
        if parser is None:  # a new request; kept while it arrives, so no byte is parsed twice
            if self.use_fast_rpc:
                fast = self._fast_rpc(conn)
                if fast is not None:
                    return fast
            parser = conn.state = hs.RequestParser()
        try:
            parsed = parser.parse(conn.buf, 0, eof, _HEAD_LINES_PER_STEP)
        except hs.DropConnection:
            return b"", False
        except hs.HTTPErrorReply as exc:
            return exc.reply, False
        if parsed is None:
            return AGAIN if parser.paused else None
        conn.state = None
        request, end = parsed
        conn.consume(end)
        session = conn.session
        if request.path.startswith(_RPC_PREFIX):
            procedure = kt_rpc.parse_procedure(request.path)
            params = kt_rpc.parse_rpc_params(request.query, request.body, _content_type(request.headers))
            if _offloaded(procedure, params):
                return Offload(lambda: self._rpc_reply(conn, request, procedure, params, session))
            return self._rpc_reply(conn, request, procedure, params, session)
        return self._reply(conn, request, self._rest, request)

    def _fast_rpc(self, conn: Connection):
        """An ordinary ``POST /rpc/NAME`` whose head is a known one and whose body is all there:
        answered without the general parser (``fast_rpc.FastHead``), or None for the general
        path.  The reply, the logging and everything the service sees are the same."""
        buf = conn.buf
        if not buf.startswith(b"POST /rpc/"):
            return None
        got = fast_rpc.find_head(buf)
        if got is None:
            return None
        fh, start = got
        end = start + fh.clen
        if end > len(buf):
            return None
        body = bytes(buf[start:end])
        conn.consume(end)
        procedure = fh.procedure
        params = fh.params(body)
        session = conn.session
        if _offloaded(procedure, params):
            request = fh.request(body)
            return Offload(lambda: self._rpc_reply(conn, request, procedure, params, session))
        try:
            code, output = self.service.rpc(procedure, params, session)
            reply = fast_rpc.rpc_response(code, output, fh.keep)
        except Exception as exc:  # as _reply
            self.logger.error(f"request failed: {fh.request(body)!r}: {type(exc).__name__}: {exc}")
            return hs.build_error(500, "logic error"), False
        if self.logger.kinds & LOG_INFO:
            self.logger.info(f"({conn.peer}): {fh.log_text}: {code}")
        return reply, fh.keep

    def _rpc_reply(self, conn: Connection, request: hs.HTTPRequest, procedure: str, params, session):
        return self._reply(conn, request, self._rpc, procedure, params, session)

    def _reply(self, conn: Connection, request: hs.HTTPRequest, produce, *args):
        try:
            code, headers, body = produce(*args)
        except Exception as exc:  # a bug below must answer like ktserver's "logic error"
            self.logger.error(f"request failed: {request!r}: {type(exc).__name__}: {exc}")
            return hs.build_error(500, "logic error"), False
        keep = request.keep_alive
        if self.logger.kinds & LOG_INFO:  # ktserver's per-request line
            self.logger.info(f"({conn.peer}): {request.method.decode('latin-1')} "
                             f"{request.target.decode('latin-1')} HTTP/1.{request.version}: {code}")
        return hs.build_response(code, body, headers, keep_alive=keep, head=request.kind == hs.M_HEAD), keep

    def _rpc(self, procedure: str, params, session):
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

    def _binary(self, conn: Connection, eof: bool):
        buf = conn.buf
        if conn.state is None and buf[0] in _STREAMED:
            if self._native is not None:  # the commonest requests, whole, in one C call
                try:
                    small = self.service.bin_small(buf, _INLINE_RECORDS)
                except KCError as exc:
                    magic, no_reply = buf[0], buf[4] & kb.FLAG_NO_REPLY
                    conn.consume(exc.end)
                    self.logger.error(f"binary {kb.MAGIC_NAMES[magic]} failed: {exc}")
                    return (b"" if no_reply and magic != kb.MAGIC_GET_BULK else _ERROR_BYTE), False
                if small is not None:
                    conn.consume(small[1])
                    return small[0], True
            if len(buf) < 9:
                return (b"", False) if eof else None  # ktserver closes silently: header cut off
            magic, flags, rnum = _BULK_HEAD.unpack_from(buf, 0)
            conn.consume(9)
            stream = conn.state = _BulkStream(magic, flags, rnum)
            return self._bulk_step(conn, stream, eof)
        if not eof:
            # a large request arrives in many segments: walk only the new record headers
            # (scan_request) and parse once it is complete, instead of re-parsing each time
            decidable, conn.state = kb.scan_request(buf, 0, conn.state)
            if not decidable:
                return None
        conn.state = None
        parsed = kb.parse_request(buf, 0, eof)
        if parsed is None:
            return None
        request, end = parsed
        magic = request.magic
        if not request.known:
            return b"", False
        failure = request.failure
        if failure is None:
            conn.consume(end)
        if magic == kb.MAGIC_PLAY_SCRIPT:
            if failure is not None:
                return b"", False  # ktserver sends nothing for a broken play_script request
            return Offload(lambda: self._bin_play_script(request))
        if failure is not None:
            return b"", False
        return HandOver(lambda c: self._bin_replication(c, request))

    def _bulk_step(self, conn: Connection, stream: _BulkStream, eof: bool):
        """Apply the records of a set/remove/get_bulk that have arrived, as ktserver does
        record by record: memory stays at one batch whatever the announced count.  A small
        request that is all there runs inline; otherwise each batch runs in a worker thread, so
        the event loop serves other connections between batches (and the connection is not
        read meanwhile: the peer is slowed down, not buffered)."""
        want = min(stream.left, _BULK_BATCH)
        if self._native is not None:  # a native batch (kt._speedups.kt_server_bulk)
            records, end, failure = self._native.parse(conn.buf, 0, stream.magic, want)
        else:
            records, end, failure = kb.parse_records(conn.buf, 0, stream.magic, want)
        conn.consume(end)
        stream.left -= len(records)
        if failure is None and len(records) < want:
            if not eof:
                if not records:
                    return None
            else:
                failure = kb.TRUNCATED
        done = failure is not None or stream.left == 0
        if done:
            conn.state = None

        def run():
            return self._bulk_apply(stream, records, failure, done)

        if done and failure is None and stream.rnum <= _INLINE_RECORDS:
            return run()
        if self._native is not None and records.nbytes <= _INLINE_NATIVE_BYTES:
            return run()  # ~0.1 µs a record in C: cheaper than handing it to a worker
        return Offload(run)

    def _bulk_apply(self, stream: _BulkStream, records: list, failure: Optional[str], done: bool):
        """One batch; returns ``(reply, keep)``: nothing until the request is complete, then the
        count (or the hits), or ``0xBF`` + close when it broke off (records before stay applied)."""
        service = self.service
        magic = stream.magic
        native = self._native is not None
        try:
            if magic == kb.MAGIC_SET_BULK:
                stream.hits += (service.bin_set_bulk_batch if native else service.bin_set_bulk)(records)
            elif magic == kb.MAGIC_REMOVE_BULK:
                stream.hits += (service.bin_remove_bulk_batch if native else service.bin_remove_bulk)(records)
            elif failure is None:
                if native and done and not stream.found:  # the whole reply in one go
                    return service.bin_get_bulk_batch(records, True)[1], True
                if native:
                    hits, body = service.bin_get_bulk_batch(records)
                else:
                    found = service.bin_get_bulk(records)
                    hits, body = len(found), kb.encode_get_bulk_records(found)
                stream.hits += hits
                stream.found.append(body)
        except Exception as exc:
            self.logger.error(f"binary {kb.MAGIC_NAMES[magic]} failed: {exc}")
            failure = "database error"
            done = True
        no_reply = magic != kb.MAGIC_GET_BULK and stream.flags & kb.FLAG_NO_REPLY
        if failure is not None:
            return (b"" if no_reply else _ERROR_BYTE), False
        if not done:
            return b"", True
        if no_reply:
            return b"", True
        head = kb.encode_count_reply(magic, stream.hits)
        if magic == kb.MAGIC_GET_BULK:
            return head + b"".join(stream.found), True
        return head, True

    def _bin_play_script(self, request):
        try:
            result = self.service.bin_play_script(request.name, request.records)
        except Exception as exc:
            self.logger.error(f"binary play_script failed: {exc}")
            result = None
        if request.no_reply:
            return b"", True
        if result is None:
            return _ERROR_BYTE, True
        return kb.encode_play_script_reply(result), True

    def _bin_replication(self, conn: Connection, request) -> None:
        """Runs in its own thread with a blocking socket (``HandOver``)."""
        white = bool(request.flags & kb.FLAG_NO_REPLY)  # WHITESID
        reader = self.service.ulog_reader(request.ts, request.sid, white)
        if reader is None:
            self.logger.info("no update log allows no replication")
            conn.send(_ERROR_BYTE)
            return
        try:
            self._stream_replication(conn, reader, request.sid)
        finally:
            reader.close()

    def _stream_replication(self, conn: Connection, reader, sid: int) -> None:
        """ktserver's ``do_bin_replication`` loop: records, heartbeats, NOP + ack when caught up."""
        if not conn.send(kb.REPLICATION_ACK):
            return
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
                            return
                    else:
                        misses += 1
                        if misses >= _REPLICATION_DUMMY_FREQ:
                            if not conn.send(kb.encode_replication_record(ts, b"")):
                                return
                            misses = 0
                    last_ts = max(last_ts, ts)
                    continue
                cc = int(time.time() * 1000) * 1000000
                if cc > 1000000000:
                    cc -= 1000000000
                cc = max(cc, last_ts)
                if not conn.send(kb.encode_replication_nop(cc)):
                    return
                try:
                    if not conn.buf and not conn.fill():
                        return
                except socket.timeout:
                    return
                answer = conn.buf[0]
                conn.consume(1)
                if answer != kb.MAGIC_REPLICATION:
                    return
                time.sleep(0.1)
        finally:
            self.logger.system(f"a slave was disconnected: sid={sid}")


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
    threads = max(1, min(64, _atoix(str(options.get("-th", "16")))))
    server = EventLoopServer(None, host=host, port=port, timeout=tout, logger=logger, workers=threads)
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
