"""libketama's consistent-hash continuum, so keys land where memcached-style clients put them.

The continuum is built by ``uhashring`` (its ketama ring: for each server, ``40 * N * weight /
total`` MD5 digests of ``"<name>-<i>"``, four 32-bit little-endian points per digest).  Lookup
is done here on the key's raw bytes (``uhashring`` hashes ``str(key)``, which would place a
bytes key by its repr) with libketama's rule: the first point ``>= hash``, wrapping to the
first point.  ``tests/test_hashring.py`` checks the result against libketama's own test vector.
"""

from __future__ import annotations

from bisect import bisect_left
from hashlib import md5
from typing import List, Mapping, Tuple

__all__ = ["KetamaRing", "ketama_hash"]


def ketama_hash(key: bytes) -> int:
    """libketama's ``ketama_hashi``: the first four MD5 bytes, little-endian."""
    return int.from_bytes(md5(key).digest()[:4], "little")


def _uhashring():
    try:
        from uhashring import HashRing
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise ImportError("sharding needs the uhashring package: pip install 'kt-tycoon[sharding]'") from exc
    return HashRing


class KetamaRing:
    """An immutable ketama continuum over named nodes with integer weights."""

    def __init__(self, nodes: Mapping[str, int]) -> None:
        if not nodes:
            raise ValueError("a hash ring needs at least one node")
        for name, weight in nodes.items():
            if not isinstance(name, str) or not name:
                raise TypeError(f"ring node names must be non-empty str, not {name!r}")
            if isinstance(weight, bool) or not isinstance(weight, int) or weight < 1:
                raise ValueError(f"the weight of {name!r} must be a positive int, not {weight!r}")
        self.weights = dict(nodes)
        ring = _uhashring()(nodes=dict(nodes), hash_fn="ketama")
        points = ring.get_points()
        self._points: List[int] = [point for point, _ in points]
        self._names: List[str] = [name for _, name in points]
        missing = set(nodes) - set(self._names)
        if missing:  # a tiny weight next to huge ones gets no point at all in ketama
            raise ValueError(f"nodes {sorted(missing)} get no point on the ring: raise their weight")

    def __len__(self) -> int:
        return len(self._points)

    @property
    def points(self) -> List[Tuple[int, str]]:
        """``(point, node)`` pairs in ring order (libketama's ``ketama_get_continuum``)."""
        return list(zip(self._points, self._names))

    def locate(self, key: bytes) -> Tuple[int, int, str]:
        """``(hash of key, point, node)``: libketama's ``ketama_hashi`` + ``ketama_get_server``."""
        digest = ketama_hash(key)
        index = bisect_left(self._points, digest)
        if index == len(self._points):
            index = 0
        return digest, self._points[index], self._names[index]

    def point_of(self, key: bytes) -> Tuple[int, str]:
        """``(point, node)`` serving ``key``."""
        return self.locate(key)[1:]

    def node_of(self, key: bytes) -> str:
        """The node that owns ``key`` (its raw bytes)."""
        index = bisect_left(self._points, int.from_bytes(md5(key).digest()[:4], "little"))
        return self._names[index if index < len(self._names) else 0]
