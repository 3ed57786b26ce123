"""The kill test: 3 shards x 2 servers in dual-master replication, one server killed mid-write.

Writes ``KT_FAILOVER_KEYS`` keys (default 100,000) through ``ShardedKyotoTycoon`` (and
``KT_FAILOVER_KEYS_TT``, default 20,000, through ``ShardedTokyoTyrant``: the CI time budget) in
``set_bulk`` batches, rewrites some old keys and reads back a sample after every batch.  At 30 %
the primary of one shard gets ``kill -9``; writing goes on through failover; at 65 % the server
is started again (same files, update log and RTS file) and the client moves back to it once
it has caught up.  Checks:

* every read returns the key's latest acknowledged value, an earlier value of the same key,
  or nothing -- never another key's value (values embed their key);
* after catch-up both servers of every shard hold identical records (same count, same values),
  and every acknowledged write is there with its latest value (missing count: 0).

Bundled servers always; the real ktserver / ttserver too when ``KTSERVER`` / ``TTSERVER`` is
set.  The numbers are printed (``-s`` shows them) for the issue's closing note.
"""

from __future__ import annotations

import os
import random
import threading
import time
from typing import Dict, List, Tuple

import pytest

pytest.importorskip("uhashring")

from kt import KT_NONE, KyotoTycoon, ShardedKyotoTycoon, ShardedTokyoTyrant, TokyoTyrant  # noqa: E402
from kt.errors import ServerConnectionError  # noqa: E402
from kt.failover import TTCatchUpCheck, kt_health_check  # noqa: E402
from kt.hashring import KetamaRing  # noqa: E402
from replicated import ReplicatedPair  # noqa: E402

KEYS = {
    "kt": int(os.environ.get("KT_FAILOVER_KEYS", "100000")),
    "tt": int(os.environ.get("KT_FAILOVER_KEYS_TT", "20000")),
}
CLIENTS = {"kt": (ShardedKyotoTycoon, KyotoTycoon), "tt": (ShardedTokyoTyrant, TokyoTyrant)}
BATCH = 500
SHARDS = 3


def _flavours():
    for product, variable in (("kt", "KTSERVER"), ("tt", "TTSERVER")):
        yield pytest.param(product, None, id=f"{product}-bundled")
        yield pytest.param(
            product,
            os.environ.get(variable),
            id=f"{product}-real",
            marks=pytest.mark.skipif(not os.environ.get(variable), reason=f"{variable} is not set"),
        )


def _value(key: bytes, version: int) -> bytes:
    return key + b"=v%d" % version


def _check_read(key: bytes, value, history: Dict[bytes, List[bytes]]) -> None:
    """A read may see the latest acknowledged value, an earlier one of that key, or nothing."""
    if value is None:
        return
    assert value.split(b"=")[0] == key, f"read of {key!r} returned another key's value {value!r}"
    assert value in history[key], f"read of {key!r} returned {value!r}, which was never written"


@pytest.mark.parametrize("product, server", list(_flavours()))
def test_kill_one_server_of_a_shard_mid_write(product, server, tmp_path):
    pairs = [
        ReplicatedPair(product, str(tmp_path / f"shard{i}"), sids=(2 * i + 1, 2 * i + 2), server=server)
        for i in range(SHARDS)
    ]
    errors: List[BaseException] = []

    def start(pair: ReplicatedPair) -> None:
        try:
            pair.start()
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    starters = [threading.Thread(target=start, args=(pair,)) for pair in pairs]
    try:
        for t in starters:
            t.start()
        for t in starters:
            t.join()
        if errors:
            raise errors[0]
        _run_kill_test(product, pairs)
    finally:
        for pair in pairs:
            pair.stop()


def _run_kill_test(product: str, pairs: List[ReplicatedPair]) -> None:
    keys_total = KEYS[product]
    client = CLIENTS[product][0](
        [tuple(pair.addresses) for pair in pairs],
        serializer=KT_NONE,
        decode_keys=False,
        failover_after=1,
        recheck_interval=0.3,
        timeout=10,
        connect_timeout=2,
    )
    victim_pair = pairs[1]
    victim = client._by_name[victim_pair.addresses[0]]
    rng = random.Random(15)
    acked: Dict[bytes, bytes] = {}  # key -> latest acknowledged value
    history: Dict[bytes, List[bytes]] = {}  # key -> every value written (acknowledged or not)
    keys = [b"key:%07d" % i for i in range(keys_total)]
    failed_batches = reads = acked_writes = 0
    started = time.monotonic()
    kill_at, restart_at = int(keys_total * 0.30), int(keys_total * 0.65)
    first_ok_after_kill = None
    progress = {"written": 0, "killed_at": None}
    outage = threading.Event()  # set from the kill until the restart
    stop = threading.Event()

    def killer() -> None:  # kill -9 from another thread, so it lands while requests are in flight
        while progress["written"] < kill_at:
            if stop.wait(0.001):
                return
        victim_pair.kill(0)
        progress["killed_at"] = time.monotonic()
        outage.set()

    killer_thread = threading.Thread(target=killer)
    killer_thread.start()
    old_keys: List[bytes] = []  # written long before the kill: safe to rewrite (no replication race)
    try:
        written = 0
        while written < keys_total:
            batch = {k: _value(k, 1) for k in keys[written : written + BATCH]}
            if outage.is_set():
                # rewrite old keys during the outage (only then: see docs/sharding.md on the
                # same key written on both servers within the replication delay)
                for k in rng.sample(old_keys, 50):
                    batch[k] = _value(k, len(history[k]) + 1)
            for k, v in batch.items():
                history.setdefault(k, []).append(v)
            try:
                stored = client.set_bulk(batch)
            except ServerConnectionError:
                failed_batches += 1
                continue  # not acknowledged: write the batch again
            assert stored in (len(batch), True)  # KT counts, TT says True
            acked.update(batch)
            acked_writes += len(batch)
            if progress["killed_at"] is not None and first_ok_after_kill is None:
                first_ok_after_kill = time.monotonic()
            written += BATCH
            progress["written"] = written
            if written <= keys_total * 0.1:
                old_keys.extend(k for k in batch if k not in old_keys)
            # read back a sample, through get_bulk and single gets
            sample = rng.sample(list(acked), min(30, len(acked)))
            for k, v in client.get_bulk(sample).items():
                _check_read(k, v, history)
            for k in sample[:5]:
                _check_read(k, client.get(k), history)
            reads += len(sample) + 5
            if outage.is_set() and written >= restart_at:
                victim_pair.start(0)
                outage.clear()
        killer_thread.join()
        assert progress["killed_at"] is not None
        probe = next(k for k in keys if client.shard_for(k) is victim)
        deadline = time.monotonic() + 60
        while victim.active_index != 0 and time.monotonic() < deadline:
            client.get(probe)  # calls on the shard drive its health check
            time.sleep(0.1)
        if victim.active_index != 0:
            primary, replica = victim.clients
            pytest.fail(
                f"the client never moved back to the restarted primary: primary {primary.status()}, "
                f"{primary.count()} records; replica {replica.count()} records"
            )
        wrote = time.monotonic()
        missing, waited = _check_caught_up(product, pairs, acked)
    finally:
        stop.set()
        killer_thread.join()
        client.close()
    failover = (first_ok_after_kill or 0) - progress["killed_at"]
    print(
        f"\n{product} kill test: {keys_total} keys, {acked_writes} acknowledged writes ({len(acked)} keys), "
        f"{failed_batches} failed batches, {reads} reads checked, kill -> first acknowledged write "
        f"{failover:.3f} s, writing {wrote - started:.1f} s, "
        f"catch-up check {time.monotonic() - wrote:.1f} s (waiting for replication {waited:.1f} s), "
        f"missing after catch-up: {missing}"
    )
    assert missing == 0


def _check_caught_up(
    product: str, pairs: List[ReplicatedPair], acked: Dict[bytes, bytes], timeout: float = 60.0
) -> Tuple[int, float]:
    """Wait until both servers of every shard hold the same data: (lost writes, seconds waited)."""
    ring = KetamaRing({pair.addresses[0]: 1 for pair in pairs})  # the client's placement
    caught_up = kt_health_check if product == "kt" else TTCatchUpCheck()
    missing = 0
    waited = 0.0
    for pair in pairs:
        mine = {k: v for k, v in acked.items() if ring.node_of(k) == pair.addresses[0]}
        ordered = sorted(mine)
        a, b = (
            CLIENTS[product][1]("127.0.0.1", port, serializer=KT_NONE, decode_keys=False, timeout=20)
            for port in pair.ports
        )
        try:
            deadline = time.monotonic() + timeout
            while True:
                # caught up: each has applied everything the other logged (the failover checks)
                waiting = time.monotonic()
                while not (caught_up(a, b) and caught_up(b, a)):
                    assert time.monotonic() < deadline, f"shard {pair.addresses} never caught up"
                    time.sleep(0.2)
                waited += time.monotonic() - waiting
                counts = (a.count(), b.count())
                values_a, values_b = {}, {}
                for i in range(0, len(ordered), 5000):
                    values_a.update(a.get_bulk(ordered[i : i + 5000]))
                    values_b.update(b.get_bulk(ordered[i : i + 5000]))
                # Every record there was written by this test and acknowledged (a failed batch
                # was written again), so equal counts and equal values of these keys mean
                # identical databases.
                if counts[0] == counts[1] == len(mine) and values_a == values_b:
                    break
                assert time.monotonic() < deadline, (
                    f"shard {pair.addresses}: servers still differ after {timeout}s "
                    f"({counts[0]} vs {counts[1]} records, {len(mine)} keys written)"
                )
                time.sleep(0.3)
            missing += sum(values_a.get(k) != v for k, v in mine.items())
        finally:
            a.close()
            b.close()
    return missing, waited
