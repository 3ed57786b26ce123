"""Finding a Lua runtime for server-side scripts (ktserver ``-scr``, ttserver ``-ext``)."""

from __future__ import annotations

from typing import Any, Callable

from kt.errors import EngineError


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
