"""The pure-Python fallback of every compiled speed-up (``kt._speedups``), end to end.

The rest of the suite runs with the speed-ups when they are built.  Here the byte-exact
vector replays and the codec tests run again in a child pytest with ``KT_PURE_PYTHON=1``,
which the bundled servers it starts inherit, so both paths answer every recorded exchange.
Unit tests comparing each compiled function with its Python twin live in test_speedups*.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from kt import _native

TESTS = Path(__file__).parent
PURE_PYTHON_MODULES = [
    "test_kt_codec_vectors.py",
    "test_tt_codec_vectors.py",
    "test_kt_server_vectors.py",
    "test_tt_server_vectors.py",
    "test_kt_codec_properties.py",  # the client codecs' pure-Python twins (kt_binary, tt_binary)
    "test_tt_codec_properties.py",
    "test_speedups_aio.py",  # kt.aio's reply loop: the pure-Python twin alone
    "test_kt_server_fast_rpc.py",  # the KT server's fast RPC path: fast_rpc's pure-Python twins
]


def test_speedups_can_be_turned_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(_native.PURE_PYTHON_ENV, "1")
    assert not _native.enabled()
    assert _native.load("anything") is None
    monkeypatch.setenv(_native.PURE_PYTHON_ENV, "0")
    assert _native.enabled()
    assert _native.load("no_such_speedup") is None


@pytest.mark.skipif(bool(os.environ.get(_native.PURE_PYTHON_ENV, "") not in ("", "0")),
                    reason="the whole run is already pure Python")
def test_vectors_and_codecs_pass_in_pure_python() -> None:
    env = dict(os.environ, **{_native.PURE_PYTHON_ENV: "1"})
    modules = [str(TESTS / name) for name in PURE_PYTHON_MODULES]
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *modules],
        env=env, capture_output=True, text=True, timeout=900,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
