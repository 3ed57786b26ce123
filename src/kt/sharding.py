"""Many servers as one: ketama sharding over the clients, with primary/replica failover.

``ShardedKyotoTycoon`` and ``ShardedTokyoTyrant`` take a list of shards.  A shard is one
server (``"host:port"`` or ``(host, port)``) or a primary and its replicas
(``("a:1978", "b:1978")``, typically a dual-master pair replicating through the update log).
Keys are placed on shards by a libketama-compatible ring (:mod:`kt.hashring`) over the
primaries' ``"host:port"`` names, so memcached-style clients in other languages agree.

* Single-key operations have the single-server client's signature and run on the key's shard.
* Bulk operations split the keys per shard, run the parts in parallel (a thread pool) and
  merge the results.  If a shard fails the error is raised after every part has finished;
  the other shards' parts have been applied.
* Whole-database operations run on every shard in parallel.  Lists are merged shard by shard
  in the order the shards were given (each in its server's own order); ``max_keys`` limits
  every shard's part and then the merged list.  Counts and sizes are summed, booleans
  and-ed, ``status()``/``report()`` come back as ``{shard name: dict}``.
* Cursors are per shard: ``cursors(db)`` gives ``{shard name: Cursor}``; ``keys()`` /
  ``items()`` / ``values()`` walk the shards one after the other.
* Operations that have no sharded meaning raise :class:`UnshardableOperation` naming the way
  to run them on one server (``client_for(key)``, ``clients()``).

Failover (:mod:`kt.failover`): a shard's calls go to its primary until it fails, then to a
replica, and back once the primary has caught up; docs/sharding.md says what a write during
failover means with the servers' asynchronous replication.
"""

from __future__ import annotations

import functools
import threading
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from typing import Any, Callable, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

from kt.errors import KyotoTycoonError
from kt.failover import Address, HealthCheck, KTCatchUpCheck, Shard, TTCatchUpCheck, shard_addresses
from kt.hashring import KetamaRing
from kt.kyototycoon import Cursor, KyotoTycoon
from kt.serializers import encode_key
from kt.tokyotyrant import TokyoTyrant

__all__ = ["ShardedKyotoTycoon", "ShardedTokyoTyrant", "UnshardableOperation"]

ShardSpec = Union[Address, Sequence[Address]]


class UnshardableOperation(KyotoTycoonError, NotImplementedError):
    """The operation has no meaning across shards; run it on one server's client."""


def _key_bytes(key: Any) -> bytes:
    return key.encode("utf-8") if type(key) is str else encode_key(key)


def _arg_bytes(value: Any) -> bytes:
    """How the TT client sends a misc argument (str, bytes or number)."""
    if isinstance(value, (str, bytes, bytearray, memoryview)):
        return encode_key(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return b"%d" % value
    return repr(value).encode("ascii")


class _Sharded:
    """Ring, shards, thread pool and the generic single-key / bulk / fan-out machinery."""

    _client_class: Any = None
    _health_check_factory: Callable[[], HealthCheck]  # one default check per shard (it may keep state)

    def __init__(
        self,
        servers: Union[Sequence[ShardSpec], Mapping[Any, int]],
        weights: Optional[Mapping[str, int]] = None,
        failover_after: int = 1,
        recheck_interval: float = 1.0,
        health_check: Optional[HealthCheck] = None,
        max_workers: Optional[int] = None,
        **client_kwargs: Any,
    ) -> None:
        if isinstance(failover_after, bool) or not isinstance(failover_after, int) or failover_after < 1:
            raise ValueError(f"failover_after must be a positive int, not {failover_after!r}")
        if not isinstance(recheck_interval, (int, float)) or recheck_interval < 0:
            raise ValueError(f"recheck_interval must be >= 0 seconds, not {recheck_interval!r}")
        if isinstance(servers, Mapping):
            weights = {
                **{self._name(shard_addresses(s)[0]): w for s, w in servers.items()},
                **(weights or {}),
            }
            servers = list(servers)
        if isinstance(servers, (str, bytes)) or not servers:
            raise ValueError("servers must be a non-empty list of shards")
        self.shards: List[Shard] = []
        self._by_name: Dict[str, Shard] = {}
        for spec in servers:
            addresses = shard_addresses(spec)
            name = self._name(addresses[0])
            if name in self._by_name:
                raise ValueError(f"shard {name} is listed twice")
            clients = [self._client_class(host=h, port=p, **client_kwargs) for h, p in addresses]
            check = health_check or self._health_check_factory()
            shard = Shard(name, clients, failover_after, recheck_interval, check)
            self.shards.append(shard)
            self._by_name[name] = shard
        weights = dict(weights or {})
        unknown = set(weights) - set(self._by_name)
        if unknown:
            raise ValueError(
                f"weights name unknown shards {sorted(unknown)}; shards are {list(self._by_name)}"
            )
        self.ring = KetamaRing({name: weights.get(name, 1) for name in self._by_name})
        self._single = self.shards[0] if len(self.shards) == 1 else None  # no hashing needed
        self._max_workers = max_workers or len(self.shards)
        self._pool: Optional[ThreadPoolExecutor] = None
        self._pool_lock = threading.Lock()

    @staticmethod
    def _name(address: Tuple[str, int]) -> str:
        return f"{address[0]}:{address[1]}"

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {[s.name for s in self.shards]}>"

    # -- placement ------------------------------------------------------------------------

    def shard_for(self, key: Any) -> Shard:
        """The shard that owns ``key`` (str is placed by its UTF-8 bytes)."""
        if self._single is not None:
            _key_bytes(key)  # the same TypeError for a bad key as with many shards
            return self._single
        return self._by_name[self.ring.node_of(_key_bytes(key))]

    def client_for(self, key: Any) -> Any:
        """The client of the server that serves ``key`` right now."""
        return self.shard_for(key).active

    def clients(self) -> Dict[str, Any]:
        """``{shard name: the client calls go to now}``."""
        return {shard.name: shard.active for shard in self.shards}

    def _split(self, keys: Iterable[Any]) -> Dict[Shard, List[Any]]:
        if self._single is not None:
            return {self._single: list(keys)}  # the client checks the keys
        groups: Dict[Shard, List[Any]] = {}
        node_of, by_name = self.ring.node_of, self._by_name
        for key in keys:
            shard = by_name[node_of(_key_bytes(key))]
            groups.setdefault(shard, []).append(key)
        return groups

    # -- running --------------------------------------------------------------------------

    def _executor(self) -> ThreadPoolExecutor:
        if self._pool is None:
            with self._pool_lock:
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(self._max_workers, thread_name_prefix="kt-shard")
        return self._pool

    def _run_each(self, calls: List[Tuple[Shard, Callable[[Any], Any]]], retry_safe: bool) -> List[Any]:
        """Run ``fn(client)`` on each shard (in parallel when more than one); results in order."""
        if len(calls) == 1:
            shard, fn = calls[0]
            return [shard.call(fn, retry_safe)]
        futures = [self._executor().submit(shard.call, fn, retry_safe) for shard, fn in calls]
        wait_futures(futures)
        return [future.result() for future in futures]

    def _fan_out(self, name: str, *args: Any, retry_safe: bool = True, **kwargs: Any) -> List[Any]:
        """``client.name(*args, **kwargs)`` on every shard, results in shard order."""
        return self._on_every_shard(lambda c: getattr(c, name)(*args, **kwargs), retry_safe)

    def _on_every_shard(self, fn: Callable[[Any], Any], retry_safe: bool = True) -> List[Any]:
        return self._run_each([(shard, fn) for shard in self.shards], retry_safe)

    def _per_shard(self, name: str, *args: Any, **kwargs: Any) -> Dict[str, Any]:
        return dict(zip([s.name for s in self.shards], self._fan_out(name, *args, **kwargs)))

    def _merge_lists(self, name: str, max_keys: Optional[int], *args: Any, **kwargs: Any) -> list:
        merged: list = []
        for part in self._fan_out(name, *args, **kwargs):
            merged.extend(part)
        return merged if max_keys is None else merged[:max_keys]

    def _bulk_keys(self, name: str, keys: Iterable[Any], *args: Any, retry_safe: bool = True) -> List[Any]:
        groups = self._split(keys)
        return self._run_each(
            [(shard, lambda c, part=part: getattr(c, name)(part, *args)) for shard, part in groups.items()],
            retry_safe,
        )

    def _merged(self, name: str, keys: Iterable[Any], *args: Any) -> Dict[Any, Any]:
        """``client.name(keys_of_the_shard, *args)`` per shard, the dicts united."""
        merged: Dict[Any, Any] = {}
        for part in self._bulk_keys(name, keys, *args):
            merged.update(part)
        return merged

    def _bulk_items(self, name: str, data: Mapping[Any, Any], *args: Any) -> List[Any]:
        if self._single is not None:
            return [self._single.call(lambda c: getattr(c, name)(data, *args), True)]
        groups: Dict[Shard, Dict[Any, Any]] = {}
        node_of, by_name = self.ring.node_of, self._by_name
        for key, value in data.items():
            groups.setdefault(by_name[node_of(_key_bytes(key))], {})[key] = value
        return self._run_each(
            [(shard, lambda c, part=part: getattr(c, name)(part, *args)) for shard, part in groups.items()],
            True,
        )

    # -- connections ----------------------------------------------------------------------

    def close(self) -> None:
        """Close every client's idle connections and stop the worker threads."""
        for shard in self.shards:
            for client in shard.clients:
                client.close()
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)

    def checkin(self) -> None:
        for shard in self.shards:
            for client in shard.clients:
                client.checkin()

    def __enter__(self):
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _merge_data(data: Optional[Mapping[Any, Any]], kwargs: Dict[str, Any]) -> Mapping[Any, Any]:
    if data is None:
        return kwargs
    if not hasattr(data, "items"):
        raise TypeError(f"expected a mapping of keys to values, not {type(data).__name__}")
    return {**data, **kwargs} if kwargs else data


def _key_op(client_class: Any, name: str, retry_safe: bool) -> Callable[..., Any]:
    """A method running ``client.name(key, ...)`` on ``key``'s shard."""
    target = getattr(client_class, name)

    @functools.wraps(target)
    def method(self: _Sharded, key: Any, *args: Any, **kwargs: Any) -> Any:
        return self.shard_for(key).call(lambda c: target(c, key, *args, **kwargs), retry_safe)

    return method


def _unshardable(name: str, hint: str) -> Callable[..., Any]:
    def method(self: _Sharded, *args: Any, **kwargs: Any) -> Any:
        raise UnshardableOperation(f"{type(self).__name__}.{name} cannot be sharded: {hint}")

    method.__name__ = name
    method.__doc__ = f"Not available on a sharded client: {hint}"
    return method


def _install(
    cls: Any, client_class: Any, safe: Iterable[str], unsafe: Iterable[str], unshardable: Mapping[str, str]
) -> None:
    for name in safe:
        setattr(cls, name, _key_op(client_class, name, True))
    for name in unsafe:
        setattr(cls, name, _key_op(client_class, name, False))
    for name, hint in unshardable.items():
        method = _unshardable(name, hint)
        setattr(cls, name, property(method) if isinstance(getattr(client_class, name), property) else method)


_ONE_SERVER = "run it on one server with client_for(key) or clients()"


class ShardedKyotoTycoon(_Sharded):
    """Kyoto Tycoon servers as one keyspace; see the module docstring.

    ``servers``: a list of shards (``"host:port"`` or a tuple of them, primary first), or a
    mapping ``{shard: weight}``.  ``weights``: ``{primary "host:port": int}`` (default 1).
    ``failover_after`` connection failures move a shard to its next server; the primary is
    health-checked every ``recheck_interval`` seconds.  Other keyword arguments go to every
    ``KyotoTycoon`` (serializer, timeout, connect_timeout, default_db...).
    """

    _client_class = KyotoTycoon
    _health_check_factory = KTCatchUpCheck

    def set_database(self, db: int) -> ShardedKyotoTycoon:
        for shard in self.shards:
            for client in shard.clients:
                client.set_database(db)
        return self

    # -- bulk -----------------------------------------------------------------------------

    def get_bulk(self, keys: Iterable[Any], db: Optional[int] = None) -> Dict[Any, Any]:
        """``{key: value}`` of the keys found, fetched from all shards in parallel."""
        return self._merged("get_bulk", keys, db)

    def get_bulk_raw(self, keys: Iterable[Any], db: Optional[int] = None) -> Dict[Any, bytes]:
        return self._merged("get_bulk_raw", keys, db)

    def set_bulk(
        self,
        __data: Optional[Mapping[Any, Any]] = None,
        db: Optional[int] = None,
        expire_time: Any = None,
        **kwargs: Any,
    ) -> int:
        """Store every pair (split per shard, in parallel); returns the number stored."""
        return sum(self._bulk_items("set_bulk", _merge_data(__data, kwargs), db, expire_time))

    update = set_bulk

    def remove_bulk(self, keys: Iterable[Any], db: Optional[int] = None) -> int:
        """Remove every key (split per shard, in parallel); returns the number removed."""
        return sum(self._bulk_keys("remove_bulk", keys, db))

    # -- whole database -------------------------------------------------------------------

    def clear(self, db: Optional[int] = None) -> bool:
        return all(self._fan_out("clear", db))

    def count(self, db: Optional[int] = None) -> int:
        return sum(self._fan_out("count", db))

    def __len__(self) -> int:
        return self.count()

    @property
    def size(self) -> int:
        """Sum of the shards' database sizes."""
        return sum(int(status["size"]) for status in self.status().values())

    def status(self, db: Optional[int] = None) -> Dict[str, Dict[str, str]]:
        """``{shard name: that server's status}``."""
        return self._per_shard("status", db)

    def report(self) -> Dict[str, Dict[str, str]]:
        return self._per_shard("report")

    def synchronize(
        self, hard: bool = False, command: Optional[str] = None, db: Optional[int] = None
    ) -> bool:
        return all(self._fan_out("synchronize", hard, command, db))

    def vacuum(self, step: int = 0, db: Optional[int] = None) -> bool:
        return all(self._fan_out("vacuum", step, db))

    def match_prefix(self, prefix: Any, max_keys: Optional[int] = None, db: Optional[int] = None) -> list:
        """Matching keys of every shard, shard by shard (at most ``max_keys`` in all)."""
        return self._merge_lists("match_prefix", max_keys, prefix, max_keys, db)

    def match_regex(self, regex: Any, max_keys: Optional[int] = None, db: Optional[int] = None) -> list:
        return self._merge_lists("match_regex", max_keys, regex, max_keys, db)

    def match_similar(
        self,
        origin: Any,
        distance: Optional[int] = None,
        max_keys: Optional[int] = None,
        db: Optional[int] = None,
    ) -> list:
        """Keys within ``distance`` of ``origin``: nearest first within each shard's part."""
        return self._merge_lists("match_similar", max_keys, origin, distance, max_keys, db)

    def cursors(self, db: Optional[int] = None) -> Dict[str, Cursor]:
        """One server-side cursor per shard (on the server each shard uses now)."""
        return {shard.name: shard.active.cursor(db) for shard in self.shards}

    def keys(self, db: Optional[int] = None) -> Iterator[Any]:
        """Every key, shard after shard (each in its database's order), lazily."""
        for shard in self.shards:
            yield from shard.active.keys(db)

    def values(self, db: Optional[int] = None) -> Iterator[Any]:
        for shard in self.shards:
            yield from shard.active.values(db)

    def items(self, db: Optional[int] = None) -> Iterator[Tuple[Any, Any]]:
        for shard in self.shards:
            yield from shard.active.items(db)

    # -- mapping protocol: ``db[key]``, ``db[key, db_index]``, ``db[key] = value, expire_time``

    def __getitem__(self, key_or_keydb: Any) -> Any:
        return self.get(*_key_and_db(key_or_keydb))

    def __setitem__(self, key_or_keydb: Any, value: Any) -> None:
        value, expire_time = value if isinstance(value, tuple) and len(value) == 2 else (value, None)
        key, db = _key_and_db(key_or_keydb)
        self.set(key, value, db, expire_time)

    def __delitem__(self, key_or_keydb: Any) -> None:
        self.remove(*_key_and_db(key_or_keydb))

    def __contains__(self, key_or_keydb: Any) -> bool:
        return self.exists(*_key_and_db(key_or_keydb))


def _key_and_db(key_or_keydb: Any) -> Tuple[Any, Optional[int]]:
    """``key`` or ``(key, db index)`` -> ``(key, db or None)``."""
    if isinstance(key_or_keydb, tuple):
        if len(key_or_keydb) != 2:
            raise TypeError("use db[key] or db[key, db_index]")
        return key_or_keydb[0], key_or_keydb[1]
    return key_or_keydb, None


_install(
    ShardedKyotoTycoon,
    KyotoTycoon,
    safe=("get", "get_raw", "set", "remove", "exists", "check"),
    unsafe=("add", "replace", "append", "seize", "pop", "cas", "incr", "incr_double"),
    unshardable={
        "script": f"a Lua procedure sees one server's records; {_ONE_SERVER}",
        "cursor": "a cursor walks one server; use cursors(db) for one per shard",
        "path": "every shard has its own; use status() for {shard: status}",
    },
)


class ShardedTokyoTyrant(_Sharded):
    """Tokyo Tyrant servers as one keyspace; see the module docstring and ShardedKyotoTycoon.

    Other keyword arguments go to every ``TokyoTyrant`` (serializer, timeout...).
    """

    _client_class = TokyoTyrant
    _health_check_factory = TTCatchUpCheck

    # misc functions whose arguments are keys (or key/value pairs): split per shard
    _MISC_KEY_LISTS = {b"getlist": 1, b"outlist": 1, b"putlist": 2}
    # misc functions whose first argument is the one key they touch
    _MISC_ONE_KEY = frozenset([b"put", b"putkeep", b"putcat", b"putdup", b"putdupback", b"out", b"get"])

    # -- bulk -----------------------------------------------------------------------------

    def get_bulk(self, keys: Iterable[Any]) -> Dict[Any, Any]:
        return self._merged("get_bulk", keys)

    def get_bulk_raw(self, keys: Iterable[Any]) -> Dict[Any, bytes]:
        return self._merged("get_bulk_raw", keys)

    def set_bulk(self, __data: Optional[Mapping[Any, Any]] = None, **kwargs: Any) -> bool:
        data = _merge_data(__data, kwargs)
        return all(self._bulk_items("set_bulk", data)) if data else True

    def update(
        self,
        __data: Optional[Mapping[Any, Any]] = None,
        db: Any = None,
        expire_time: Any = None,
        **kwargs: Any,
    ) -> bool:
        if db is not None or expire_time is not None:
            raise ValueError(
                "Tokyo Tyrant has no numbered databases and no expiry: pass db/expire_time as None"
            )
        return self.set_bulk(__data, **kwargs)

    def setnr_bulk(self, __data: Optional[Mapping[Any, Any]] = None, **kwargs: Any) -> None:
        data = _merge_data(__data, kwargs)
        if data:
            self._bulk_items("setnr_bulk", data)

    def remove_bulk(self, keys: Iterable[Any]) -> bool:
        keys = list(keys)
        return all(self._bulk_keys("remove_bulk", keys)) if keys else True

    def misc(
        self, cmd: Union[str, bytes], args: Optional[Sequence[Any]] = None, update_log: bool = True
    ) -> Any:
        """``getlist``/``putlist``/``outlist`` split per shard (results concatenated, None if any
        shard failed); single-key functions go to the key's shard; others cannot be sharded."""
        name = cmd.encode("utf-8") if isinstance(cmd, str) else bytes(cmd)
        args = list(args or ())
        stride = self._MISC_KEY_LISTS.get(name)
        if stride is not None:
            groups: Dict[Shard, List[Any]] = {}
            node_of, by_name = self.ring.node_of, self._by_name
            for i in range(0, len(args) - stride + 1, stride):
                shard = by_name[node_of(_arg_bytes(args[i]))]
                groups.setdefault(shard, []).extend(args[i : i + stride])
            if not groups:
                return []
            parts = self._run_each(
                [(s, lambda c, p=part: c.misc(name, p, update_log)) for s, part in groups.items()],
                True,  # getlist/putlist/outlist: repeating them changes nothing
            )
            if any(part is None for part in parts):
                return None
            return [item for part in parts for item in part]
        if name in self._MISC_ONE_KEY and args:
            shard = self._by_name[self.ring.node_of(_arg_bytes(args[0]))]
            return shard.call(lambda c: c.misc(name, args, update_log), name in (b"get", b"put", b"out"))
        raise UnshardableOperation(
            f"ShardedTokyoTyrant.misc({name.decode('utf-8', 'replace')!r}) cannot be sharded: {_ONE_SERVER}"
        )

    def script(self, name: Union[str, bytes], key: Any = None, value: Any = None, **kwargs: Any) -> Any:
        """The Lua function runs on ``key``'s shard; without a key it cannot be sharded."""
        if key is None:
            raise UnshardableOperation(
                f"ShardedTokyoTyrant.script without a key cannot be sharded: {_ONE_SERVER}"
            )
        return self.shard_for(key).call(lambda c: c.script(name, key, value, **kwargs), False)

    # -- whole database -------------------------------------------------------------------

    def clear(self) -> bool:
        return all(self._fan_out("clear"))

    def count(self) -> int:
        return sum(self._fan_out("count"))

    def __len__(self) -> int:
        return self.count()

    @property
    def size(self) -> int:
        return sum(self._on_every_shard(lambda c: c.size))

    def status(self) -> Dict[str, Dict[str, str]]:
        return self._per_shard("status")

    @property
    def error(self) -> Dict[str, Any]:
        """``{shard name: (code, message) or None}``."""
        return dict(zip([s.name for s in self.shards], self._on_every_shard(lambda c: c.error)))

    def synchronize(self) -> bool:
        return all(self._fan_out("synchronize"))

    def optimize(self, options: Union[str, bytes] = "") -> bool:
        return all(self._fan_out("optimize", options))

    def set_index(self, name: Union[str, bytes], index_type: int, check_exists: bool = False) -> bool:
        return all(self._fan_out("set_index", name, index_type, check_exists))

    def optimize_index(self, name: Union[str, bytes]) -> bool:
        return all(self._fan_out("optimize_index", name))

    def delete_index(self, name: Union[str, bytes]) -> bool:
        return all(self._fan_out("delete_index", name))

    def match_prefix(self, prefix: Any, max_keys: Optional[int] = 1024) -> List[Any]:
        return self._merge_lists("match_prefix", max_keys, prefix, max_keys)

    def match_regex(self, regex: Union[str, bytes], max_keys: Optional[int] = 1024) -> List[Any]:
        return self._merge_lists("match_regex", max_keys, regex, max_keys)

    def get_range(self, start: Any = None, stop: Any = None, max_keys: int = 0) -> Dict[Any, Any]:
        """B+ tree ranges of every shard, merged in key (byte) order, at most ``max_keys``."""
        records: List[Tuple[Any, Any]] = []
        for part in self._fan_out("get_range", start, stop, max_keys):
            records.extend(part.items())
        records.sort(key=lambda kv: _key_bytes(kv[0]))
        return dict(records[:max_keys] if max_keys else records)

    def keys(self) -> List[Any]:
        """Every key, shard after shard (each in its database's order)."""
        return self._merge_lists("keys", None)

    def __iter__(self) -> Iterator[Any]:
        return iter(self.keys())

    def items(self) -> List[Tuple[Any, Any]]:
        return self._merge_lists("items", None)

    def values(self) -> List[Any]:
        return self._merge_lists("values", None)

    def search(self, expressions: Iterable[Sequence[Any]], cmd: Optional[str] = None) -> Any:
        """The query on every shard: keys / records concatenated shard by shard, counts summed.

        Ordering (``setorder``) and limits (``setlimit``) apply within each shard's part.
        """
        expressions = list(expressions)
        parts = self._fan_out("search", expressions, cmd, retry_safe=cmd != "out")
        if cmd == "count":
            return sum(parts)
        if cmd == "out":
            return all(parts)
        return [item for part in parts for item in part]

    # -- mapping protocol: the client's own methods (they call get_range/get/set/remove/exists)
    __getitem__ = TokyoTyrant.__getitem__
    __setitem__ = TokyoTyrant.__setitem__
    __delitem__ = TokyoTyrant.__delitem__
    __contains__ = TokyoTyrant.__contains__


_install(
    ShardedTokyoTyrant,
    TokyoTyrant,
    safe=("get", "get_raw", "set", "setnr", "remove", "exists", "length", "get_part"),
    unsafe=("add", "append", "addshl", "incr", "incr_double", "setdup", "setdupback"),
    unshardable={
        "iter_from": f"the server iterator walks one database; {_ONE_SERVER}",
        "copy": f"each server copies its own file; {_ONE_SERVER}",
        "genuid": f"IDs are unique per server only; {_ONE_SERVER}",
    },
)
