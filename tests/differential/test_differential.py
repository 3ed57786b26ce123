"""Seeded random request sequences, real server vs bundled server, replies compared byte for byte.

Skips without ``KTSERVER``/``TTSERVER``.  ``DIFF_SEQUENCES`` (default 150) sets how many
sequences run per protocol and ``DIFF_SEED`` the first seed; a difference fails the test with
the shrunk reproducer (requests and both replies).
"""

from __future__ import annotations

import os

import pytest
from harness import KT, KT_SCRIPT, TT, TT_SCRIPT, describe, first_difference, sequence, shrink

from fidelity import start_kt, start_tt

COUNT = int(os.environ.get("DIFF_SEQUENCES", "150"))
SEED = int(os.environ.get("DIFF_SEED", "1"))


def _run(proto, real, bundled) -> None:
    for seed in range(SEED, SEED + COUNT):
        steps = sequence(proto, seed)
        if first_difference(proto, real, bundled, steps) is not None:
            small = shrink(proto, real, bundled, steps)
            pytest.fail(f"seed {seed}: difference after {len(small)} steps:\n"
                        + describe(proto, real, bundled, small))


def test_kt_differential(tmp_path):
    script = tmp_path / "diff.lua"
    script.write_text(KT_SCRIPT)
    args = ["-scr", str(script)]
    with start_kt("real", ("*", "%"), args) as real, start_kt("bundled", ("*", "%"), args) as bundled:
        _run(KT, (real.host, real.port), (bundled.host, bundled.port))


def test_tt_differential(tmp_path):
    script = tmp_path / "diff_tt.lua"
    script.write_text(TT_SCRIPT)
    args = ["-ext", str(script)]
    with start_tt("real", "*", args) as real, start_tt("bundled", "*", args) as bundled:
        _run(TT, (real.host, real.port), (bundled.host, bundled.port))
