"""Command line: ``python tests/differential/run.py kt|tt|tt+ COUNT [SEED]``.

Runs COUNT sequences against ``$KTSERVER``/``$TTSERVER`` and a bundled server, keeps going after a
difference and prints one shrunk reproducer per distinct first differing request kind, then
the totals (sequences run, sequences that differed).
"""

from __future__ import annotations

import base64
import os
import re
import struct
import sys
import tempfile

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [_HERE, os.path.dirname(_HERE)]

from harness import KT, KT_SCRIPT, TT, TT_SCRIPT, describe, first_difference, sequence, shrink  # noqa: E402

from fidelity import start_kt, start_tt  # noqa: E402


def _kind(request: bytes) -> bytes:
    code = re.search(rb"X2NvZGU=\t([A-Za-z0-9+/=]+)", request)  # the Lua expression of "run"
    if code:
        return b"lua " + base64.b64decode(code.group(1)).split(b"(", 1)[0]
    if request[:2] == b"\xc8\x68" and len(request) >= 18:  # TT ext: the Lua expression of "run"
        nsiz, _, ksiz = struct.unpack_from(">iii", request, 2)
        return b"lua " + request[18 + nsiz:18 + nsiz + ksiz].split(b"(", 1)[0]
    m = re.match(rb"(?:POST|GET) /rpc/(\w+)", request)
    if m:
        return m.group(1)
    m = re.match(rb"(GET|HEAD|PUT|DELETE) ", request)
    if m:
        return b"REST " + m.group(1)
    return request[:2]


def main() -> int:
    which, count = sys.argv[1], int(sys.argv[2])
    first = int(sys.argv[3]) if len(sys.argv) > 3 else 1
    if which == "kt":
        script = os.path.join(tempfile.mkdtemp(), "diff.lua")
        with open(script, "w") as fh:
            fh.write(KT_SCRIPT)
        args = ["-scr", script]
        real, bundled, proto = start_kt("real", ("*", "%"), args), start_kt("bundled", ("*", "%"), args), KT
    else:  # "tt" (on-memory hash) or "tt+" (on-memory B+ tree: range/putdup misc functions)
        db = "+" if which == "tt+" else "*"
        script = os.path.join(tempfile.mkdtemp(), "diff_tt.lua")
        with open(script, "w") as fh:
            fh.write(TT_SCRIPT)
        args = ["-ext", script]
        real, bundled, proto = start_tt("real", db, args), start_tt("bundled", db, args), TT
    a, b = (real.host, real.port), (bundled.host, bundled.port)
    seen, differing = set(), 0
    try:
        for seed in range(first, first + count):
            steps = sequence(proto, seed)
            i = first_difference(proto, a, b, steps)
            if i is None:
                continue
            differing += 1
            kind = _kind(steps[i])
            if kind in seen:
                continue
            seen.add(kind)
            small = shrink(proto, a, b, steps)
            report = describe(proto, a, b, small)
            print(f"== seed {seed}: {kind!r} ({len(small)} steps)\n{report}\n", flush=True)
    finally:
        real.stop()
        bundled.stop()
    print(f"{which}: {count} sequences, {differing} differed, {len(seen)} distinct kinds")
    return 1 if differing else 0


if __name__ == "__main__":
    sys.exit(main())
