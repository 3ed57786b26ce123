"""``Queue``: a FIFO/LIFO queue kept in a Kyoto Tycoon database by the shipped Lua script.

The server must run ``kt.lua`` (``ktserver -scr $(python -c 'import kt.scripts;
print(kt.scripts.path("kt.lua"))')``) on an ordered database (B+ tree, e.g. ``%`` or a
``.kct`` file): items are records ``<queue>\\t<id>`` whose key order is the queue order.

Item data goes through the client's serializer; the queue name, counts and ids travel as
plain text, so they read the same with every serializer (kt 0.9.6 passed them through the
serializer too, which broke ``KT_PICKLE`` clients).
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, List, Optional, Union

from kt.serializers import encode_key

__all__ = ["Queue"]


class Queue:
    """The queue named ``key`` in database ``db`` (default: the client's default database)."""

    def __init__(self, client: Any, key: Union[str, bytes], db: Optional[int] = None) -> None:
        encode_key(key)  # fail early on a key type the wire cannot carry
        self._client = client
        self._key = key
        self._db = client.default_db if db is None else db
        self._serializer = client.serializer

    def __repr__(self) -> str:
        return f"<Queue {self._key!r} db={self._db} on {self._client!r}>"

    def _lua(self, procedure: str, **args: Any) -> Dict[Any, bytes]:
        args.update(queue=self._key, db=str(self._db))
        text = {name: v if isinstance(v, (str, bytes)) else str(v) for name, v in args.items()}
        return self._client.script(procedure, text, encode_values=False)

    def _items(self, procedure: str, n: int) -> Union[Any, List[Any]]:
        out = self._lua(procedure, n=_count(n))
        decode = self._serializer.decode
        if n == 1:
            return decode(out["0"]) if out else None
        return [decode(out[i]) for i in sorted(out, key=int)]

    def add(self, item: Any) -> int:
        """Append ``item``; returns its id."""
        return int(self._lua("queue_add", data=self._serializer.encode(item))["id"])

    def extend(self, items: Iterable[Any]) -> int:
        """Append every item of ``items`` in one call; returns how many were added."""
        encode = self._serializer.encode
        data = {str(i): encode(item) for i, item in enumerate(items)}
        return int(self._lua("queue_madd", **data)["num"])

    def pop(self, n: int = 1) -> Union[Any, List[Any]]:
        """Remove and return the first item (``None`` if empty), or a list of up to ``n``."""
        return self._items("queue_pop", n)

    def rpop(self, n: int = 1) -> Union[Any, List[Any]]:
        """Like ``pop`` from the back of the queue."""
        return self._items("queue_rpop", n)

    def peek(self, n: int = 1) -> Union[Any, List[Any]]:
        """Like ``pop`` without removing anything."""
        return self._items("queue_peek", n)

    def rpeek(self, n: int = 1) -> Union[Any, List[Any]]:
        """Like ``peek`` from the back of the queue."""
        return self._items("queue_rpeek", n)

    def count(self) -> int:
        """Number of items in the queue."""
        return int(self._lua("queue_size")["num"])

    __len__ = count

    def remove(self, data: Any, n: Optional[int] = None) -> int:
        """Remove up to ``n`` items equal to ``data`` from the front (all when ``n`` is None)."""
        return self._remove("queue_remove", data, n)

    def rremove(self, data: Any, n: Optional[int] = None) -> int:
        """Like ``remove`` from the back of the queue."""
        return self._remove("queue_rremove", data, n)

    def _remove(self, procedure: str, data: Any, n: Optional[int]) -> int:
        limit = -1 if n is None else _count(n)
        return int(self._lua(procedure, data=self._serializer.encode(data), n=limit)["num"])

    def clear(self) -> int:
        """Remove every item (and the id counter); returns how many items were removed."""
        return int(self._lua("queue_clear")["num"])


def _count(n: Any) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer, not {n!r}")
    return n
