"""Fixtures that run real server processes on free ports (through kt.embedded).

Bundled servers (``python -m kt.server``) always; the real ``ktserver`` / ``ttserver`` when
the environment variables ``KTSERVER`` / ``TTSERVER`` name their binaries (tests that need
them skip otherwise).  Servers are session-scoped and shared, so tests should use their own
keys (or clear the database they use).

Every fixture yields a :class:`RunningServer`: ``host``, ``port``, ``flavour`` ("bundled" or
"real"), ``databases`` (the names passed to the server), ``embedded`` (the EmbeddedServer)
and ``client(**kwargs)``, a factory for ``KyotoTycoon`` / ``TokyoTyrant`` clients bound to
it.  Clients made by the factory are closed after each test.

| fixture | server | databases |
|---|---|---|
| ``kt_server`` | bundled KT | ``*`` (db 0, cache hash), ``%`` (db 1, cache B+ tree) |
| ``kt_server_file`` | bundled KT | ``<tmp>/test.kch`` |
| ``tt_server_hash`` / ``_btree`` / ``_table`` | bundled TT | ``*`` / ``<tmp>/…tcb`` / ``<tmp>/…tct`` |
| ``real_kt_server`` | ``$KTSERVER`` | as ``kt_server`` |
| ``real_tt_server`` (``_btree``, ``_table``) | ``$TTSERVER`` | as the bundled ones |
| ``kt_servers`` | params ``bundled``, ``real`` | as ``kt_server`` |
| ``tt_servers`` (``_btree``, ``_table``) | params ``bundled``, ``real`` | hash / B+ tree / table |
| ``any_server`` | params kt/tt × bundled/real (``.product`` says which) | as above (TT: hash) |
"""

from __future__ import annotations

import os
from typing import Any, Callable, Dict, List

import pytest

from kt import _native
from kt.embedded import EmbeddedServer, EmbeddedServerError, EmbeddedTokyoTyrantServer


def pytest_report_header(config: pytest.Config) -> str:
    mode = "on" if _native.enabled() else f"off ({_native.PURE_PYTHON_ENV} set)"
    return f"kt compiled speed-ups: {mode}"

# The bundled servers are being written while these fixtures already exist: a server whose
# own modules are still missing makes its tests skip (with the reason) instead of error.
_INCOMPLETE_MARK = "No module named 'kt."

KT_DATABASES = ["*", "%"]
TT_DATABASES = {"hash": "*", "btree": "test.tcb", "table": "test.tct"}


class RunningServer:
    """A started embedded server plus a client factory (what the fixtures yield)."""

    def __init__(self, embedded, flavour: str) -> None:
        self.embedded = embedded
        self.flavour = flavour
        self.host: str = embedded.host
        self.port: int = embedded.port
        self.databases: List[str] = list(embedded.databases)
        self._clients: List[Any] = []
        self.product: str = embedded.product  # "kt" or "tt"

    def client(self, **kwargs: Any) -> Any:
        """A new client bound to this server (closed after the test)."""
        client = self.embedded.make_client(**kwargs)
        self._clients.append(client)
        return client

    def close_clients(self) -> None:
        clients, self._clients = self._clients, []
        for client in clients:
            try:
                client.close()
            except Exception:
                pass

    def __repr__(self) -> str:
        return f"<RunningServer {self.flavour} {self.host}:{self.port} {self.databases}>"


class ServerFarm:
    """Starts each kind of server once per session, on demand, and stops them all at the end."""

    def __init__(self, tmp_dir: str) -> None:
        self.tmp_dir = tmp_dir
        self.running: Dict[str, RunningServer] = {}
        self.failures: Dict[str, BaseException] = {}

    def get(self, key: str, start: Callable[[], RunningServer]) -> RunningServer:
        if key in self.failures:
            raise self.failures[key]
        if key not in self.running:
            try:
                self.running[key] = start()
            except BaseException as exc:
                self.failures[key] = exc
                raise
        return self.running[key]

    def stop_all(self) -> None:
        for server in self.running.values():
            server.close_clients()
            server.embedded.stop()
        self.running.clear()


def _start(cls, flavour: str, **kwargs: Any) -> RunningServer:
    if flavour == "bundled":
        kwargs["server"] = None
    else:
        variable = "KTSERVER" if cls is EmbeddedServer else "TTSERVER"
        binary = os.environ.get(variable)
        if not binary:
            pytest.skip(f"{variable} is not set (the path of a real {variable.lower()} binary)")
        kwargs["server"] = binary
    embedded = cls(**kwargs)
    if flavour == "real" and embedded.bundled:
        raise EmbeddedServerError(f"{kwargs['server']!r} (from the environment) is not an executable on PATH")
    try:
        embedded.run()
    except EmbeddedServerError as exc:
        if flavour == "bundled" and _INCOMPLETE_MARK in str(exc):
            missing = [line for line in str(exc).splitlines() if _INCOMPLETE_MARK in line]
            pytest.skip(f"bundled {cls.product} server not complete yet: {missing[-1].strip()}")
        raise
    return RunningServer(embedded, flavour)


_ACTIVE_FARMS: List[ServerFarm] = []


@pytest.fixture(scope="session")
def server_farm(tmp_path_factory):
    farm = ServerFarm(str(tmp_path_factory.mktemp("servers")))
    _ACTIVE_FARMS.append(farm)
    yield farm
    _ACTIVE_FARMS.remove(farm)
    farm.stop_all()


@pytest.fixture(autouse=True)
def _close_clients_after_test():
    """Clients made through ``RunningServer.client`` live for one test (no piling up of
    idle connections, each a thread in the bundled servers)."""
    yield
    for farm in _ACTIVE_FARMS:
        for server in farm.running.values():
            server.close_clients()


def _kt(farm: ServerFarm, flavour: str, kind: str = "mem") -> RunningServer:
    if kind == "file":
        databases: Any = os.path.join(farm.tmp_dir, f"{flavour}-test.kch")
    else:
        databases = KT_DATABASES
    return farm.get(f"kt-{flavour}-{kind}", lambda: _start(EmbeddedServer, flavour, database=databases))


def _tt(farm: ServerFarm, flavour: str, kind: str) -> RunningServer:
    name = TT_DATABASES[kind]
    database = name if name == "*" else os.path.join(farm.tmp_dir, f"{flavour}-{name}")
    # A replication timestamp file of its own: a test that calls set_master makes ttserver
    # write it, and without -rts that would land in the directory pytest runs in.
    rts = ["-rts", os.path.join(farm.tmp_dir, f"tt-{flavour}-{kind}.rts")]
    return farm.get(
        f"tt-{flavour}-{kind}",
        lambda: _start(EmbeddedTokyoTyrantServer, flavour, database=database, server_args=rts),
    )


# -- bundled ---------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def kt_server(server_farm) -> RunningServer:
    return _kt(server_farm, "bundled")


@pytest.fixture(scope="session")
def kt_server_file(server_farm) -> RunningServer:
    return _kt(server_farm, "bundled", "file")


@pytest.fixture(scope="session")
def tt_server_hash(server_farm) -> RunningServer:
    return _tt(server_farm, "bundled", "hash")


@pytest.fixture(scope="session")
def tt_server_btree(server_farm) -> RunningServer:
    return _tt(server_farm, "bundled", "btree")


@pytest.fixture(scope="session")
def tt_server_table(server_farm) -> RunningServer:
    return _tt(server_farm, "bundled", "table")


# -- real (skip when the environment does not name a binary) -------------------------------


@pytest.fixture(scope="session")
def real_kt_server(server_farm) -> RunningServer:
    return _kt(server_farm, "real")


@pytest.fixture(scope="session")
def real_tt_server(server_farm) -> RunningServer:
    return _tt(server_farm, "real", "hash")


@pytest.fixture(scope="session")
def real_tt_server_btree(server_farm) -> RunningServer:
    return _tt(server_farm, "real", "btree")


@pytest.fixture(scope="session")
def real_tt_server_table(server_farm) -> RunningServer:
    return _tt(server_farm, "real", "table")


# -- both, as parameters ------------------------------------------------------------------


@pytest.fixture(params=["bundled", "real"])
def kt_servers(request, server_farm) -> RunningServer:
    return _kt(server_farm, request.param)


@pytest.fixture(params=["bundled", "real"])
def tt_servers(request, server_farm) -> RunningServer:
    return _tt(server_farm, request.param, "hash")


@pytest.fixture(params=["bundled", "real"])
def tt_servers_btree(request, server_farm) -> RunningServer:
    return _tt(server_farm, request.param, "btree")


@pytest.fixture(params=["bundled", "real"])
def tt_servers_table(request, server_farm) -> RunningServer:
    return _tt(server_farm, request.param, "table")


# -- with the shipped Lua scripts (kt/scripts/kt.lua, tt.lua) ------------------------------


def _kt_lua(farm: ServerFarm, flavour: str) -> RunningServer:
    from kt import scripts

    # db 0 is the B+ tree: scripts use db 0 unless called with db=N (as in coleifer/kt)
    return farm.get(f"kt-{flavour}-lua", lambda: _start(
        EmbeddedServer, flavour, database=["%", "*"], server_args=["-scr", scripts.KT_SCRIPT]))


def _tt_lua(farm: ServerFarm, flavour: str) -> RunningServer:
    from kt import scripts

    database = os.path.join(farm.tmp_dir, f"{flavour}-lua.tcb")
    return farm.get(f"tt-{flavour}-lua", lambda: _start(
        EmbeddedTokyoTyrantServer, flavour, database=database, server_args=["-ext", scripts.TT_SCRIPT]))


@pytest.fixture(params=["bundled", "real"])
def kt_servers_lua(request, server_farm) -> RunningServer:
    """KT (``%`` as db 0, ``*`` as db 1) running ``-scr kt.lua``."""
    return _kt_lua(server_farm, request.param)


@pytest.fixture(params=["bundled", "real"])
def tt_servers_lua(request, server_farm) -> RunningServer:
    """TT on a B+ tree file running ``-ext tt.lua``."""
    return _tt_lua(server_farm, request.param)


@pytest.fixture(
    params=[("kt", "bundled"), ("kt", "real"), ("tt", "bundled"), ("tt", "real")],
    ids=lambda param: "-".join(param),
)
def any_server(request, server_farm) -> RunningServer:
    """Every product and flavour in turn (KT with two databases, TT hash); check ``.product``."""
    product, flavour = request.param
    if product == "kt":
        return _kt(server_farm, flavour)
    return _tt(server_farm, flavour, "hash")
