"""``client.lua.<name>(...)``: call a server-side Lua function as if it were a method.

coleifer/kt exposed this as the ``lua`` property of both clients.  The runner only turns
attribute access into a call of the client's ``_script(name, *args, **kwargs)``, so each
client decides what a script call means (KT: a dict in and out; TT: key and value).
"""

from __future__ import annotations

from typing import Any, Callable


class ScriptRunner:
    """Attribute access returns a function that runs the server-side script of that name."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name.startswith("__"):  # keep copy/pickle/introspection from calling the server
            raise AttributeError(name)

        def run_script(*args: Any, **kwargs: Any) -> Any:
            return self.client._script(name, *args, **kwargs)

        run_script.__name__ = name
        return run_script

    def __repr__(self) -> str:
        return f"<ScriptRunner for {self.client!r}>"


__all__ = ["ScriptRunner"]
