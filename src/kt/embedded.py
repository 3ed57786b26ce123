"""Run a Kyoto Tycoon or Tokyo Tyrant server in a subprocess, for tests and scripts.

``EmbeddedServer`` / ``EmbeddedTokyoTyrantServer`` start the real ``ktserver`` /
``ttserver`` when ``server`` resolves on PATH (or is a path to an executable), and the
bundled server (``python -m kt.server kt|tt``) otherwise; ``server=None`` always picks the
bundled one.  They bind 127.0.0.1 unless told otherwise (never all interfaces), choose a
free port in 10000..32767 when none is given (the real ktserver refuses ports >= 32768),
and only report success once the server answers a request.

``database`` is one database name (``'*'``: in-memory hash) or, for Kyoto Tycoon, a list of
names (numbered 0.. in order).  ``server_args`` are extra options placed before the
database names (both real servers stop reading options at the first database name).

coleifer/kt 0.9.6's keywords are accepted too: ``serializer`` (used by ``client``),
``quiet`` (True, the default here: the server's output goes to ``log`` with a quiet log
level; False: the server writes to this process's stdout/stderr, as kt's default did) and
``connection_pool`` (accepted for compatibility; this package's clients always pool).
kt put ``serializer`` fifth, before ``server_args``; the seed's order wins, but a serializer
passed fifth is still recognised.

From asyncio: ``async with EmbeddedServer() as server`` (or ``await server.astart()`` /
``await server.astop()``) starts and stops the process in the loop's executor, so the event
loop keeps running meanwhile.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any, List, Optional, Sequence, Union

from kt.errors import KyotoTycoonError
from kt.protocol import http, tt_binary
from kt.serializers import Serializer, resolve_serializer
from kt.transport import Connection

__all__ = ["EmbeddedServer", "EmbeddedTokyoTyrantServer", "EmbeddedServerError"]

PORT_RANGE = (10000, 32767)
START_TIMEOUT = 30.0  # a loaded machine importing the bundled server can be slow
STOP_GRACE = 5.0
_PORT_ATTEMPTS = 8


class EmbeddedServerError(KyotoTycoonError, RuntimeError):
    """The embedded server could not be started (the message carries its output)."""


class _BaseEmbeddedServer:
    """Process lifecycle shared by both servers; subclasses say how to launch and probe."""

    product = ""  # "kt" | "tt": the bundled server's sub-command
    start_timeout = START_TIMEOUT  # seconds run() waits for the first answer
    quiet_args: Sequence[str] = ()  # log level options that keep the log small

    def __init__(
        self,
        server: Optional[str],
        host: str = "",
        port: Optional[int] = None,
        database: Union[str, Sequence[str]] = "*",
        server_args: Optional[Sequence[str]] = None,
        serializer: Any = None,
        quiet: bool = True,
        connection_pool: bool = True,
    ) -> None:
        if isinstance(server_args, Serializer):  # kt 0.9.6 order: (..., database, serializer, server_args)
            server_args, serializer = None, server_args
        if port is not None and (isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536):
            raise ValueError(f"port must be an integer in 1..65535 or None, not {port!r}")
        self.server = server
        self.host = host or "127.0.0.1"
        self.port = port
        self._fixed_port = port is not None
        self.databases = [database] if isinstance(database, str) else list(database)
        if not self.databases or not all(isinstance(d, str) and d for d in self.databases):
            raise ValueError(f"database must be a non-empty name or list of names, not {database!r}")
        self.server_args = [str(a) for a in (server_args or ())]
        self.serializer = resolve_serializer(serializer)
        self.quiet = bool(quiet)
        self.connection_pool = connection_pool
        self.executable = self._resolve(server)
        self._process: Optional[subprocess.Popen] = None
        self._tmpdir: Optional[str] = None
        self._log = None
        self._client: Any = None

    # -- launching --------------------------------------------------------------------

    @staticmethod
    def _resolve(server: Optional[str]) -> Optional[str]:
        """Path of a real server binary, or None for the bundled server."""
        if server is None:
            return None
        if os.sep in server or (os.altsep and os.altsep in server):
            if os.path.isfile(server) and os.access(server, os.X_OK):
                return os.path.abspath(server)
            raise EmbeddedServerError(f"server {server!r} is not an executable file")
        return shutil.which(server)

    @property
    def bundled(self) -> bool:
        return self.executable is None

    def command(self, port: int) -> List[str]:
        """The command line that starts the server on ``port``."""
        head = [self.executable] if self.executable else [sys.executable, "-m", "kt.server", self.product]
        log_args = self.quiet_args if self.quiet else ()
        return [*head, "-host", self.host, "-port", str(port), *log_args, *self.server_args,
                *self.databases]

    def run(self) -> bool:
        """Start the server; True once it answers a request (raises EmbeddedServerError)."""
        if self.running:
            return True
        self._tmpdir = tempfile.mkdtemp(prefix=f"kt-embedded-{self.product}-")
        try:
            attempts = 1 if self._fixed_port else _PORT_ATTEMPTS
            for attempt in range(attempts):
                port = self.port if self._fixed_port else self._free_port()
                if self._start(port, last=attempt == attempts - 1):
                    self.port = port
                    return True
        except BaseException:
            self._cleanup()
            raise
        raise AssertionError("unreachable")  # _start raises on its last attempt

    def _start(self, port: int, last: bool) -> bool:
        """Launch on ``port``; False (retry elsewhere) when the port was taken meanwhile."""
        log_path = os.path.join(self._tmpdir, f"server-{port}.log")
        self._log = open(log_path, "wb")
        env = dict(os.environ)
        if self.bundled:  # make sure the child imports this very kt package
            package_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
            env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
        cmd = self.command(port)
        try:
            out = self._log if self.quiet else None  # not quiet: the server writes to our stdout/stderr
            self._process = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT if self.quiet else None,
                env=env,
            )
        except OSError as exc:
            raise EmbeddedServerError(f"cannot start {cmd[0]!r}: {exc}") from exc
        deadline = time.monotonic() + self.start_timeout
        while True:
            code = self._process.poll()
            if code is not None:
                output = self._log_tail()
                self._reap()
                if not last and _looks_like_port_in_use(output):
                    return False
                raise EmbeddedServerError(
                    f"{' '.join(cmd)} exited with status {code} before answering; output:\n{output}"
                )
            if self._probe(port):
                return True
            if time.monotonic() > deadline:
                output = self._log_tail()
                self._terminate()
                raise EmbeddedServerError(
                    f"{' '.join(cmd)} did not answer on {self.host}:{port} within {self.start_timeout}s; "
                    f"output:\n{output}"
                )
            time.sleep(0.02)

    def _free_port(self) -> int:
        """A port in PORT_RANGE nobody listens on right now."""
        for _ in range(200):
            port = random.randint(*PORT_RANGE)
            with socket.socket() as probe:
                try:
                    probe.bind((self.host, port))
                except OSError:
                    continue
                return port
        raise EmbeddedServerError(f"no free port found in {PORT_RANGE[0]}..{PORT_RANGE[1]}")

    def _probe(self, port: int) -> bool:
        """True when the server on ``port`` answers one request correctly."""
        conn = Connection(self.host, port, timeout=2.0, connect_timeout=0.5)
        try:
            return bool(conn.request(self.probe_request, self.parse_probe_reply))
        except (KyotoTycoonError, OSError):
            return False
        finally:
            conn.close()

    probe_request = b""

    @staticmethod
    def parse_probe_reply(buf, pos=0):  # pragma: no cover - overridden
        raise NotImplementedError

    def _log_tail(self, limit: int = 4000) -> str:
        if self._log is None:
            return ""
        self._log.flush()
        try:
            with open(self._log.name, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - limit))
                return f.read().decode("utf-8", "replace").strip() or "(no output)"
        except OSError:
            return "(log unavailable)"

    # -- stopping ---------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> Optional[int]:
        return self._process.pid if self._process is not None else None

    @property
    def log(self) -> str:
        """The last few KB the server wrote (for failure messages)."""
        return self._log_tail()

    def stop(self) -> bool:
        """Stop the server (SIGTERM, SIGKILL after a grace period); True if it was running."""
        if self._client is not None:
            try:
                self._client.close()
            except Exception:
                pass
            self._client = None
        was_running = self.running
        self._terminate()
        self._cleanup()
        return was_running

    def _terminate(self) -> None:
        proc = self._process
        if proc is None:
            return
        if proc.poll() is None:
            try:
                proc.send_signal(signal.SIGTERM)
                proc.wait(STOP_GRACE)
            except subprocess.TimeoutExpired:
                proc.kill()
            except ProcessLookupError:
                pass
        self._reap()

    def _reap(self) -> None:
        proc, self._process = self._process, None
        if proc is not None:
            try:
                proc.wait(STOP_GRACE)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def _cleanup(self) -> None:
        self._terminate()
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None

    def __enter__(self):
        self.run()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    # asyncio: ``await server.astart()`` / ``await server.astop()``, or ``async with server``.
    # Starting and stopping wait on a process, so they run in the loop's default executor.

    async def astart(self) -> bool:
        """``run()`` without blocking the event loop."""
        return await _in_executor(self.run)

    async def astop(self) -> bool:
        """``stop()`` without blocking the event loop."""
        return await _in_executor(self.stop)

    async def __aenter__(self):
        await self.astart()
        return self

    async def __aexit__(self, *exc_info) -> None:
        await self.astop()

    def __del__(self) -> None:
        try:
            if self._process is not None:
                self.stop()
        except Exception:
            pass

    def __repr__(self) -> str:
        kind = "bundled" if self.bundled else self.executable
        state = f"running on {self.host}:{self.port}" if self.running else "stopped"
        return f"<{type(self).__name__} {kind} {state}>"

    # -- client -----------------------------------------------------------------------

    @property
    def client(self):
        """A client bound to this server (created on first use, closed by ``stop()``)."""
        if not self.running:
            raise EmbeddedServerError("the embedded server is not running; call run() first")
        if self._client is None:
            self._client = self.make_client()
        return self._client

    def make_client(self, **kwargs):  # pragma: no cover - overridden
        raise NotImplementedError


async def _in_executor(func: Any) -> Any:
    """``func()`` in the running loop's default executor.

    asyncio is imported here, not at the top: a coroutine only runs once asyncio is loaded,
    and importing it costs ~45 ms of ``import kt`` for every program that never uses it.
    """
    import asyncio

    return await asyncio.get_running_loop().run_in_executor(None, func)


def _looks_like_port_in_use(output: str) -> bool:
    text = output.lower()
    return any(sign in text for sign in ("address already in use", "eaddrinuse", "bind"))


def _parse_kt_probe(buf, pos=0):
    """``/rpc/void``'s reply read by the HTTP codec: (answered 200, end) | None."""
    parsed = http.parse_response(buf, pos)
    return parsed and (parsed[0].status == 200, parsed[1])


def _parse_tt_probe(buf, pos=0):
    """``rnum``'s reply read by the TT codec: (True, end) | None (any count is an answer)."""
    parsed = tt_binary.parse_rnum(buf, pos)
    return parsed and (True, parsed[1])


class EmbeddedServer(_BaseEmbeddedServer):
    """A Kyoto Tycoon server in a subprocess (real ``ktserver`` if found, else bundled)."""

    product = "kt"
    quiet_args = ("-ls",)
    probe_request = b"GET /rpc/void HTTP/1.1\r\nHost: localhost\r\n\r\n"
    parse_probe_reply = staticmethod(_parse_kt_probe)

    def __init__(
        self,
        server: Optional[str] = "ktserver",
        host: str = "",
        port: Optional[int] = None,
        database: Union[str, Sequence[str]] = "*",
        server_args: Optional[Sequence[str]] = None,
        serializer: Any = None,
        quiet: bool = True,
        connection_pool: bool = True,
    ) -> None:
        super().__init__(server, host, port, database, server_args, serializer, quiet, connection_pool)

    def make_client(self, **kwargs):
        """A new ``KyotoTycoon`` client for this server (``kwargs`` go to its constructor)."""
        from kt.kyototycoon import KyotoTycoon

        kwargs.setdefault("serializer", self.serializer)
        return KyotoTycoon(host=self.host, port=self.port, **kwargs)


class EmbeddedTokyoTyrantServer(_BaseEmbeddedServer):
    """A Tokyo Tyrant server in a subprocess (real ``ttserver`` if found, else bundled)."""

    product = "tt"
    quiet_args = ("-le",)
    probe_request = b"\xc8\x80"
    parse_probe_reply = staticmethod(_parse_tt_probe)

    def __init__(
        self,
        server: Optional[str] = "ttserver",
        host: str = "",
        port: Optional[int] = None,
        database: str = "*",
        server_args: Optional[Sequence[str]] = None,
        serializer: Any = None,
        quiet: bool = True,
        connection_pool: bool = True,
    ) -> None:
        if not isinstance(database, str):
            raise ValueError("a Tokyo Tyrant server serves exactly one database name")
        super().__init__(server, host, port, database, server_args, serializer, quiet, connection_pool)

    def make_client(self, **kwargs):
        """A new ``TokyoTyrant`` client for this server (``kwargs`` go to its constructor)."""
        from kt.tokyotyrant import TokyoTyrant

        kwargs.setdefault("serializer", self.serializer)
        return TokyoTyrant(host=self.host, port=self.port, **kwargs)
