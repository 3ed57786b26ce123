"""Long ``kt export`` checks, marked slow (run them with ``pytest -m slow``).

The 100k-record round trip is in the default suite (tests/test_cli.py);
bench/bench_cli_transfer.py times ``kt export | kt import`` on 1M records.
"""

from __future__ import annotations

import datetime
import os
import subprocess
import sys
import threading
import time

import pytest

from kt import KT_NONE

pytestmark = pytest.mark.slow

SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")


def _fill(db, count: int, now: int) -> None:
    """Binary keys and values; a third never expire, the others at two different times."""
    for start in range(0, count, 10000):
        data = {}
        for i in range(start, min(start + 10000, count)):
            data[b"k%08d" % i + bytes([i % 256])] = bytes((i * 13 + j) % 256 for j in range(i % 64))
        group = (start // 10000) % 3
        when = (
            None if group == 0 else datetime.datetime.fromtimestamp(now + 3600 * group, datetime.timezone.utc)
        )
        db.set_bulk(data, db=1, expire_time=when)


def _peak_rss_mb(args, env) -> float:
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    peak = [0]

    def watch() -> None:
        while proc.poll() is None:
            try:
                with open(f"/proc/{proc.pid}/status") as f:
                    for line in f:
                        if line.startswith("VmHWM:"):
                            peak[0] = max(peak[0], int(line.split()[1]))
            except OSError:
                pass
            time.sleep(0.05)

    watcher = threading.Thread(target=watch)
    watcher.start()
    err = proc.stderr.read()
    assert proc.wait() == 0, err
    watcher.join()
    return peak[0] / 1024


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs /proc")
def test_export_memory_stays_flat(kt_server):
    db = kt_server.client(serializer=KT_NONE, decode_keys=False)
    db.clear(db=1)
    env = dict(os.environ, PYTHONPATH=SRC)
    args = [sys.executable, "-m", "kt.cli", "-p", str(kt_server.port), "--kt", "--db", "1", "export", "-"]
    _fill(db, 10_000, int(time.time()))
    small = _peak_rss_mb(args, env)
    _fill(db, 200_000, int(time.time()))
    large = _peak_rss_mb(args, env)
    db.clear(db=1)
    assert large < small + 10, f"peak RSS {small:.1f} MB for 10k records, {large:.1f} MB for 200k"
