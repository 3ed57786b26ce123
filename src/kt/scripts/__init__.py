"""Lua scripts shipped with kt, for ``ktserver -scr`` (``kt.lua``) and ``ttserver -ext`` (``tt.lua``).

They define the server-side procedures that :mod:`kt.queue` and ``client.lua.<name>`` call;
the real servers and the bundled ones both run them.
"""

from __future__ import annotations

import os

__all__ = ["path", "KT_SCRIPT", "TT_SCRIPT"]

_HERE = os.path.dirname(os.path.abspath(__file__))


def path(name: str) -> str:
    """Absolute path of the shipped script ``name`` (``"kt.lua"`` or ``"tt.lua"``)."""
    full = os.path.join(_HERE, name)
    if os.path.basename(name) != name or not name.endswith(".lua") or not os.path.isfile(full):
        raise ValueError(f"no shipped script named {name!r}; there are: kt.lua, tt.lua")
    return full


KT_SCRIPT = os.path.join(_HERE, "kt.lua")
TT_SCRIPT = os.path.join(_HERE, "tt.lua")
