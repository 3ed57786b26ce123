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
    yield from served(start_kt(request.param, databases=("*", "%")))


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


MATCH_KEYS = [b"a", b"b", b"\xc3\xa9", b"\xff\xfe", b"z\x00q", b"", b"ab\xe0\x80", b"\x80a"]


@pytest.fixture
def match_db(wire):
    """Database 1 (a B+ tree: cursor order is byte order) holding only MATCH_KEYS."""
    assert wire.rpc("clear", DB=1) == (200, {})
    records = {"_" + k.decode("latin-1"): b"v" for k in MATCH_KEYS}
    pairs = {k.encode("latin-1"): v for k, v in records.items()}
    status, _ = wire.rpc_pairs("set_bulk", [(b"DB", b"1"), *pairs.items()])
    assert status == 200
    return wire


def _ranked(*keys: bytes):
    out = {b"_" + k: str(i).encode() for i, k in enumerate(keys)}
    out[b"num"] = str(len(keys)).encode()
    return (200, out)


@pytest.mark.parametrize(
    "regex, expected",
    [
        # libc regcomp/regexec in the C locale over keys read as C strings (whole keys returned)
        (b"[", (450, {b"ERROR": b"DB: 8: logical inconsistency: compilation failed"})),
        (b"a|(", (450, {b"ERROR": b"DB: 8: logical inconsistency: compilation failed"})),
        (b".", _ranked(b"a", b"ab\xe0\x80", b"b", b"z\x00q", b"\x80a", b"\xc3\xa9", b"\xff\xfe")),
        (b"z\x00", _ranked(b"z\x00q")),  # the pattern ends at its NUL too
        (b"q", _ranked()),  # "z\0q" is "z" to regexec
        (b"^$", _ranked(b"")),
        (b"", _ranked(*sorted(MATCH_KEYS))),
        (b"\\d", _ranked()),  # no Perl classes in POSIX: \d is "d"
        (b"[[:alpha:]]b", _ranked(b"ab\xe0\x80")),
        (b"^[^a-z]", _ranked(b"\x80a", b"\xc3\xa9", b"\xff\xfe")),  # ranks in byte order
    ],
)
def test_match_regex_is_posix_ere_on_c_strings(match_db, regex, expected):
    assert match_db.rpc("match_regex", DB=1, regex=regex) == expected


@pytest.mark.parametrize(
    "params, expected",
    [
        # bytes: memdist over the whole key and origin; ties ordered by key bytes
        ({"origin": b"a", "max": b"-1"}, _ranked(b"a", b"", b"b", b"\x80a")),
        ({"origin": b"z\x00"}, _ranked(b"z\x00q")),
        # utf: Kyoto Cabinet's own UTF-8 reading: 0xFE/0xFF dropped, "\x80a" one overlong
        # (dropped) pair, "ab\xe0\x80" a cut sequence (skipped), NUL a character, and the
        # origin a C string
        ({"origin": b"a", "utf": b""},
         _ranked(b"a", b"", b"ab\xe0\x80", b"b", b"\x80a", b"\xc3\xa9", b"\xff\xfe")),
        ({"origin": b"\xff\xfe", "range": b"2", "utf": b""},
         _ranked(b"", b"\x80a", b"\xff\xfe", b"a", b"b", b"\xc3\xa9", b"ab\xe0\x80")),
        ({"origin": b"z\x00xyz", "utf": b"", "range": b"0"}, _ranked()),
        ({"origin": b"a", "utf": b"", "max": b"2"}, _ranked(b"a", b"")),
    ],
)
def test_match_similar_bytes_and_utf(match_db, params, expected):
    assert match_db.rpc("match_similar", DB=1, **params) == expected


@pytest.mark.parametrize(
    "xt, date",
    [
        (-1099511627774, b"Mon, 20 Feb 36812 00:36:14 GMT"),  # what ktserver answers
        (-253402300800, b"Sat, 01 Jan 10000 00:00:00 GMT"),
        (-4107542400, b"Mon, 01 Mar 2100 00:00:00 GMT"),  # 2100 is not a leap year
    ],
)
def test_rest_get_formats_expiry_dates_of_any_year(wire, xt, date):
    assert wire.rpc("append", key="far", value="v", xt=xt) == (200, {})
    for method in ("GET", "HEAD"):
        status, headers, body = wire.request(method, "/far")
        expected_body = b"v" if method == "GET" else b""
        assert (status, headers.get("X-Kt-Xt"), body) == (200, date.decode(), expected_body)
    assert wire.rpc("remove", key="far") == (200, {})


def test_increment_double_output_is_cut_at_128_bytes(wire):
    # kc::vstrprintf formats %f into 128 bytes and marks a cut with '*' (ktserver's answer)
    status, out = wire.rpc("increment_double", key="huge", num="1e300", orig="set")
    assert status == 200
    assert out == {b"num": b"10000000000000000525047602552044202487044685811081591549158541155118"
                           b"02457988908195786371375080447864043704443832883878176942523*"}


def test_increment_double_stores_c_conversions_of_huge_numbers(wire):
    # (int64_t)1e300 is INT64MIN on x86-64: ktserver stores 0x80 00.. (found by the differential run)
    wire.rpc("remove", key="hugeint")
    status, _ = wire.rpc("increment_double", key="hugeint", num="1e300", orig="1.5")
    assert status == 200
    assert wire.rpc("get", key="hugeint") == (200, {b"value": b"\x80" + b"\x00" * 15})


@pytest.mark.parametrize(
    "num, stored",
    [
        # kc::atof and the fixed-point split run in x87 long double: ktserver's stored bytes
        ("0.000001", "0000000000000000000000003b9ac9ff"),
        ("0.3", "0000000000000000000110d9316ebfff"),
        ("-481.2919713439847555", "fffffffffffffe1ffffef6741fc1d7c6"),
        ("928.187503450910981", "00000000000003a00000aa888c95f093"),
    ],
)
def test_increment_double_parses_and_splits_like_ktserver(wire, num, stored):
    wire.rpc("remove", key="dbl")
    assert wire.rpc("increment_double", key="dbl", num=num)[0] == 200
    status, out = wire.rpc("get", key="dbl")
    assert (status, out[b"value"].hex()) == (200, stored)
