"""Start the bundled KT server as a real process and replay recorded vector steps against it.

Shared by tests/test_kt_server_vectors.py, tests/test_kt_server.py and bench/bench_kt_server.py.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import List, Optional, Sequence

REPO = Path(__file__).resolve().parents[1]
VECTORS = REPO.parent / "shared" / "vectors"
RECORDED_WORKDIR = "/tmp/vectors-work"
FIXED_DATE = b"Thu, 01 Jan 1970 00:00:00 GMT"
_LISTEN_RE = re.compile(r"listening on (\S+):(\d+)")


def load_vectors(name: str) -> dict:
    with open(VECTORS / name, encoding="utf-8") as fh:
        return json.load(fh)


class ServerProcess:
    """``python -m kt.server kt ...`` on a free port; ``port`` is read from its log."""

    def __init__(self, args: Sequence[str], workdir: Path, *, log_name: str = "server.log"):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.workdir / log_name
        if self.log_path.exists():
            self.log_path.unlink()
        self.args = ["-host", "127.0.0.1", "-port", "0", "-log", str(self.log_path), *args]
        env = dict(os.environ)
        env["PYTHONPATH"] = str(REPO / "src") + os.pathsep + env.get("PYTHONPATH", "")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "kt.server", "kt", *self.args],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=str(self.workdir),
        )
        self.port = self._wait_for_port()

    def _wait_for_port(self, timeout: float = 20.0) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.log_path.exists():
                match = _LISTEN_RE.search(self.log_path.read_text(errors="replace"))
                if match:
                    return int(match.group(2))
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                log = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
                raise RuntimeError(f"server exited with {self.proc.returncode}: {err}\n{log}")
            time.sleep(0.02)
        self.kill()
        raise RuntimeError("server did not report its port")

    def connect(self, timeout: float = 10.0) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def terminate(self, timeout: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc.stderr:
            self.proc.stderr.close()
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        if self.proc.stderr:
            self.proc.stderr.close()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def profile_args(vectors: dict, profile: str, workdir: Path) -> List[str]:
    """The recorded ktserver argv minus host/port/log, with files placed under ``workdir``."""
    argv = list(vectors["server_profiles"][profile]["argv"][1:])
    out: List[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in ("-host", "-port", "-log"):
            i += 2
            continue
        if arg.startswith(RECORDED_WORKDIR):
            arg = str(workdir) + arg[len(RECORDED_WORKDIR):]
        out.append(arg)
        i += 1
    for name, lines in vectors.get("scripts", {}).items():
        (workdir / name).write_text("\n".join(lines) + "\n")
    return out


# ---------------------------------------------------------------------------- reading replies

def recv_exact(sock: socket.socket, n: int, timeout: float = 5.0) -> bytes:
    sock.settimeout(timeout)
    out = bytearray()
    while len(out) < n:
        try:
            chunk = sock.recv(n - len(out))
        except socket.timeout:
            break
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    return bytes(out)


def recv_idle(sock: socket.socket, idle: float) -> tuple:
    """Read until ``idle`` seconds of silence or EOF; returns (bytes, eof)."""
    sock.settimeout(idle)
    out = bytearray()
    while True:
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            return bytes(out), False
        except OSError:
            return bytes(out), True
        if not chunk:
            return bytes(out), True
        out += chunk


def recv_http_response(sock: socket.socket, head: bool = False, timeout: float = 5.0) -> bytes:
    """One HTTP response framed by Content-Length (or none for HEAD)."""
    sock.settimeout(timeout)
    data = bytearray()
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return bytes(data)
        data += chunk
    head_end = data.index(b"\r\n\r\n") + 4
    match = re.search(rb"\r\nContent-Length: (\d+)\r\n", bytes(data[:head_end]))
    length = 0 if head or not match else int(match.group(1))
    while len(data) < head_end + length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return bytes(data)


class ResponseReader:
    """Buffered reader for several (pipelined) HTTP responses on one socket."""

    def __init__(self, sock: socket.socket, timeout: float = 5.0):
        self.sock = sock
        self.buf = bytearray()
        sock.settimeout(timeout)

    def _more(self) -> bool:
        chunk = self.sock.recv(65536)
        self.buf += chunk
        return bool(chunk)

    def http_response(self, head: bool = False) -> bytes:
        while b"\r\n\r\n" not in self.buf:
            if not self._more():
                raise EOFError("connection closed before a complete response")
        head_end = self.buf.index(b"\r\n\r\n") + 4
        match = re.search(rb"\r\nContent-Length: (\d+)\r\n", bytes(self.buf[:head_end]))
        end = head_end + (0 if head or not match else int(match.group(1)))
        while len(self.buf) < end:
            if not self._more():
                raise EOFError("connection closed inside a response body")
        raw = bytes(self.buf[:end])
        del self.buf[:end]
        return raw


def server_closed(sock: socket.socket, wait: float = 1.5) -> bool:
    """True when the server closed the connection (EOF or reset) within ``wait`` seconds."""
    sock.settimeout(wait)
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return True
    except socket.timeout:
        return False
    except OSError:
        return True


def split_http(raw: bytes):
    """(status_line, [(name, value)], body) of one raw response."""
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    headers = []
    for line in lines[1:]:
        name, _, value = line.partition(b": ")
        headers.append((name, value))
    return lines[0], headers, body


def normalize_date(raw: bytes) -> bytes:
    return re.sub(rb"\r\nDate: [^\r]*\r\n", b"\r\nDate: " + FIXED_DATE + b"\r\n", raw)


def wait_until(predicate, timeout: float = 5.0, interval: float = 0.05) -> Optional[bool]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return None
