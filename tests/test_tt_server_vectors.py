"""Replay every recorded ttserver 1.1.41 exchange (tt_binary.json) against the bundled server.

Each scenario gets a fresh server started like the recorded profile (same DB type, ``-thnum 1``,
the recorded Lua script), one TCP connection, and byte-for-byte comparison of every reply;
only the recorded volatile fields, the build fields the vectors README allows (``version``,
``libver``) and the database path (ours lives in tmp_path) may differ.
"""

from __future__ import annotations

import json
import os
import select
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import List, Optional, Tuple

import pytest

REPO = Path(__file__).resolve().parents[1]
VECTORS = REPO.parent / "shared" / "vectors" / "tt_binary.json"
BUILD_FIELDS = {"version", "libver"}

pytestmark = pytest.mark.skipif(not VECTORS.exists(), reason="shared vectors not found")


def load_vectors() -> dict:
    with open(VECTORS, encoding="utf-8") as fh:
        return json.load(fh)


class RunningServer:
    """A bundled ttserver process on a free port (stopped with SIGTERM)."""

    def __init__(self, proc: subprocess.Popen, host: str, port: int, log_path: Path):
        self.proc = proc
        self.host = host
        self.port = port
        self.log_path = log_path

    def connect(self, timeout: float = 5.0) -> socket.socket:
        sock = socket.create_connection((self.host, self.port), timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def stop(self, timeout: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            raise

    def alive(self) -> bool:
        return self.proc.poll() is None


STARTED: List[RunningServer] = []  # every server a test started; see stop_leftovers()


def stop_leftovers() -> None:
    """Terminate servers a failed test left running (called after each test)."""
    while STARTED:
        server = STARTED.pop()
        if server.alive():
            try:
                server.stop()
            except subprocess.TimeoutExpired:
                pass


@pytest.fixture(autouse=True)
def _no_leftover_servers():
    yield
    stop_leftovers()


def start_server(tmp_path: Path, dbname: str, extra: Optional[List[str]] = None,
                 script: Optional[str] = None, thnum: int = 1) -> RunningServer:
    """Start ``python -m kt.server tt`` with ``-port 0`` and read the chosen port."""
    log_path = tmp_path / f"tt-{time.monotonic_ns()}.log"
    argv = [sys.executable, "-m", "kt.server", "tt", "-host", "127.0.0.1", "-port", "0",
            "-thnum", str(thnum), "-log", str(log_path)]
    if script is not None:
        argv += ["-ext", script]
    argv += list(extra or []) + [dbname]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    deadline = time.monotonic() + 30
    line = b""
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.5)
        if ready:
            line = proc.stdout.readline()
            if line.startswith(b"listening on "):
                break
        if proc.poll() is not None:
            break
    if not line.startswith(b"listening on "):
        proc.kill()
        out, err = proc.communicate(timeout=5)
        raise RuntimeError(f"bundled ttserver did not start: {line!r} {out!r} {err!r}")
    host, port = line.decode().split()[-1].rsplit(":", 1)
    server = RunningServer(proc, host, int(port), log_path)
    STARTED.append(server)
    return server


def read_exact(sock: socket.socket, n: int, timeout: float = 10.0) -> bytes:
    sock.settimeout(timeout)
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            break
        data += chunk
    return data


def read_idle(sock: socket.socket, idle: float) -> Tuple[bytes, bool]:
    """Read until ``idle`` seconds of silence or EOF -> (bytes, eof)."""
    sock.settimeout(idle)
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            return data, False
        except ConnectionResetError:
            return data, True
        if not chunk:
            return data, True
        data += chunk


def closed_within(sock: socket.socket, seconds: float) -> bool:
    sock.settimeout(seconds)
    try:
        return sock.recv(1) == b""
    except socket.timeout:
        return False
    except ConnectionResetError:
        return True


def parse_stat(reply: bytes) -> Tuple[int, List[List[str]]]:
    code = reply[0]
    size = int.from_bytes(reply[1:5], "big")
    text = reply[5:5 + size].decode()
    return code, [line.split("\t", 1) for line in text.splitlines()]


def read_reply(sock: socket.socket, step: dict) -> bytes:
    """A ``parsed`` reply: exactly the recorded length, or framed by its header for stat."""
    expected = bytes.fromhex(step["response_hex"])
    command = str(step["request"].get("command", ""))
    if command.endswith("stat") and len(expected) >= 5:
        head = read_exact(sock, 5)
        if len(head) < 5 or head[0] != 0:
            return head
        return head + read_exact(sock, int.from_bytes(head[1:5], "big"))
    return read_exact(sock, len(expected))


def compare(step: dict, got: bytes, db_path: str) -> None:
    expected = bytes.fromhex(step["response_hex"])
    volatile = set(step.get("volatile_fields") or [])
    label = f"step {step['n']} ({step.get('note', '')})"
    if not volatile:
        assert got == expected, f"{label}: got {got!r}, want {expected!r}"
        return
    assert got[:1] == expected[:1], f"{label}: code {got[:1]!r} != {expected[:1]!r}"
    if "stat" in step["response"]:
        _, pairs = parse_stat(got)
        want = step["response"]["stat"]
        assert [p[0] for p in pairs] == [p[0] for p in want], f"{label}: stat fields differ"
        for (name, value), (_, want_value) in zip(pairs, want):
            if f"response.stat.{name}" in volatile or name in BUILD_FIELDS:
                continue
            if name == "path" and want_value.startswith("/tmp/vectors."):
                want_value = db_path
            assert value == want_value, f"{label}: stat {name} = {value!r}, want {want_value!r}"
        return
    for key, want_value in step["response"].items():
        if f"response.{key}" in volatile:
            continue
        assert key in ("code",) or want_value is None, f"{label}: unchecked decoded field {key}"
    assert len(got) == len(expected), f"{label}: reply length {len(got)} != {len(expected)}"


def replay(server: RunningServer, scenario: dict, db_path: str) -> int:
    """Replay one scenario on one connection; returns the number of steps that passed."""
    sock = server.connect()
    passed = 0
    try:
        for step in scenario["steps"]:
            if step.get("sleep_before_s"):
                time.sleep(step["sleep_before_s"])
            request = bytes.fromhex(step["request_hex"])
            if request:
                sock.sendall(request)
            if step.get("shutdown_write_after_send"):
                sock.shutdown(socket.SHUT_WR)
            mode = step["read_mode"]
            if mode.startswith("idle:"):
                got, eof = read_idle(sock, float(mode[5:].rstrip("s")))
                assert got == bytes.fromhex(step["response_hex"]), f"step {step['n']}: got {got!r}"
                assert eof == bool(step.get("server_closed")), f"step {step['n']}: closed={eof}"
            else:
                got = read_reply(sock, step)
                compare(step, got, db_path)
                if step.get("server_closed"):
                    assert closed_within(sock, 1.0), f"step {step['n']}: server did not close"
            passed += 1
    finally:
        sock.close()
    return passed


VECTOR_DATA = load_vectors() if VECTORS.exists() else {"scenarios": [], "server_profiles": {}, "scripts": {}}


def _db_for_profile(profile: dict, tmp_path: Path) -> Tuple[str, str]:
    """Our database name for a recorded profile: same type; files under tmp_path."""
    recorded = profile["argv"][-1]
    if recorded in ("*", "+"):
        return recorded, recorded
    path = str(tmp_path / Path(recorded).name)
    return path, path


@pytest.mark.parametrize("scenario", VECTOR_DATA["scenarios"], ids=lambda s: s["name"])
def test_replay_scenario(scenario, tmp_path):
    os.makedirs("/tmp/vectors-work", exist_ok=True)  # recorded copy requests write there
    profile = VECTOR_DATA["server_profiles"][scenario["server_profile"]]
    script = tmp_path / "tt_ext.lua"
    script.write_text("\n".join(VECTOR_DATA["scripts"]["tt_ext.lua"]) + "\n", encoding="utf-8")
    dbname, db_path = _db_for_profile(profile, tmp_path)
    server = start_server(tmp_path, dbname, script=str(script))
    try:
        passed = replay(server, scenario, db_path)
        assert passed == len(scenario["steps"])
        assert server.alive(), "the server died"
    finally:
        assert server.stop() == 0
