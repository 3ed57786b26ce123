"""The record file formats of ``kt export``/``kt import``: every record survives every format."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kt.cli import formats
from kt.cli.formats import Record, RecordError

records = st.builds(
    Record,
    st.binary(max_size=40),
    st.binary(max_size=80),
    st.one_of(st.none(), st.integers(min_value=1, max_value=(1 << 40) - 1)),
)
CODECS = [("tsv", False), ("tsv", True), ("jsonl", False), ("csv", False)]


@pytest.mark.parametrize("fmt, hex_", CODECS)
@settings(max_examples=60, deadline=None)
@given(record=records)
def test_every_record_survives_every_format(fmt, hex_, record):
    encode, decode = formats.codec(fmt, hex_)
    line = encode(record)
    assert line.endswith(b"\n") and line.count(b"\n") == 1  # one record, one line
    line.decode("utf-8")  # always valid UTF-8 text
    assert decode(line[:-1]) == record


def test_plain_text_is_written_as_ktremotemgr_writes_it():
    assert formats.encode_tsv(Record(b"key", "värde".encode())) == "key\tvärde\n".encode()
    assert formats.encode_tsv(Record(b"k", b"a\tb\\\xff", 1700000000)) == b"k\ta\\tb\\\\\\xff\t1700000000\n"
    assert formats.encode_tsv(Record(b"nul", b"a\x00b")) == b"nul\ta\\x00b\n"
    assert formats.encode_tsv_hex(Record(b"k1", b"\x00\xff")) == b"6B 31\t00 FF\n"  # ktremotemgr -px


@pytest.mark.parametrize(
    "line, message",
    [
        (b"a\\qb\tv", "bad escape"),
        (b"a\\x4\tv", "bad escape"),
        (b"a\\\tv", "bad escape"),
        (b"only-a-key", "wrong column count: 1"),
        (b"k\tv\t-5", "not a Unix time after 1970"),
        (b"k\t\xc3\x28", "not valid UTF-8"),
    ],
)
def test_bad_tsv_lines(line, message):
    with pytest.raises(RecordError, match=message):
        formats.decode_tsv(line)


def test_format_from_the_file_name():
    assert [formats.guess_format(n) for n in ("a.TSV", "b.jsonl", "c.csv", "d", None)] == [
        "tsv",
        "jsonl",
        "csv",
        "tsv",
        "tsv",
    ]
    with pytest.raises(ValueError, match="--hex applies to the tsv format only"):
        formats.codec("csv", True)


def _unescape_by_regex(field: bytes):
    """The escape grammar read one escape at a time (what ``unescape``'s fast path must match)."""
    try:
        return formats._UNESCAPE.sub(formats._unescape_one, field)
    except RecordError as exc:
        return str(exc)


@settings(max_examples=500)
@given(st.lists(st.sampled_from([b"\\", b"x", b"4", b"f", b"G", b"t", b"n", b"r", b"q", b"0", b"\xc3\xa9"])))
def test_unescape_reads_valid_and_rejects_bad_escapes_like_the_grammar(pieces):
    field = b"".join(pieces)
    try:
        got = formats.unescape(field)
    except RecordError as exc:
        got = str(exc)
    assert got == _unescape_by_regex(field)
