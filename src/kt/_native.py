"""The compiled speed-ups, when they are built and wanted.

Every module in ``kt._speedups`` has a pure-Python twin that gives the same results; callers
do ``native = load("name")`` once at import and fall back when it answers None.  Setting
``KT_PURE_PYTHON=1`` in the environment turns every speed-up off, which is how the tests run
the pure-Python paths (servers started by tests inherit it).
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType
from typing import Optional

PURE_PYTHON_ENV = "KT_PURE_PYTHON"


def enabled() -> bool:
    """True unless ``KT_PURE_PYTHON`` is set to something other than ``""``/``0``."""
    return os.environ.get(PURE_PYTHON_ENV, "") in ("", "0")


def load(name: str) -> Optional[ModuleType]:
    """``kt._speedups.<name>`` if it is built and speed-ups are enabled, else None."""
    if not enabled():
        return None
    try:
        return importlib.import_module(f"kt._speedups.{name}")
    except ImportError:
        return None
