"""KyotoTycoon under concurrency: many threads on one client, cursors in parallel."""

from __future__ import annotations

import random
import threading

import pytest

from kt import KT_JSON

THREADS = 16
OPS = 1000


def _run_threads(target, count):
    errors = []

    def wrapper(index):
        try:
            target(index)
        except BaseException as exc:  # reported by the main thread
            errors.append((index, exc))

    threads = [threading.Thread(target=wrapper, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not any(t.is_alive() for t in threads), "a worker thread hung"
    if errors:
        raise errors[0][1]


def test_sixteen_threads_mixed_operations_every_value_checked(kt_servers):
    db = kt_servers.client(serializer=KT_JSON, timeout=30)
    db.clear(db=0)
    db.clear(db=1)

    def worker(index):
        rng = random.Random(index)
        prefix = f"t{index}:"
        model = {}  # (key, dbidx) -> value: this thread is the only writer of its keys
        for op_number in range(OPS):
            key = f"{prefix}{rng.randrange(40)}"
            dbidx = rng.randrange(2)
            value = {"thread": index, "op": op_number, "tab": "\t\n"}
            op = rng.random()
            if op < 0.30:
                assert db.set(key, value, db=dbidx) == 1
                model[key, dbidx] = value
            elif op < 0.55:
                assert db.get(key, db=dbidx) == model.get((key, dbidx))
            elif op < 0.62:
                assert db.remove(key, db=dbidx) == (1 if (key, dbidx) in model else 0)
                model.pop((key, dbidx), None)
            elif op < 0.70:
                assert db.add(key, value, db=dbidx) == ((key, dbidx) not in model)
                model.setdefault((key, dbidx), value)
            elif op < 0.76:
                assert db.exists(key, db=dbidx) == ((key, dbidx) in model)
            elif op < 0.82:
                assert db.seize(key, db=dbidx) == model.pop((key, dbidx), None)
            elif op < 0.90:
                keys = [f"{prefix}{rng.randrange(40)}" for _ in range(5)]
                want = {k: model[k, dbidx] for k in keys if (k, dbidx) in model}
                assert db.get_bulk(keys, db=dbidx) == want
            elif op < 0.96:
                batch = {f"{prefix}{rng.randrange(40)}": {"bulk": op_number, "i": i} for i in range(4)}
                assert db.set_bulk(batch, db=dbidx) == len(batch)
                model.update({(k, dbidx): v for k, v in batch.items()})
            else:
                old = model.get((key, dbidx))
                assert db.cas(key, old, value, db=dbidx) is True
                model[key, dbidx] = value
        # Final check of every key this thread owns, in both databases.
        for dbidx in (0, 1):
            keys = [f"{prefix}{i}" for i in range(40)]
            assert db.get_bulk(keys, db=dbidx) == {k: model[k, dbidx] for k in keys if (k, dbidx) in model}

    _run_threads(worker, THREADS)
    assert db._pool.size <= db._pool.max_size


def test_cursors_from_several_threads_at_once(kt_servers):
    db = kt_servers.client(timeout=30)
    db.clear(db=1)
    records = {f"key{i:04d}": f"value{i}" for i in range(300)}
    db.set_bulk(records, db=1)
    expected = sorted(records.items())

    def walker(index):
        with db.cursor(db=1) as cur:
            start = index * 17
            start_key = expected[start][0]
            assert cur.jump(start_key)
            assert list(cur) == expected[start:]
            assert cur.jump_back() and cur.key() == expected[-1][0]

    _run_threads(walker, 8)

    # One cursor shared by several threads: each step is atomic, no record is seen twice.
    seen = []
    lock = threading.Lock()
    shared = db.cursor(db=1)
    assert shared.jump()

    def stepper(_):
        while True:
            item = shared.get(step=True)
            if item is None:
                return
            with lock:
                seen.append(item)

    _run_threads(stepper, 4)
    shared.close()
    assert sorted(seen) == expected


@pytest.mark.parametrize("threads", [4])
def test_keys_generators_in_parallel_do_not_share_cursors(kt_servers, threads):
    db = kt_servers.client()
    db.clear(db=1)
    db.set_bulk({f"g{i:03d}": str(i) for i in range(100)}, db=1)
    results = {}

    def lister(index):
        results[index] = list(db.keys(db=1))

    _run_threads(lister, threads)
    assert all(keys == [f"g{i:03d}" for i in range(100)] for keys in results.values())
