"""Run every benchmark script in bench/ and print their tables: one command for all.

    .venv/bin/python bench/run_all.py            # every bench/bench_*.py, full length
    .venv/bin/python bench/run_all.py --quick    # short smoke run (KT_BENCH_QUICK=1)
    .venv/bin/python bench/run_all.py kt tt      # only scripts whose name contains kt or tt
    .venv/bin/python bench/run_all.py --real     # against $KTSERVER / $TTSERVER (KT_BENCH_REAL=1)
    .venv/bin/python bench/run_all.py -o results.md   # also write all output to a file

Each script runs in its own process (one server each, no interference); their output
(markdown tables) is passed through, then a summary of which scripts ran and how long.
"""

from __future__ import annotations

import argparse
import glob
import os
import subprocess
import sys
import time
from typing import List, Optional

HERE = os.path.dirname(os.path.abspath(__file__))


def discover(filters: List[str]) -> List[str]:
    scripts = sorted(glob.glob(os.path.join(HERE, "bench_*.py")))
    if filters:
        scripts = [s for s in scripts if any(f in os.path.basename(s) for f in filters)]
    return scripts


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("filters", nargs="*", help="run only scripts whose file name contains one of these")
    parser.add_argument("--quick", action="store_true", help="short runs (KT_BENCH_QUICK=1)")
    parser.add_argument("--real", action="store_true", help="use $KTSERVER/$TTSERVER (KT_BENCH_REAL=1)")
    parser.add_argument("-o", "--output", help="also write everything printed to this file")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds allowed per script")
    args = parser.parse_args(argv)

    scripts = discover(args.filters)
    if not scripts:
        print("no bench/bench_*.py scripts found" + (f" matching {args.filters}" if args.filters else ""))
        return 1
    env = dict(os.environ)
    if args.quick:
        env["KT_BENCH_QUICK"] = "1"
    if args.real:
        env["KT_BENCH_REAL"] = "1"
    out = open(args.output, "w", encoding="utf-8") if args.output else None

    def emit(text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()
        if out is not None:
            out.write(text)

    summary = []
    for script in scripts:
        name = os.path.basename(script)
        emit(f"\n## {name}\n")
        started = time.monotonic()
        try:
            proc = subprocess.Popen([sys.executable, script], cwd=HERE, env=env, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, text=True)
            assert proc.stdout is not None
            deadline = started + args.timeout
            for line in proc.stdout:
                emit(line)
                if time.monotonic() > deadline:
                    proc.kill()
                    emit(f"(killed after {args.timeout:.0f}s)\n")
                    break
            code = proc.wait()
        except KeyboardInterrupt:
            proc.kill()
            proc.wait()
            raise
        summary.append((name, code, time.monotonic() - started))

    emit("\n## summary\n\n| script | status | seconds |\n|---|---|---:|\n")
    for name, code, seconds in summary:
        emit(f"| {name} | {'ok' if code == 0 else f'FAILED ({code})'} | {seconds:.1f} |\n")
    if out is not None:
        out.close()
    return 0 if all(code == 0 for _, code, _ in summary) else 1


if __name__ == "__main__":
    sys.exit(main())
