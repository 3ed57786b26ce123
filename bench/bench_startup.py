"""Start-up time: ``import kt``, ``import kt.cli.main``, ``kt --help`` and one ``kt get``.

    .venv/bin/python bench/bench_startup.py                       # this checkout's src/
    .venv/bin/python bench/bench_startup.py --rounds 25
    .venv/bin/python bench/bench_startup.py --src before=/tmp/old/src --src after=src

A script that runs ``kt get KEY`` in a loop pays the interpreter's start and kt's imports on
every call, so this is what they cost.  Each case is a fresh ``python`` process; cases (and
source trees, when several ``--src`` are given) are interleaved round by round so a load
change on a shared machine hits all of them alike.  Reported: best wall time and best CPU
(user + sys of the child, from ``wait4``) over the rounds; ``python -c pass`` is the floor.
``kt get`` reads a 100-byte value from a bundled KT server with ``--kt`` (no detection probe).
Bytecode is cached in a temporary ``PYTHONPYCACHEPREFIX`` (as after ``pip install``), even
when ``PYTHONDONTWRITEBYTECODE`` is set: otherwise every run would recompile kt's sources and
the figures would measure the compiler.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Sequence, Tuple

from _common import bundled_server, print_table

_HERE = os.path.dirname(os.path.abspath(__file__))
_SRC = os.path.join(os.path.dirname(_HERE), "src")


def cases(port: int) -> Dict[str, List[str]]:
    py = [sys.executable]
    # What the ``kt`` console script runs (``python -m kt.cli`` would add runpy's imports).
    script = [*py, "-c", "import sys; from kt.cli import main; sys.argv[0] = 'kt'; sys.exit(main())"]
    return {
        "python -c pass (floor)": [*py, "-c", "pass"],
        "import kt": [*py, "-c", "import kt"],
        "import kt.cli.main": [*py, "-c", "import kt.cli.main"],
        "kt --help": [*script, "--help"],
        "kt get KEY": [*script, "-p", str(port), "--kt", "get", "startup-key"],
    }


def run_once(argv: Sequence[str], env: Dict[str, str]) -> Tuple[float, float]:
    """Wall seconds and child CPU seconds (user + sys) of one run; it must exit 0."""
    started = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read() if proc.stderr else b""
    if proc.stderr:
        proc.stderr.close()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited {proc.returncode}: {err.decode(errors='replace')}")
    return wall, usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5 if os.environ.get("KT_BENCH_QUICK") else 15)
    parser.add_argument(
        "--src",
        action="append",
        metavar="NAME=PATH",
        help="a source tree (repeatable); default src/",
    )
    args = parser.parse_args()
    trees = dict(s.split("=", 1) for s in args.src) if args.src else {"src": _SRC}
    pycache = tempfile.TemporaryDirectory(prefix="kt-bench-pyc-")
    base = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    envs = {
        name: dict(base, PYTHONPATH=os.path.abspath(path), PYTHONPYCACHEPREFIX=pycache.name)
        for name, path in trees.items()
    }
    with pycache, bundled_server("kt") as server:
        from kt import KT_NONE

        client = server.make_client(serializer=KT_NONE)
        client.set(b"startup-key", bytes(range(100)))
        client.close()
        runs = cases(server.port)
        walls: Dict[Tuple[str, str], List[float]] = {}
        cpus: Dict[Tuple[str, str], List[float]] = {}
        for env in envs.values():  # warm the bytecode caches and the page cache
            for argv in runs.values():
                run_once(argv, env)
        for _ in range(args.rounds):
            for case, argv in runs.items():
                for name, env in envs.items():
                    wall, cpu = run_once(argv, env)
                    walls.setdefault((case, name), []).append(wall)
                    cpus.setdefault((case, name), []).append(cpu)
    first = next(iter(trees))
    headers = ["case", "tree", "best wall ms", "best CPU ms", "median wall ms"]
    if len(trees) > 1:
        headers.append(f"wall ÷ {first}")
    rows = []
    for case in runs:
        for name in trees:
            w = sorted(walls[case, name])
            row = [
                case,
                name,
                f"{w[0] * 1e3:.1f}",
                f"{min(cpus[case, name]) * 1e3:.1f}",
                f"{w[len(w) // 2] * 1e3:.1f}",
            ]
            if len(trees) > 1:
                row.append(f"{w[0] / min(walls[case, first]):.2f}")
            rows.append(row)
    print_table(headers, rows, title=f"Start-up time (best of {args.rounds} interleaved rounds)")


if __name__ == "__main__":
    main()
