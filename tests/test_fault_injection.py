"""Random operations through a faulty network, checked against a model (issue 9).

A seeded FaultProxy (tests/faultproxy.py) sits between one client and a real server and
drops, truncates and delays requests and replies at random -- some replies beyond the
client's timeout.  Each operation is also applied to a model that keeps, per key, the set of
states the server may be in:

* a call that returns narrows the set to the states consistent with its reply (none left:
  a wrong reply);
* a call that raises ServerConnectionError (dropped, timed out, cut mid-reply) has an
  unknown outcome: the set grows by "applied once";
* every read must return a state in the set.  A read that shows the last write applied
  twice is counted as such; anything else outside the set is a wrong value.

After an unknown outcome the key is read back at once (through the same faulty path,
retried), so the sets stay small.  The suite asserts 0 wrong values, 0 writes applied
twice, and that no call took longer than the timeouts allow (no hangs).
"""

from __future__ import annotations

import random
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, FrozenSet, List, Optional, Tuple

from faultproxy import FaultProxy
from kt.errors import ServerConnectionError
from kt.kyototycoon import KyotoTycoon
from kt.tokyotyrant import TokyoTyrant

OPERATIONS = 5000  # per product: KT and TT together make the 10k of the issue
TIMEOUT = 1.0
CONNECT_TIMEOUT = 2.0
# A call may be resent once (idempotent), each attempt bounded by TIMEOUT, plus connecting.
LONGEST_CALL = 2 * TIMEOUT + CONNECT_TIMEOUT + 1.0

FAULTS = dict(
    drop_request=0.01,
    truncate_request=0.01,
    delay_request=0.01,  # short: a request never arrives after the client gave up on it
    drop_reply=0.01,
    truncate_reply=0.01,
    delay_reply=0.0006,
    reply_delay_seconds=(TIMEOUT + 0.05, TIMEOUT + 0.15),  # beyond the timeout
)

Transition = Callable[[Any], Tuple[Any, Any]]  # state -> (new state, reply)


@dataclass
class Tally:
    calls: int = 0
    unknown: int = 0
    wrong: List[str] = field(default_factory=list)
    doubled: List[str] = field(default_factory=list)
    longest: float = 0.0


class Model:
    """Per key, the set of states the server may hold (None = no record)."""

    def __init__(self, tally: Tally) -> None:
        self.states: Dict[str, FrozenSet[Any]] = {}
        self.twice: Dict[str, FrozenSet[Any]] = {}  # states only a double application explains
        self.tally = tally
        self.history: Dict[str, deque] = {}  # the last events per key, for failure messages

    def note(self, key: str, event: str) -> None:
        self.history.setdefault(key, deque(maxlen=10)).append(event)

    def trail(self, key: str) -> str:
        return " <- ".join(reversed(self.history.get(key, ())))

    def possible(self, key: str) -> FrozenSet[Any]:
        return self.states.get(key, frozenset([None]))

    def returned(self, key: str, step: Transition, reply: Any, what: str) -> None:
        """A write returned ``reply``: keep the states that explain it."""
        after = set()
        for state in self.possible(key):
            new, expected = step(state)
            if expected == reply:
                after.add(new)
        if not after:  # applied twice (a silent resend) explains it, or nothing does
            twice = {step(step(state)[0]) for state in self.possible(key)}
            target = self.tally.doubled if any(r == reply for _, r in twice) else self.tally.wrong
            target.append(
                f"{what}: reply {reply!r} impossible from {set(self.possible(key))}; {self.trail(key)}"
            )
            after = {new for new, r in twice if r == reply} or {step(s)[0] for s in self.possible(key)}
        self.states[key] = frozenset(after)
        self.twice.pop(key, None)
        self.note(key, f"{what} -> {reply!r}")

    def unknown(self, key: str, step: Transition, what: str = "write") -> None:
        """A write failed after maybe being applied (once)."""
        before = self.possible(key)
        once = {step(state)[0] for state in before}
        twice = {step(state)[0] for state in once}
        self.states[key] = frozenset(before | once)
        self.twice[key] = frozenset(twice - before - once)
        self.note(key, f"{what} unknown, now {set(self.states[key])}")

    def read(self, key: str, value: Any, what: str) -> None:
        if value not in self.possible(key):
            target = self.tally.doubled if value in self.twice.get(key, ()) else self.tally.wrong
            target.append(f"{what}: read {value!r}, possible {set(self.possible(key))}; {self.trail(key)}")
        self.states[key] = frozenset([value])
        self.twice.pop(key, None)
        self.note(key, f"{what} read {value!r}")


# -- the two clients' operations ---------------------------------------------------------------


def _kt_counter(raw: Optional[bytes]) -> Optional[int]:
    return None if raw is None else int.from_bytes(raw, "big", signed=True)


def _tt_counter(raw: Optional[bytes]) -> Optional[int]:
    return None if raw is None else int.from_bytes(raw, "little", signed=True)


class Workload:
    """Random single-key and bulk operations of one client, each with its model transition."""

    def __init__(self, client: Any, rng: random.Random, tag: str) -> None:
        self.client = client
        self.rng = rng
        self.keys = [f"{tag}-k{i}" for i in range(8)]
        self.counters = [f"{tag}-c{i}" for i in range(3)]
        self.is_kt = isinstance(client, KyotoTycoon)
        self.decode_counter = _kt_counter if self.is_kt else _tt_counter
        self.serial = 0

    def value(self) -> str:
        self.serial += 1
        return f"v{self.serial}"

    def read(self, key: str, client: Any = None) -> Any:
        client = client or self.client
        if key in self.counters:
            return self.decode_counter(client.get_raw(key))
        return client.get(key)

    def pick(self) -> Tuple[str, List[Tuple[str, Transition]], Callable[[], Any], Optional[Callable]]:
        """(name, [(key, transition)], call, check_reply) -- reads have no transitions."""
        rng, client = self.rng, self.client
        key = rng.choice(self.keys)
        roll = rng.random()
        if roll < 0.25:
            return "get", [], lambda: {key: client.get(key)}, None
        if roll < 0.35:
            value = self.value()
            if self.is_kt:
                return "set", [(key, lambda s: (value, 1))], lambda: client.set(key, value), None
            return "set", [(key, lambda s: (value, True))], lambda: client.set(key, value), None
        if roll < 0.45:
            token = self.value() + ";"
            step = lambda s: ((s or "") + token, True)  # noqa: E731
            return "append", [(key, step)], lambda: client.append(key, token), None
        if roll < 0.60:
            counter = rng.choice(self.counters)
            n = rng.choice((1, 2, 5, -3))
            step = lambda s: ((s or 0) + n, (s or 0) + n)  # noqa: E731
            return "incr", [(counter, step)], lambda: client.incr(counter, n), None
        if roll < 0.68:
            value = self.value()
            step = lambda s: (value, True) if s is None else (s, False)  # noqa: E731
            return "add", [(key, step)], lambda: client.add(key, value), None
        if roll < 0.75:
            step = lambda s: (None, 0 if s is None else 1)  # noqa: E731
            return "remove", [(key, step)], lambda: client.remove(key), None
        if roll < 0.80:
            if self.is_kt:
                value = self.value()
                step = lambda s: (value, True) if s is not None else (None, False)  # noqa: E731
                return "replace", [(key, step)], lambda: client.replace(key, value), None
            value = self.value()
            return "setnr", [(key, lambda s: (value, None))], lambda: client.setnr(key, value), None
        if roll < 0.85 and self.is_kt:
            return "seize", [(key, lambda s: (None, s))], lambda: client.seize(key), None
        if roll < 0.90:
            keys = rng.sample(self.keys, 3)
            return "get_bulk", [], lambda: {k: client.get_bulk(keys).get(k) for k in keys}, None
        if roll < 0.95:
            data = {k: self.value() for k in rng.sample(self.keys, 3)}
            reply = len(data) if self.is_kt else True
            steps = [(k, _store(v, reply)) for k, v in data.items()]
            return "set_bulk", steps, lambda: client.set_bulk(data), None
        keys = rng.sample(self.keys, 2)
        steps = [(k, lambda s: (None, None)) for k in keys]
        # KT answers how many existed (checked below when the model knows); TT just True.
        return "remove_bulk", steps, lambda: client.remove_bulk(keys), self._check_removed(keys)

    def _check_removed(self, keys: List[str]) -> Callable[[Model, Any], Optional[str]]:
        def check(model: Model, reply: Any) -> Optional[str]:
            if not self.is_kt:
                return None if reply is True else f"remove_bulk replied {reply!r}"
            sets = [model.possible(k) for k in keys]
            if all(len(s) == 1 for s in sets):
                expected = sum(next(iter(s)) is not None for s in sets)
                if reply != expected:
                    return f"remove_bulk of {keys} replied {reply}, the model says {expected}"
            return None

        return check


def _store(value: Any, reply: Any) -> Transition:
    return lambda state: (value, reply)


def _timed(tally: Tally, call: Callable[[], Any]) -> Any:
    started = time.monotonic()
    try:
        return call()
    finally:
        tally.longest = max(tally.longest, time.monotonic() - started)


def _resolve(workload: Workload, model: Model, key: str, tally: Tally, direct: Any) -> None:
    """Read ``key`` back after an unknown outcome (faulty path first, retried).

    After a failed attempt wait a moment: a TT ``setnr`` forwarded just before its connection
    broke can still be in the server's queue for that connection, and a read on another
    connection could overtake it (a no-reply write's outcome is unknown until then).
    """
    for _ in range(20):
        try:
            value = _timed(tally, lambda: workload.read(key))
        except ServerConnectionError:
            time.sleep(0.05)
            continue
        model.read(key, value, f"read-back of {key}")
        return
    model.read(key, workload.read(key, direct), f"direct read-back of {key}")


def _run(client: Any, direct: Any, seed: int, operations: int) -> Tally:
    rng = random.Random(seed)
    tally = Tally()
    model = Model(tally)
    workload = Workload(client, rng, f"fi-{uuid.uuid4().hex[:8]}")
    for key in workload.keys + workload.counters:
        direct.remove(key)
    for _ in range(operations):
        name, steps, call, check = workload.pick()
        tally.calls += 1
        try:
            reply = _timed(tally, call)
        except ServerConnectionError:
            tally.unknown += 1
            for key, step in steps:
                model.unknown(key, step, name)
            for key, _ in steps:
                _resolve(workload, model, key, tally, direct)
            continue
        if not steps:  # a read: every key must hold a possible state
            for key, value in reply.items():
                model.read(key, value, name)
            continue
        if name == "setnr":  # no reply: unknown until read back (on the same connection)
            for key, step in steps:
                model.unknown(key, step, name)
                model.twice.pop(key, None)
                _resolve(workload, model, key, tally, direct)
            continue
        if check is not None:
            problem = check(model, reply)
            if problem:
                tally.wrong.append(problem)
            for key, step in steps:
                model.returned(key, lambda s, step=step: (step(s)[0], None), None, name)
            continue
        for key, step in steps:
            model.returned(key, step, reply, name)
    # Final check without faults: the server holds a state the model allows, for every key.
    for key in workload.keys + workload.counters:
        model.read(key, workload.read(key, direct), f"final {key}")
    return tally


def test_random_operations_through_faults_keep_every_value_right(any_server):
    cls = KyotoTycoon if any_server.product == "kt" else TokyoTyrant
    seed = 20261130 if any_server.product == "kt" else 9
    with FaultProxy(any_server.host, any_server.port, seed=seed, **FAULTS) as proxy:
        client = cls(
            host=proxy.host, port=proxy.port, timeout=TIMEOUT, connect_timeout=CONNECT_TIMEOUT,
            max_connections=4,
        )
        direct = any_server.client(timeout=10)
        try:
            tally = _run(client, direct, seed, OPERATIONS)
        finally:
            client.close()
        counts = dict(proxy.counts)
    print(f"\n{any_server.product}: {tally.calls} calls, {tally.unknown} unknown outcomes, "
          f"longest {tally.longest:.2f}s, proxy {counts}")
    assert counts.get("drop_reply", 0) > 10 and counts.get("drop_request", 0) > 10
    assert tally.unknown > 50  # faults really reached the client
    assert tally.doubled == [], tally.doubled[:5]
    assert tally.wrong == [], tally.wrong[:5]
    assert tally.longest < LONGEST_CALL, f"a call took {tally.longest:.1f}s"


def test_model_detects_double_application():
    """The checker itself: a read showing an append applied twice is reported as doubled."""
    model = Model(Tally())
    step = lambda s: ((s or "") + "t;", True)  # noqa: E731
    model.returned("k", step, True, "append")
    model.unknown("k", step)
    model.read("k", "t;t;t;", "read")
    assert model.tally.doubled and not model.tally.wrong
