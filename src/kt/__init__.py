"""kt: a fast, complete Python client for Kyoto Tycoon and Tokyo Tyrant.

This module only re-exports the public names of the API reference (seed-api.rst).  They are
loaded on first use (PEP 562 ``__getattr__``), so ``import kt`` and the ``kt`` command start
quickly: a script that only needs ``KyotoTycoon`` never pays for asyncio (the embedded
servers), the sharded clients' thread pools or replication.  ``from kt import X`` and
``kt.X`` work as before; only the moment the home module is imported changes.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Dict, List

from kt.errors import (
    ConnectionDroppedError,
    ImproperlyConfigured,
    KyotoTycoonError,
    ProtocolError,
    ScriptError,
    ServerConnectionError,
    ServerError,
    ServerTimeoutError,
    TokyoTyrantError,
)

if TYPE_CHECKING:  # what type checkers and IDEs see; at run time ``__getattr__`` loads these
    from kt.embedded import EmbeddedServer, EmbeddedTokyoTyrantServer
    from kt.kyototycoon import Cursor, KyotoTycoon
    from kt.replication import ReplicationClient, UpdateEntry
    from kt.serializers import KT_BINARY, KT_JSON, KT_MSGPACK, KT_NONE, KT_PICKLE, TT_TABLE
    from kt.sharding import ShardedKyotoTycoon, ShardedTokyoTyrant, UnshardableOperation
    from kt.tokyotyrant import (
        INDEX_NUM,
        INDEX_QGRAM,
        INDEX_STR,
        INDEX_TOKEN,
        OP_FTS_ALL,
        OP_FTS_ANY,
        OP_FTS_EXPRESSION,
        OP_FTS_PHRASE,
        OP_NEGATE,
        OP_NOINDEX,
        OP_NUM_ANYEXACT,
        OP_NUM_BETWEEN,
        OP_NUM_EQ,
        OP_NUM_GE,
        OP_NUM_GT,
        OP_NUM_LE,
        OP_NUM_LT,
        OP_STR_ALL,
        OP_STR_ANY,
        OP_STR_ANYEXACT,
        OP_STR_CONTAINS,
        OP_STR_ENDSWITH,
        OP_STR_EQ,
        OP_STR_REGEX,
        OP_STR_STARTSWITH,
        ORDER_NUM_ASC,
        ORDER_NUM_DESC,
        ORDER_STR_ASC,
        ORDER_STR_DESC,
        QueryBuilder,
        TokyoTyrant,
    )

__version__ = "0.1.0"

__all__ = [
    "KyotoTycoon",
    "Cursor",
    "EmbeddedServer",
    "EmbeddedTokyoTyrantServer",
    "KT_BINARY",
    "KT_JSON",
    "KT_MSGPACK",
    "KT_NONE",
    "KT_PICKLE",
    "TT_TABLE",
    "KyotoTycoonError",
    "ImproperlyConfigured",
    "TokyoTyrantError",
    "ProtocolError",
    "ScriptError",
    "ServerConnectionError",
    "ConnectionDroppedError",
    "ServerError",
    "ServerTimeoutError",
    "TokyoTyrant",
    "QueryBuilder",
    "INDEX_STR",
    "INDEX_NUM",
    "INDEX_TOKEN",
    "INDEX_QGRAM",
    "OP_STR_EQ",
    "OP_STR_CONTAINS",
    "OP_STR_STARTSWITH",
    "OP_STR_ENDSWITH",
    "OP_STR_ALL",
    "OP_STR_ANY",
    "OP_STR_ANYEXACT",
    "OP_STR_REGEX",
    "OP_NUM_EQ",
    "OP_NUM_GT",
    "OP_NUM_GE",
    "OP_NUM_LT",
    "OP_NUM_LE",
    "OP_NUM_BETWEEN",
    "OP_NUM_ANYEXACT",
    "OP_FTS_PHRASE",
    "OP_FTS_ALL",
    "OP_FTS_ANY",
    "OP_FTS_EXPRESSION",
    "OP_NEGATE",
    "OP_NOINDEX",
    "ORDER_STR_ASC",
    "ORDER_STR_DESC",
    "ORDER_NUM_ASC",
    "ORDER_NUM_DESC",
    "ShardedKyotoTycoon",
    "ShardedTokyoTyrant",
    "UnshardableOperation",
    "ReplicationClient",
    "UpdateEntry",
]

# Where each lazily loaded public name lives (the names imported under TYPE_CHECKING above).
_HOMES = {
    "kt.embedded": ("EmbeddedServer", "EmbeddedTokyoTyrantServer"),
    "kt.kyototycoon": ("Cursor", "KyotoTycoon"),
    "kt.replication": ("ReplicationClient", "UpdateEntry"),
    "kt.serializers": ("KT_BINARY", "KT_JSON", "KT_MSGPACK", "KT_NONE", "KT_PICKLE", "TT_TABLE"),
    "kt.sharding": ("ShardedKyotoTycoon", "ShardedTokyoTyrant", "UnshardableOperation"),
    "kt.tokyotyrant": (
        "QueryBuilder",
        "TokyoTyrant",
        *(name for name in __all__ if name.startswith(("INDEX_", "OP_", "ORDER_"))),
    ),
}
_HOME_OF: Dict[str, str] = {name: module for module, names in _HOMES.items() for name in names}

# Submodules that ``import kt`` used to import (so ``kt.tokyotyrant.X`` worked without
# importing it); attribute access still imports them.
_SUBMODULES = frozenset(
    {
        "_native",
        "_speedups",
        "embedded",
        "expiry",
        "failover",
        "hashring",
        "kyototycoon",
        "lua",
        "ops",
        "pooled",
        "protocol",
        "replication",
        "serializers",
        "sharding",
        "tokyotyrant",
        "transport",
    }
)


def __getattr__(name: str) -> Any:
    """Import a public name's home module on first use and keep the name here (PEP 562)."""
    home = _HOME_OF.get(name)
    if home is not None:
        value = getattr(importlib.import_module(home), name)
        globals()[name] = value
        return value
    if name in _SUBMODULES:
        return importlib.import_module(f"kt.{name}")
    raise AttributeError(f"module 'kt' has no attribute {name!r}")


_HELPERS = frozenset({"annotations", "importlib", "TYPE_CHECKING", "Any", "Dict", "List"})


def __dir__() -> List[str]:
    """The public names (loaded or not), the submodules and the dunders; not this module's helpers."""
    names = {name for name in globals() if not name.startswith("_") or name.startswith("__")}
    return sorted((names - _HELPERS) | set(__all__) | _SUBMODULES)
