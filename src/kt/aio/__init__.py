"""asyncio clients: ``KyotoTycoon``, ``Cursor`` and ``TokyoTyrant`` with the sync clients'
methods, awaitable, over pipelined connections (:mod:`kt.aio.transport`).

They run the very operations of :mod:`kt.ops` that the sync clients run; only the transport
and the driver (:func:`kt.ops.arun`) are asyncio-specific.
"""

from kt.aio.kyototycoon import Cursor, KyotoTycoon
from kt.aio.sharding import ShardedKyotoTycoon, ShardedTokyoTyrant
from kt.aio.tokyotyrant import TokyoTyrant
from kt.aio.transport import AsyncPool

__all__ = ["AsyncPool", "Cursor", "KyotoTycoon", "ShardedKyotoTycoon", "ShardedTokyoTyrant", "TokyoTyrant"]
