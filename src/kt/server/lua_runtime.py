"""Finding a Lua runtime for server-side scripts (ktserver ``-scr``, ttserver ``-ext``)."""

from __future__ import annotations

from typing import Any, Callable

from kt.errors import EngineError

# lupa's bridge module: scripts of the real servers have no such global, and through it
# (``python.builtins.eval``) a script could run arbitrary Python in the server.
_HIDE_BRIDGE = b"python = nil; package.loaded.python = nil"


def load_lua_runtime(option: str) -> Callable[..., Any]:
    """lupa's ``LuaRuntime`` class, Lua 5.1 first (what both real servers embed).

    ``option`` names the command-line option that asked for Lua, for the error message.
    """
    try:
        from lupa import lua51  # type: ignore[attr-defined]

        return lua51.LuaRuntime
    except ImportError:
        pass
    try:
        import lupa

        return lupa.LuaRuntime
    except ImportError as exc:
        raise EngineError(
            f"{option} needs the Python package 'lupa' (pip install 'kt-tycoon[server]')"
        ) from exc


def new_lua_state(runtime_class: Callable[..., Any]) -> Any:
    """A Lua state (byte strings both ways) whose scripts cannot reach Python.

    lupa always installs its ``python`` module; it is removed from the globals and from
    ``package.loaded`` so that scripts see the plain Lua 5.1 environment of the real servers.
    """
    lua = runtime_class(encoding=None, unpack_returned_tuples=False, register_eval=False,
                        register_builtins=False)
    lua.execute(_HIDE_BRIDGE)
    return lua
