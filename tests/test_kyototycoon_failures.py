"""KyotoTycoon when things go wrong: a stalled peer, a server restart; and Lua scripts.

These tests start their own servers (bundled, and the real ktserver when KTSERVER names it).
"""

from __future__ import annotations

import os
import socket
import threading
import time

import pytest

from kt import KT_JSON
from kt.embedded import EmbeddedServer
from kt.errors import ScriptError, ServerConnectionError, ServerTimeoutError
from kt.kyototycoon import KyotoTycoon

FLAVOURS = ["bundled", "real"]

LUA = """
kt = __kyototycoon__
db = kt.db
function echo(inmap, outmap)
  for key, value in pairs(inmap) do outmap[key] = value end
  return kt.RVSUCCESS
end
function setget(inmap, outmap)
  if not db:set(inmap.key, inmap.value) then return kt.RVEINTERNAL end
  outmap.value = db:get(inmap.key)
  return kt.RVSUCCESS
end
function logic(inmap, outmap)
  return kt.RVELOGIC
end
"""


def _server_binary(flavour):
    if flavour == "bundled":
        return None
    binary = os.environ.get("KTSERVER")
    if not binary:
        pytest.skip("KTSERVER is not set (the path of a real ktserver binary)")
    return binary


class StallingProxy:
    """Forwards TCP between clients and a server; ``stalled`` drops traffic both ways and
    ``delay`` holds every server reply back that many seconds."""

    def __init__(self, target_port: int):
        self.target_port = target_port
        self.stalled = False
        self.delay = 0.0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._sockets = []
        self._closing = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self._closing:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            self._sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, True), daemon=True).start()

    def _pump(self, source, sink, is_reply):
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                if self.stalled:
                    continue  # dropped: the peer never sees it
                if is_reply and self.delay:
                    time.sleep(self.delay)
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self):
        self._closing = True
        self._listener.close()
        for sock in self._sockets:
            sock.close()


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_stalled_server_times_out_then_the_next_call_is_right(flavour, tmp_path):
    with EmbeddedServer(server=_server_binary(flavour)) as server:
        server.run()
        proxy = StallingProxy(server.port)
        try:
            db = KyotoTycoon(port=proxy.port, timeout=1.0, serializer=KT_JSON)
            db.set_bulk({"a": "value-a", "b": "value-b"})
            assert db.exists("a")

            proxy.stalled = True
            started = time.monotonic()
            with pytest.raises(ServerTimeoutError):
                db.get("a")
            with pytest.raises(ServerTimeoutError):
                db.exists("a")  # the HTTP path times out as well
            assert time.monotonic() - started < 8
            proxy.stalled = False
            assert db.get("a") == "value-a" and db.exists("b")

            # A late reply must never be taken for the answer to the next request.
            proxy.delay = 2.5
            with pytest.raises(ServerTimeoutError):
                db.get("a")
            proxy.delay = 0.0
            assert db.get("b") == "value-b"
            assert db.get_bulk(["a", "b"]) == {"a": "value-a", "b": "value-b"}
            assert db.set("c", [1, 2]) == 1 and db.get("c") == [1, 2]
            db.close()
        finally:
            proxy.close()


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_server_restart_mid_use(flavour, tmp_path):
    binary = _server_binary(flavour)
    path = str(tmp_path / "restart.kch")
    first = EmbeddedServer(server=binary, database=path)
    first.run()
    port = first.port
    db = KyotoTycoon(port=port, timeout=10)
    try:
        db.set_bulk({f"k{i}": f"v{i}" for i in range(20)})
        cursor = db.cursor()
        assert cursor.jump()
        assert first.stop()
        with pytest.raises(ServerConnectionError):
            db.get("k1")
        second = EmbeddedServer(server=binary, port=port, database=path)
        second.run()
        try:
            # Every pooled connection is dead: each call reconnects transparently.
            for i in range(20):
                assert db.get(f"k{i}") == f"v{i}"
            assert db.exists("k3") and db.count() == 20
            with pytest.raises(ServerConnectionError):
                cursor.key()  # its connection (and server-side state) died with the server
            assert cursor.jump() and cursor.key() is not None  # it reconnects afterwards
            cursor.close()
            assert sorted(db.keys()) == sorted(f"k{i}" for i in range(20))
        finally:
            second.stop()
    finally:
        db.close()
        first.stop()


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_lua_scripts(flavour, tmp_path):
    script = tmp_path / "test.lua"
    script.write_text(LUA)
    server = EmbeddedServer(server=_server_binary(flavour), server_args=["-scr", str(script)])
    try:
        server.run()
    except Exception as exc:  # a real ktserver built without Lua
        if flavour == "real":
            pytest.skip(f"this ktserver cannot run Lua scripts: {exc}")
        raise
    try:
        db = server.make_client(serializer=KT_JSON)
        assert db.script("echo", {"a": [1, 2]}, b={"x": None}) == {"a": [1, 2], "b": {"x": None}}
        assert db.script("echo") == {}
        raw = server.make_client()
        assert raw.script("echo", {"k": b"\x00\xff"}, encode_values=False) == {"k": b"\x00\xff"}
        assert raw.script("setget", key="lua-key", value="lua-value") == {"value": "lua-value"}
        assert raw.get("lua-key") == "lua-value"
        with pytest.raises(ScriptError) as info:
            raw.script("logic")
        assert info.value.code == 0xBF
        with pytest.raises(ScriptError):
            raw.script("no_such_function")
        assert raw.script("echo", x="still works") == {"x": "still works"}
        db.close()
        raw.close()
    finally:
        server.stop()
