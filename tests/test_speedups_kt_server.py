"""The KT server's compiled bulk path (``kt._speedups.kt_server_bulk``) against its Python twin.

Two in-process services get the same seeded random binary set/remove/get_bulk requests: one
through the pure-Python path (``kt_binary.parse_records`` + ``KTService.bin_*_bulk``), one
through the native path the server uses (``serve_small`` for a whole small request, else
``parse`` + ``KTService.bin_*_bulk_batch``).  Replies, the stored records (read raw, xt header
included), the request counters and the parse results must be identical.  Batches mix missing
keys, empty values, keys with NUL and high bytes, relative / absolute / past / never expiries,
several databases, unknown dbidx and a ``ktopts=p`` database.
"""

from __future__ import annotations

import os
import random
import time

import pytest

from kt.protocol import kt_binary as kb
from kt.server.engines import kc
from kt.server.kt_service import KTService
from kt.server.timeddb import TimedDB

native = kc.bulk_speedups()
pytestmark = pytest.mark.skipif(native is None, reason="kt_server_bulk not built, or KT_PURE_PYTHON set")

SPECS = ["*", "*#ktopts=p", "%"]
NEVER = (1 << 63) - 1


def _key(rng: random.Random) -> bytes:
    kind = rng.random()
    if kind < 0.1:
        return b""
    if kind < 0.2:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 6)))  # NUL and high bytes
    return b"k%03d" % rng.randrange(60)


def _xt(rng: random.Random) -> int:
    return rng.choice([NEVER, NEVER, 3600, 1, -1, -int(time.time()) - 3600, -(1 << 62) - 5,
                       (1 << 62) + 9, 0, -int(time.time()) + 7200])


def _request(rng: random.Random) -> bytes:
    magic = rng.choice([kb.MAGIC_SET_BULK, kb.MAGIC_SET_BULK, kb.MAGIC_REMOVE_BULK, kb.MAGIC_GET_BULK])
    n = rng.choice([1, 1, 2, 5, 70, 300])
    one_db = rng.random() < 0.7
    base = rng.randrange(len(SPECS) + 1)
    dbidx = [base if one_db else rng.randrange(len(SPECS) + 1) for _ in range(n)]
    keys = [_key(rng) for _ in range(n)]
    if magic == kb.MAGIC_SET_BULK:
        values = [b"" if rng.random() < 0.1 else rng.randbytes(rng.randrange(1, 40)) for _ in range(n)]
        if rng.random() < 0.05:
            values[0] = b"v" * 20000  # a value larger than the reply buffer's first guess
        return kb.encode_set_bulk(list(zip(dbidx, keys, values, [_xt(rng) for _ in range(n)])),
                                  no_reply=rng.random() < 0.1)
    if magic == kb.MAGIC_REMOVE_BULK:
        return kb.encode_remove_bulk(list(zip(dbidx, keys)), no_reply=rng.random() < 0.1)
    return kb.encode_get_bulk(list(zip(dbidx, keys)))


def _pure(service: KTService, request: bytes) -> bytes:
    magic, flags, rnum = kb._HEAD.unpack_from(request, 0)
    records, end, failure = kb.parse_records(request, 9, magic, rnum)
    assert failure is None and end == len(request)
    if magic == kb.MAGIC_GET_BULK:
        return kb.encode_get_bulk_reply(service.bin_get_bulk(records))
    hits = (service.bin_set_bulk if magic == kb.MAGIC_SET_BULK else service.bin_remove_bulk)(records)
    return b"" if flags & kb.FLAG_NO_REPLY else kb.encode_count_reply(magic, hits)


def _native(service: KTService, request: bytes, most: int) -> bytes:
    buf = bytearray(request)
    small = service.bin_small(buf, most)
    if small is not None:
        assert small[1] == len(request)
        return small[0]
    magic, flags, rnum = kb._HEAD.unpack_from(request, 0)
    batch, end, failure = native.parse(buf, 9, magic, rnum)
    assert failure is None and end == len(request) and len(batch) == rnum
    if magic == kb.MAGIC_GET_BULK:
        if most == 0:  # the whole reply, head included
            return service.bin_get_bulk_batch(batch, True)[1]
        hits, body = service.bin_get_bulk_batch(batch)
        return kb.encode_count_reply(magic, hits) + body
    apply = service.bin_set_bulk_batch if magic == kb.MAGIC_SET_BULK else service.bin_remove_bulk_batch
    hits = apply(batch)
    return b"" if flags & kb.FLAG_NO_REPLY else kb.encode_count_reply(magic, hits)


def _contents(service: KTService) -> list:
    """Every live record, raw (xt header included); expired ones are left out, as which of
    them the incremental expirer has purged depends on how its steps were scored."""
    now = int(time.time())
    return [[(k, v) for k, v in _raw(db) if db.persistent or int.from_bytes(v[:5], "big") >= now]
            for db in service.dbs]


# capacity limits: writes go the Python way (evictions follow each record), gets stay in C
CAPPED_SPECS = ["*#ktcapcnt=40", "*#ktopts=p#ktcapsiz=2048", "%#ktcapcnt=25"]


@pytest.mark.parametrize("specs", [SPECS, CAPPED_SPECS], ids=["plain", "capped"])
@pytest.mark.parametrize("seed", range(12))
def test_native_bulk_path_answers_and_stores_like_python(
        seed: int, specs: list, monkeypatch: pytest.MonkeyPatch) -> None:
    frozen = float(int(time.time()))  # both services see one clock second: same stored xt
    monkeypatch.setattr(time, "time", lambda: frozen)
    rng = random.Random(seed)
    pure, fast = KTService(specs), KTService(specs)
    assert all(db.native == (specs is SPECS) and db.native_reads for db in fast.dbs)
    try:
        for step in range(120):
            request = _request(rng)
            most = rng.choice([0, 64])  # 0: serve_small declines, the batch path runs
            assert _native(fast, request, most) == _pure(pure, request), (seed, step)
        assert _contents(fast) == _contents(pure)
        assert fast._counts == pure._counts
        for a, b in zip(fast.dbs, pure.dbs):
            assert (a._xtrecs, a._nul_keys) == (b._xtrecs, b._nul_keys)
    finally:
        pure.close()
        fast.close()


@pytest.mark.parametrize("seed", range(20))
def test_parse_matches_parse_records_on_cut_and_oversized_buffers(seed: int) -> None:
    rng = random.Random(1000 + seed)
    request = _request(rng)
    magic, _, rnum = kb._HEAD.unpack_from(request, 0)
    body = bytearray(request)
    if rng.random() < 0.3:  # a record announcing more than DATA_MAX_SIZE
        at = len(body)
        body += (b"\x00\x00" + (kb.DATA_MAX_SIZE + 1).to_bytes(4, "big") + b"\x00" * 12)
        rnum += 1
        assert at < len(body)
    for cut in sorted({9, len(body), *(rng.randrange(9, len(body) + 1) for _ in range(8))}):
        part = bytearray(body[:cut])
        for want in (rnum, max(1, rnum // 2)):
            records, end, failure = kb.parse_records(part, 9, magic, want)
            batch, nend, nfailure = native.parse(part, 9, magic, want)
            assert (batch.records(), nend, nfailure) == (records, end, failure)
            assert batch.magic == magic and len(batch) == len(records)


def test_set_flags_are_noted_before_the_small_path_takes_over() -> None:
    service = KTService(["*"])
    try:
        db = service.dbs[0]
        assert not db._xtrecs and not db._nul_keys
        # the first expiring record / NUL key is left to the general path, which notes it
        assert service.bin_small(bytearray(kb.encode_set_bulk([(0, b"a", b"1", 60)])), 64) is None
        assert service.bin_small(bytearray(kb.encode_set_bulk([(0, b"a\0b", b"1", NEVER)])), 64) is None
        request = bytearray(kb.encode_set_bulk([(0, b"a\0b", b"1", 60)]))
        batch, _, _ = native.parse(request, 9, kb.MAGIC_SET_BULK, 1)
        assert service.bin_set_bulk_batch(batch) == 1
        assert db._xtrecs and db._nul_keys
        reply, _ = service.bin_small(bytearray(kb.encode_set_bulk([(0, b"c\0", b"2", 60)])), 64)
        assert reply == kb.encode_set_bulk_reply(1)
        assert db.get(b"a\0b")[0] == b"1" and db.get(b"c\0")[0] == b"2"
    finally:
        service.close()


def test_engine_failure_on_a_read_only_database_raises_after_counting(tmp_path) -> None:
    path = str(tmp_path / "ro.kch")
    KTService([path]).close()
    ro = KTService([path], readonly=True)
    try:
        with pytest.raises(kc.KCError) as err:
            ro.bin_small(bytearray(kb.encode_set_bulk([(0, b"k", b"v", NEVER)])), 64)
        assert err.value.end == 9 + 18 + 2
        batch, _, _ = native.parse(bytearray(kb.encode_set_bulk([(0, b"k", b"v", NEVER)] * 3)), 9,
                                   kb.MAGIC_SET_BULK, 3)
        with pytest.raises(kc.KCError) as err:
            ro.bin_set_bulk_batch(batch)
        assert err.value.applied == 0
        assert ro._counts[:2] == [2, 2]
    finally:
        ro.close()


@pytest.mark.parametrize("seed", range(4))
def test_native_expiry_sweep_purges_like_python(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    frozen = float(int(time.time()))
    monkeypatch.setattr(time, "time", lambda: frozen)
    rng = random.Random(seed)
    xts = [NEVER, 60, -1, -int(frozen) - 9]
    records = [(b"k%04d" % i, rng.randbytes(rng.randrange(0, 9)), rng.choice(xts)) for i in range(600)]
    pure, fast = TimedDB("*"), TimedDB("*")
    pure.native = False  # the Python visitor path
    try:
        for db in (pure, fast):
            db.set_many(records)
            db.db.set(b"short", b"abc")  # shorter than the xt header: never purged
        for step in (1, 7, 100, 600):
            pure._expire_steps(step)
            fast._expire_steps(step)
            assert _raw(fast) == _raw(pure)
            assert fast._xsc == pure._xsc
        pure.vacuum()
        fast.vacuum()
        assert _raw(fast) == _raw(pure)
        assert all(int.from_bytes(v[:5], "big") >= frozen for k, v in _raw(fast) if k != b"short")
    finally:
        pure.close()
        fast.close()


def _raw(db: TimedDB) -> list:
    cur = db.db.cursor()
    rows = []
    if cur.jump():
        while True:
            rec = cur.get(True)
            if rec is None:
                break
            rows.append(rec)
    cur.close()
    return sorted(rows)


@pytest.mark.parametrize("seed", range(3))
def test_databases_with_an_update_log_log_a_native_batch_like_python(
        seed: int, tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A native batch's visitors queue its log records in C (``LogQueue``); the log must hold
    the very messages the record-by-record Python path writes, in order, with rising
    timestamps, across file rotations (a small ``ulog_limit``)."""
    frozen = float(int(time.time()))
    monkeypatch.setattr(time, "time", lambda: frozen)
    rng = random.Random(50 + seed)
    limit = rng.choice([0, 3000])
    pure = KTService(SPECS, ulog_dir=str(tmp_path / "pure"), ulog_limit=limit, sid=7)
    fast = KTService(SPECS, ulog_dir=str(tmp_path / "fast"), ulog_limit=limit, sid=7)
    for db in pure.dbs:  # the pure side logs record by record through the update trigger
        db.native = False
        db.native_log = None
    # The expirer's sweeps run after every record on the Python path but after a whole batch
    # on the native one, so their UREMOVEs interleave differently: here they run only when
    # asked (vacuum), comparing the C sweep with the Python one.
    for db in pure.dbs + fast.dbs:
        db._expire = lambda score: None
    try:
        assert all(db.native and db.native_log is not None for db in fast.dbs)
        for step in range(60):
            request = _request(rng)
            assert _native(fast, request, rng.choice([0, 64])) == _pure(pure, request), (seed, step)
            if step % 20 == 19:  # a sweep purging expired records logs their UREMOVEs
                frozen += 7300
                for a, b in zip(fast.dbs, pure.dbs):
                    steps = rng.choice([0, 50])
                    a.vacuum(steps)
                    b.vacuum(steps)
        assert _contents(fast) == _contents(pure)
        assert fast._counts == pure._counts
        logged = [_logged(svc) for svc in (fast, pure)]
        assert logged[0] == logged[1] and logged[0]
        stamps = [ts for ts, _ in logged[0]]
        assert stamps == sorted(set(stamps))
        files = [len(svc.ulog.list_files()) for svc in (fast, pure)]
        assert files[0] == files[1] and (files[0] > 1) == (limit > 0)
    finally:
        pure.close()
        fast.close()


def _logged(service: KTService) -> list:
    service.ulog.synchronize()
    reader = service.ulog_reader(0, 99)
    try:
        return list(iter(reader.read, None))
    finally:
        reader.close()


@pytest.mark.parametrize("seed", range(3))
def test_log_queue_stamps_and_cuts_like_its_python_twin(
        seed: int, tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``LogQueue`` (C) and ``PendingLog`` (Python): the same records, timestamps and cuts."""
    from kt.server.timeddb import UREMOVE, USET
    from kt.server.ulog import PendingLog

    rng = random.Random(70 + seed)
    now = [float(int(time.time()))]
    monkeypatch.setattr(time, "time", lambda: now[0])
    queues = [native.LogQueue(), PendingLog()]
    for queue in queues:
        queue.tswall = int(now[0] * 1000) + 3  # a log whose meta ts is ahead of the clock
    for _ in range(40):
        op = rng.choice([USET, UREMOVE])
        key = rng.randbytes(rng.choice([0, 3, 200]))
        stored = rng.randbytes(rng.choice([0, 5, 130, 20000])) if op == USET else None
        prefix = rng.randrange(1 << 32)
        room = rng.choice([1, 40, 500, 1 << 40])
        clock, take = rng.random() < 0.5, rng.random() < 0.6
        results = []
        for queue in queues:
            with queue:
                queue.push(op, key, stored, prefix)
                out = [queue.clock()] if clock else []
                out.append(queue.take(room) if take else queue.pending())
            results.append(out)
        now[0] += rng.choice([0, 0, 0.004])
        assert results[0] == results[1]
    for queue in queues:
        with queue:
            queue.push(USET, b"k", b"v" * 50, 9)
            queue.push(UREMOVE, b"k", None, 9)
            results.append(queue.take(1 << 40))
    assert results[-2] == results[-1]
    files = []
    for queue in queues:  # write_out: the records that fit, then the meta header
        with queue:
            for i in range(5):
                queue.push(USET, b"k%d" % i, b"v" * 40, 3)
        path = tmp_path / f"{type(queue).__name__}.ulog"
        path.write_bytes(b"\0" * 17)
        fd = os.open(path, os.O_RDWR)
        try:
            with queue:
                ends = [queue.write_out(fd, 17, 150, 0), queue.write_out(fd, 140, 1 << 40, 5)]
        finally:
            os.close(fd)
        files.append((ends, path.read_bytes()))
    assert files[0] == files[1] and files[0][0][0][0] == 17 + 3 * 63  # 3 start below 150
    with pytest.raises(ValueError):
        queues[0].push(0xA5, b"k")
