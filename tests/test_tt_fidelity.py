"""ttserver's corners, bundled == real (issue 10): the answer of ttserver 1.1.41 written here.

Each test runs against the bundled server always and against ``$TTSERVER`` when it is set.
Requests are sent as raw bytes so that the replies are compared byte for byte.
"""

from __future__ import annotations

import pytest

from fidelity import FLAVOURS, start_tt, tt_exchange
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
