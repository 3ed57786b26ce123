"""ktserver's corners over RPC/REST, bundled == real (issues 10 and 9.6).

Each test runs against the bundled server always and against ``$KTSERVER`` when it is set;
the expected answers are ktserver 0.9.56's.  Every test uses its own keys on a shared server.
"""

from __future__ import annotations

import pytest

from fidelity import FLAVOURS, KTWire, served, start_kt

LOGIC = (450, {b"ERROR": b"DB: 8: logical inconsistency: logical inconsistency"})
INT64MAX = (1 << 63) - 1
INT64MIN = -(1 << 63)


@pytest.fixture(scope="module", params=FLAVOURS)
def kt(request):
    yield from served(start_kt(request.param))


@pytest.fixture
def wire(kt):
    w = KTWire(kt)
    yield w
    w.close()


def _num(n: int):
    return (200, {b"num": str(n).encode()})


def test_increment_to_int64_min_is_a_logical_inconsistency(wire):
    # Kyoto Cabinet's increment returns INT64MIN for failure, so a result of INT64MIN fails
    # (after the visitor stored it).
    assert wire.rpc("increment", key="i1", num=INT64MAX) == _num(INT64MAX)
    assert wire.rpc("increment", key="i1", num=1) == LOGIC
    assert wire.rpc("get", key="i1") == (200, {b"value": b"\x80" + b"\x00" * 7})
    assert wire.rpc("increment", key="i1", num=0) == LOGIC
    assert wire.rpc("increment", key="i2", num=INT64MIN) == LOGIC
    assert wire.rpc("increment", key="i3", num=5) == _num(5)
    assert wire.rpc("increment", key="i3", num=INT64MIN) == _num(INT64MIN + 5)
    assert wire.rpc("increment", key="i4", num=-1, orig=INT64MIN + 1) == LOGIC


@pytest.mark.parametrize(
    "orig, missing, present",
    [
        # (orig, answer on a missing key, answer after that on the key holding 7)
        (None, _num(3), _num(10)),
        ("try", LOGIC, _num(10)),
        ("set", _num(3), _num(3)),
        ("num", _num(3), _num(10)),  # not a mode: atoi("num") == 0
        ("100", _num(103), _num(10)),
        ("-5", _num(-2), _num(10)),
    ],
)
def test_increment_orig_modes(wire, orig, missing, present):
    extra = {} if orig is None else {"orig": orig}
    key = f"orig-{orig}"
    wire.rpc("remove", key=key)
    assert wire.rpc("increment", key=key, num=3, **extra) == missing
    wire.rpc("increment", key=key, num=7, orig="set")
    assert wire.rpc("increment", key=key, num=3, **extra) == present
    # num=0 reads without writing, except in "set" mode
    assert wire.rpc("increment", key=key, num=0, **extra) == (_num(0) if orig == "set" else present)


def test_increment_of_a_value_that_is_not_eight_bytes(wire):
    wire.rpc("set", key="i8", value="abc")
    assert wire.rpc("increment", key="i8", num=1) == LOGIC
    assert wire.rpc("increment", key="i8", num=1, orig="set") == LOGIC
    assert wire.rpc("get", key="i8") == (200, {b"value": b"abc"})
