"""TokyoTyrant under load and with Lua: one shared client, 16 threads of mixed operations with
every value checked; ``script()`` against a server started with ``-ext``."""

from __future__ import annotations

import random
import threading

import pytest

from kt import KT_JSON
from kt.embedded import EmbeddedTokyoTyrantServer
from kt.errors import ScriptError

THREADS = 16
ROUNDS = 60


def worker(db, tid: int, errors: list) -> None:
    rng = random.Random(tid)
    mine = {}
    counter = 0
    try:
        for i in range(ROUNDS):
            key = f"t{tid}:k{i % 10}"
            step = rng.randrange(8)
            if step == 0:
                value = f"v{tid}-{i}-" + "x" * rng.randrange(50)
                assert db.set(key, value) is True
                mine[key] = value
            elif step == 1:
                added = db.add(key, "added")
                assert added is (key not in mine)
                mine.setdefault(key, "added")
            elif step == 2:
                assert db.append(key, "+") is True
                mine[key] = mine.get(key, "") + "+"
            elif step == 3:
                batch = {f"t{tid}:b{i}:{j}": f"{tid}.{i}.{j}" for j in range(rng.randrange(1, 20))}
                assert db.set_bulk(batch) is True
                mine.update(batch)
            elif step == 4:
                batch = {f"t{tid}:nr{i}:{j}": f"nr{j}" for j in range(rng.randrange(1, 20))}
                db.setnr_bulk(batch)
                mine.update(batch)
            elif step == 5:
                gone = db.remove(key)
                assert gone == (1 if key in mine else 0)
                mine.pop(key, None)
            elif step == 6:
                counter += i
                assert db.incr(f"t{tid}:counter", i) == counter
            else:
                keys = rng.sample(sorted(mine), min(len(mine), 25)) if mine else []
                assert db.get_bulk(keys + [f"t{tid}:never"]) == {k: mine[k] for k in keys}
            # Every step is followed by a read of what this thread believes.
            assert db.get(key) == mine.get(key)
        assert db.get_bulk(list(mine)) == mine
        assert sorted(db.match_prefix(f"t{tid}:", None)) == sorted(
            list(mine) + ([f"t{tid}:counter"] if counter else [])
        )
    except BaseException as exc:  # reported by the main thread
        errors.append((tid, exc))


def test_sixteen_threads_of_mixed_operations(tt_servers):
    db = tt_servers.client(max_connections=8)  # fewer connections than threads: they queue
    db.clear()
    errors: list = []
    threads = [threading.Thread(target=worker, args=(db, tid, errors)) for tid in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not any(thread.is_alive() for thread in threads)
    assert not errors, errors[:3]
    assert db.pool.size <= 8


LUA = """
function echo(key, value)
  return key .. "\\t" .. value
end

function setget(key, value)
  if not _put(key, value) then
    return nil
  end
  return _get(key)
end

function incr(key, value)
  return _addint(key, tonumber(value))
end

function fail(key, value)
  return nil
end

function boom(key, value)
  error("boom")
end

function truth(key, value)
  return true
end

function count_keys(key, value)
  return _rnum()
end
"""


@pytest.fixture(scope="module")
def lua_server(tmp_path_factory):
    pytest.importorskip("lupa", reason="the bundled server runs -ext scripts with lupa")
    script = tmp_path_factory.mktemp("lua") / "ext.lua"
    script.write_text(LUA)
    server = EmbeddedTokyoTyrantServer(server=None, server_args=["-ext", str(script)])
    server.run()
    yield server
    server.stop()


def test_script(lua_server):
    db = lua_server.make_client()
    try:
        db.clear()
        assert db.script("echo", "k", "v") == b"k\tv"
        assert db.script("echo", "k", "v", lock_records=True) == b"k\tv"
        assert db.script("echo", "k", "v", lock_all=True) == b"k\tv"
        assert db.script("echo", "k", "v", lock_records=True, lock_all=True) == b"k\tv"
        assert db.script("echo") == b"\t"
        assert db.script("setget", "sk", "sv") == b"sv" and db.get("sk") == "sv"
        assert db.script("incr", "n", "5") == b"5"
        assert db.script("incr", "n", "-7") == b"-2" and db.incr("n", 0) == -2
        assert db.script("truth") is True  # "true" -> True, as coleifer/kt gave it (issue 11)
        assert db.script("count_keys") == b"2"
        for name in ("fail", "boom", "nosuch", "_put"):
            with pytest.raises(ScriptError):
                db.script(name, "k", "v")
        assert db.get("sk") == "sv"  # the connection stays in sync after failures
    finally:
        db.close()


def test_script_value_encoding_and_result_decoding(lua_server):
    db = lua_server.make_client(serializer=KT_JSON)
    try:
        # encode_value=True serializes the value (JSON here); decode_result deserializes.
        assert db.script("setget", "j", {"a": [1, 2]}, decode_result=True) == {"a": [1, 2]}
        assert db.get("j") == {"a": [1, 2]}
        assert db.script("setget", "raw", "plain text", encode_value=False) == b"plain text"
        assert db.script("setget", "raw", b"\x00bytes", encode_value=False) == b"\x00bytes"
    finally:
        db.close()
