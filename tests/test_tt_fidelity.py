"""ttserver's corners, bundled == real (issue 10): the answer of ttserver 1.1.41 written here.

Each test runs against the bundled server always and against ``$TTSERVER`` when it is set.
Requests are sent as raw bytes so that the replies are compared byte for byte.
"""

from __future__ import annotations

import pytest

from fidelity import FLAVOURS, served, served_with_script, start_tt, tt_exchange
from kt.protocol import tt_binary as tt
from kt.server.tt_lua import lua_available

needs_lua = pytest.mark.skipif(not lua_available(), reason="lupa is not installed")

BROKEN_EXT = r"""
function before(key, value)
  return "yes:" .. key
end
function globals(key, value)
  return type(rawget(_G, "python")) .. "/" .. type(package.loaded["python"])
end
local v = jit.version
function after(key, value)
  return "never"
end
"""


@needs_lua
@pytest.mark.parametrize("flavour", FLAVOURS)
def test_an_extension_failing_while_loading_does_not_stop_the_server(flavour, tmp_path):
    path = tmp_path / "broken.lua"
    path.write_text(BROKEN_EXT)
    with start_tt(flavour, args=["-ext", str(path)]) as server:
        # ttserver logs "Lua error: ..." and serves what the chunk defined before failing
        reply = tt_exchange(server, tt.encode_ext(b"before", b"k", b"v"))
        assert reply == (b"\x00\x00\x00\x00\x05yes:k", False)
        assert tt_exchange(server, tt.encode_ext(b"after", b"k", b"v")) == (b"\x01", False)
        # and a script sees no Python bridge
        assert tt_exchange(server, tt.encode_ext(b"globals")) == (b"\x00\x00\x00\x00\x07nil/nil", False)


@pytest.fixture(scope="module", params=FLAVOURS)
def tt_fresh(request):
    """A server of its own: the stat counters below start at zero."""
    yield from served(start_tt(request.param))


def _i32(*numbers: int) -> bytes:
    return b"".join(n.to_bytes(4, "big", signed=True) for n in numbers)


def test_invalid_header_fields_then_buffered_requests_are_served(tt_fresh):
    # ttserver reads putshl's header, sees the negative width and gives up without a reply;
    # the key/value bytes still buffered are read as the next (text) request, an unknown
    # line, and the get after it is answered: the connection stays open.
    request = b"\xc8\x13" + _i32(1, 1, -1) + b"kv\r\n" + tt.encode_get(b"absent")
    assert tt_exchange(tt_fresh, request) == (b"\x01", False)
    # with nothing buffered after the header, the connection ends
    assert tt_exchange(tt_fresh, b"\xc8\x13" + _i32(1, 1, -1)) == (b"", True)
    assert tt_exchange(tt_fresh, b"\xc8\x10" + _i32(-1, 1)) == (b"", True)
    assert tt_exchange(tt_fresh, b"\xc8\xff" + tt.encode_get(b"absent")) == (b"\x01", False)


def test_mget_and_misc_stop_at_a_negative_item_size(tt_fresh):
    assert tt_exchange(tt_fresh, tt.encode_put(b"m1", b"one")) == (b"\x00", False)
    # do_mget breaks out of its key loop and answers with the keys read so far
    request = b"\xc8\x31" + _i32(3, 2) + b"m1" + _i32(-1)
    assert tt_exchange(tt_fresh, request) == (b"\x00" + _i32(1, 2, 3) + b"m1one", False)
    request = b"\xc8\x90" + _i32(3, 0, 2) + b"get" + _i32(2) + b"m1" + _i32(-7)
    assert tt_exchange(tt_fresh, request) == (b"\x00" + _i32(1, 3) + b"one", False)


def test_stat_counts_what_ttserver_counts(tt_fresh):
    # counters are compared before and after, so other tests on this server do not matter
    def stat():
        reply, _ = tt_exchange(tt_fresh, tt.encode_stat())
        fields = dict(line.split("\t", 1) for line in reply[5:].decode().split("\n") if line)
        return {k: int(v) for k, v in fields.items() if k.startswith("cnt_")}

    before = stat()
    steps = [
        b"\xc8\x10" + _i32(-1, 0),  # put: counted, then dropped
        b"\xc8\x20" + _i32(-1),  # out
        b"\xc8\x60" + _i32(-1, 5),  # addint
        b"\xc8\x61" + _i32(-1) + b"\x00" * 16,  # adddouble
        b"\xc8\x30" + _i32(-1),  # get
        b"\xc8\x31" + _i32(-1),  # mget
        b"\xc8\x90" + _i32(-1, 0, 0),  # misc
        b"\xc8\x68" + _i32(-1, 0, 0, 0),  # ext
        tt.encode_out(b"absent"),  # out miss
        tt.encode_addint(b"absent-int", 1),
        tt.encode_misc(b"out", [b"absent"]),  # misc counts misc only
        tt.encode_misc(b"nosuchfunction", []),
        tt.encode_mget([b"absent", b"absent2"]),  # no get misses for mget
    ]
    for step in steps:
        tt_exchange(tt_fresh, step, idle=0.2)
    after = stat()
    delta = {k: after[k] - before[k] for k in after if after[k] != before[k]}
    assert delta == {
        "cnt_put": 1, "cnt_out": 2, "cnt_out_miss": 1, "cnt_addint": 2, "cnt_adddouble": 1,
        "cnt_get": 1, "cnt_mget": 2, "cnt_misc": 3, "cnt_ext": 1, "cnt_stat": 1,
    }


RUN_EXT = r"""
function run(key, value)
  local r = {pcall(assert(loadstring("return " .. key)))}
  if not r[1] then return "error" end
  local v = r[2]
  if type(v) == "table" then
    local parts = {}
    for i = 1, #v do parts[i] = tostring(v[i]) end
    v = "{" .. table.concat(parts, ",") .. "}"
  end
  return "ok:" .. tostring(v)
end
"""


@pytest.fixture(scope="module", params=FLAVOURS)
def tt_run(request, tmp_path_factory):
    yield from served_with_script(start_tt, request.param, tmp_path_factory.mktemp("ext"), "run.lua", RUN_EXT)


@needs_lua
@pytest.mark.parametrize(
    "code, expected",
    [
        # ttserver's helpers read C strings and convert numbers like C on x86-64
        ('_split("\\0x\\0", ",")', b"ok:{}"),
        ('_split("a,b", ",")', b"ok:{a,b}"),
        ('_strstr("abc", "", "X")', b"ok:abc"),
        ('_strstr("aXbX", "X", "--")', b"ok:a--b--"),
        ('_ucs("\\0x")', b"ok:{}"),
        ('_ucs("\\195\\169\\255a")', b"ok:{233,97}"),
        ('_dist("ab\\0zz", "ab")', b"ok:0"),
        ('_bit("left", 7, -2.5)', b"ok:3221225472"),
        ('_bit("or", 4294967296, 1/0)', b"ok:0"),
        ('_addint("tt-run-int", 1e300)', b"ok:nil"),
        ('#_fwmkeys("no-such-prefix", 1/0)', b"ok:0"),
    ],
)
def test_lua_helpers_convert_like_ttserver(tt_run, code, expected):
    reply, closed = tt_exchange(tt_run, tt.encode_ext(b"run", code.encode("latin-1")))
    assert not closed and reply[5:] == expected
