"""kt._speedups.kt_server_http against its pure-Python twins in kt.protocol.fast_rpc."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kt.protocol import fast_rpc, kt_rpc

native = fast_rpc.native
pytestmark = pytest.mark.skipif(native is None, reason="kt_server_http not built, or KT_PURE_PYTHON set")

_DATE = re.compile(rb"\r\nDate: [^\r]*\r\n")
strings = st.binary(max_size=300) | st.sampled_from([b"", b"value", b"a b", b"%~*'()", b"\x7f", b"x" * 255])


@settings(max_examples=1000, deadline=None)
@given(st.sampled_from([200, 400, 450, 500]), st.dictionaries(strings, strings, max_size=5), st.booleans())
def test_rpc_response_matches_the_twin(code, output, keep):
    undated = _DATE.sub(b"", fast_rpc.rpc_response(code, output, keep))  # the second may turn between
    assert undated == _DATE.sub(b"", fast_rpc._rpc_response(code, output, keep))
    reply = native.rpc_response(fast_rpc._status_head(code), b"DATE", fast_rpc._KEEP_LINES[keep], output,
                                fast_rpc._TYPE_LINE_TUPLE)
    if max(map(len, [*output, *output.values()]), default=0) > 255:
        assert reply is None  # the twin decides (checkmapenc's per-string cut)
    else:
        assert reply is not None


def test_rpc_response_leaves_non_bytes_to_the_twin():
    assert native.rpc_response(b"", b"", b"", {b"a": bytearray(b"b")}, fast_rpc._TYPE_LINE_TUPLE) is None


@settings(max_examples=1000, deadline=None)
@given(st.lists(st.sampled_from([b"\t", b"\n", b"\r", b"a", b"key", b"\x00", b"\t\t"]), max_size=12)
       | st.binary(max_size=60))
def test_tsv_params_matches_the_twin(parts):
    body = b"".join(parts) if isinstance(parts, list) else parts
    got = native.tsv_params(body)
    if b"\r" in body:
        assert got is None
    else:
        assert got == fast_rpc._tsv_params(body) == kt_rpc.tsv_to_map(body)
        assert list(got) == list(kt_rpc.tsv_to_map(body))
