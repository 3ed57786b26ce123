"""``kt export | kt import`` between two servers: wall time, records/s and peak RSS.

    .venv/bin/python bench/bench_cli_transfer.py                 # 100k and 1M records
    .venv/bin/python bench/bench_cli_transfer.py --records 200000
    KT_BENCH_REAL=1 KTSERVER=/path/to/ktserver .venv/bin/python bench/bench_cli_transfer.py

Two bundled KT servers with an in-memory ``*`` database each: the first is filled with
100-byte values (a third of them with an expiry), then ``kt export`` on it is piped into
``kt import`` on the second, both as separate processes with ``--progress`` (their final
progress lines and summaries are printed).  Peak RSS (``VmHWM``) of each process is read from
/proc while it runs: export streams with a cursor, so its RSS must not grow with the database.
"""

from __future__ import annotations

import argparse
import datetime
import os
import subprocess
import sys
import threading
import time
from typing import Dict, List, Tuple

from _common import bundled_server, print_table

_HERE = os.path.dirname(os.path.abspath(__file__))
_SRC = os.path.join(os.path.dirname(_HERE), "src")


def _fill(server, count: int) -> None:
    from kt import KT_NONE

    client = server.make_client(serializer=KT_NONE)
    expires = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=1)
    value = bytes(range(100))
    for start in range(0, count, 10000):
        batch = {b"key%09d" % i: value for i in range(start, min(start + 10000, count))}
        if (start // 10000) % 3 == 2:
            client.set_bulk(batch, expire_time=expires)
        else:
            client.set_bulk(batch)
    client.close()


def _peak_rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _watch(procs: Dict[str, subprocess.Popen], peaks: Dict[str, int], stop: threading.Event) -> None:
    while not stop.is_set():
        for name, proc in procs.items():
            peaks[name] = max(peaks.get(name, 0), _peak_rss_kb(proc.pid))
        stop.wait(0.05)


def transfer(source, target, count: int) -> Tuple[float, Dict[str, int], List[str]]:
    env = dict(os.environ, PYTHONPATH=_SRC + os.pathsep + os.environ.get("PYTHONPATH", ""), COLUMNS="110")
    kt = [sys.executable, "-m", "kt.cli"]
    started = time.perf_counter()
    exporter = subprocess.Popen(
        [*kt, "-p", str(source.port), "--kt", "export", "--progress"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    importer = subprocess.Popen(
        [*kt, "-p", str(target.port), "--kt", "import", "--progress"],
        stdin=exporter.stdout,
        stderr=subprocess.PIPE,
        env=env,
    )
    exporter.stdout.close()
    peaks: Dict[str, int] = {}
    stop = threading.Event()
    watcher = threading.Thread(target=_watch, args=({"export": exporter, "import": importer}, peaks, stop))
    watcher.start()
    errs = [exporter.stderr.read(), importer.stderr.read()]
    exporter.wait()
    importer.wait()
    elapsed = time.perf_counter() - started
    stop.set()
    watcher.join()
    if exporter.returncode or importer.returncode:
        raise SystemExit(f"transfer failed: {errs[0].decode()} {errs[1].decode()}")
    lines = []
    for name, err in zip(("export", "import"), errs):
        text = err.decode("utf-8", "replace").replace("\r", "\n")
        tail = [line for line in text.splitlines() if line.strip()][-2:]
        lines.extend(f"[{name}] {line}" for line in tail)
    return elapsed, peaks, lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, action="append", help="database sizes (default 100k and 1M)")
    args = parser.parse_args()
    sizes = args.records or [100_000, 1_000_000]
    rows = []
    for count in sizes:
        with bundled_server("kt", "*") as source, bundled_server("kt", "*") as target:
            _fill(source, count)
            elapsed, peaks, lines = transfer(source, target, count)
            copied = target.make_client().count()
            print(f"\n{count:,} records:")
            for line in lines:
                print("   ", line)
            rows.append(
                [
                    f"{count:,}",
                    f"{copied:,}",
                    f"{elapsed:.1f}",
                    f"{count / elapsed:,.0f}",
                    f"{peaks.get('export', 0) / 1024:.1f}",
                    f"{peaks.get('import', 0) / 1024:.1f}",
                ]
            )
    print()
    print_table(
        ["records", "copied", "seconds", "records/s", "export peak RSS MB", "import peak RSS MB"],
        rows,
        title=f"kt export | kt import (two {'real' if os.environ.get('KT_BENCH_REAL') == '1' else 'bundled'} "
        "KT servers, in-memory '*' databases, 100-byte values)",
    )


if __name__ == "__main__":
    main()
