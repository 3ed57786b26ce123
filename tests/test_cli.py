"""The ``kt`` command line against running servers: click's runner and real subprocesses.

Bundled servers always; the real ones too when KTSERVER / TTSERVER are set (the
``kt_servers`` / ``tt_servers`` fixtures).  Tests use their own keys or database 1.
"""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from click.testing import CliRunner

from kt import KT_NONE, TT_TABLE
from kt.cli import cli
from kt.cli.formats import Record, decode_tsv, encode_tsv

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")

SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")


def run(server, *args, input=None, flavour=None):
    """``kt -h HOST -p PORT [--tt|--kt] ARGS`` through click's runner."""
    head = ["-h", server.host, "-p", str(server.port)]
    if flavour:
        head.append(f"--{flavour}")
    return CliRunner().invoke(cli, [*head, *args], input=input, catch_exceptions=False)


def kt_sub(server, *args, input=None, env=None):
    """The same as a separate process (``python -m kt.cli``)."""
    environ = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))
    environ.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "kt.cli", "-h", server.host, "-p", str(server.port), *args],
        input=input,
        capture_output=True,
        env=environ,
        timeout=120,
    )


@pytest.fixture
def kt(kt_servers):
    kt_servers.client(serializer=KT_NONE, decode_keys=False).clear(db=1)
    return kt_servers


@pytest.fixture
def tt(tt_servers):
    tt_servers.client(serializer=KT_NONE, decode_keys=False).clear()
    return tt_servers


# -- record commands ----------------------------------------------------------------------------


def test_kt_record_commands(kt):
    db = kt.client(serializer=KT_NONE, decode_keys=False)
    assert run(kt, "--db", "1", "set", "k1", "hello").exit_code == 0
    assert db.get(b"k1", db=1) == b"hello"
    result = run(kt, "--db", "1", "get", "k1")
    assert (result.exit_code, result.stdout_bytes) == (0, b"hello\n")
    assert json.loads(run(kt, "--db", "1", "get", "k1", "--json").stdout) == {"key": "k1", "value": "hello"}

    missing = run(kt, "--db", "1", "get", "nope")
    assert missing.exit_code == 1 and "no record 'nope'" in missing.stderr
    assert run(kt, "--db", "1", "set", "--add", "k1", "x").exit_code == 1
    assert run(kt, "--db", "1", "set", "--append", "k1", "!").exit_code == 0
    assert db.get(b"k1", db=1) == b"hello!"

    assert run(kt, "--db", "1", "set", "--xt", "100", "tmp", "v").exit_code == 0
    assert db.status(db=1)["count"] == "2"
    assert run(kt, "--db", "1", "incr", "n", "5").stdout == "5\n"
    assert json.loads(run(kt, "--db", "1", "incr", "n", "--json").stdout) == {"key": "n", "value": 6}
    assert run(kt, "--db", "1", "incr", "f", "1.5", "--float").stdout.strip() == "1.5"

    assert run(kt, "--db", "1", "list").stdout.split() == ["f", "k1", "n", "tmp"]  # db 1 is a B+ tree
    assert run(kt, "--db", "1", "list", "k").stdout.split() == ["k1"]
    assert run(kt, "--db", "1", "list", "--regex", "^[fn]$").stdout.split() == ["f", "n"]
    assert json.loads(run(kt, "--db", "1", "list", "--max", "1", "--json").stdout) == [{"key": "f"}]
    assert run(kt, "--db", "1", "count").stdout == "4\n"
    assert json.loads(run(kt, "--db", "1", "count", "--json").stdout) == {"count": 4}

    assert run(kt, "--db", "1", "remove", "k1", "n").exit_code == 0
    assert run(kt, "--db", "1", "remove", "k1").exit_code == 1
    refused = run(kt, "--db", "1", "clear", input="n\n")
    assert refused.exit_code == 1 and db.count(db=1) == 2
    assert run(kt, "--db", "1", "clear", "--yes").exit_code == 0
    assert db.count(db=1) == 0


def test_binary_keys_and_values_are_printed_raw(kt):
    db = kt.client(serializer=KT_NONE, decode_keys=False)
    db.set(b"bin", b"\x00\xff\tz", db=1)
    assert run(kt, "--db", "1", "get", "bin").stdout_bytes == b"\x00\xff\tz\n"
    assert json.loads(run(kt, "--db", "1", "get", "bin", "--json").stdout) == {
        "key": "bin",
        "value_b64": "AP8Jeg==",
    }


def test_tt_record_commands(tt):
    db = tt.client(serializer=KT_NONE, decode_keys=False)
    assert run(tt, "set", "a", "1").exit_code == 0  # detected as Tokyo Tyrant
    assert db.get(b"a") == b"1"
    assert run(tt, "--tt", "get", "a").stdout == "1\n"
    assert run(tt, "set", "--xt", "5", "a", "1").exit_code == 2  # TT records do not expire
    assert run(tt, "incr", "n", "3").stdout == "3\n"
    assert run(tt, "count").stdout == "2\n"
    assert sorted(run(tt, "list").stdout.split()) == ["a", "n"]
    assert run(tt, "remove", "a").exit_code == 0 and db.get(b"a") is None
    assert run(tt, "clear", "--yes").exit_code == 0 and db.count() == 0


LUA_ECHO = """kt = __kyototycoon__
function echo(inmap, outmap)
  for k, v in pairs(inmap) do outmap[k] = v .. "!" end
  return kt.RVSUCCESS
end
"""


def test_script_on_kt_runs_a_lua_procedure(tmp_path):
    from kt import EmbeddedServer

    script_path = tmp_path / "echo.lua"
    script_path.write_text(LUA_ECHO)
    server = EmbeddedServer(server=None, database="*", server_args=["-scr", str(script_path)])
    server.run()
    try:
        result = run(server, "script", "echo", "a=1", "b=x=y")
        assert result.exit_code == 0, result.stderr
        assert sorted(result.stdout.splitlines()) == ["a\t1!", "b\tx=y!"]
        assert json.loads(run(server, "script", "echo", "a=1", "--json").stdout) == {"a": "1!"}
        missing = run(server, "script", "no_such_procedure", "a=1")
        assert missing.exit_code == 1 and "no_such_procedure" in missing.stderr
        assert run(server, "script", "echo", "not-a-pair").exit_code == 2
    finally:
        server.stop()


# -- server commands -----------------------------------------------------------------------------


def test_server_commands(kt, tt):
    report = run(kt, "report")
    assert report.exit_code == 0 and "conf_kt_version" in report.stdout
    assert "conf_kt_version" in json.loads(run(kt, "report", "--json").stdout)
    assert json.loads(run(kt, "--db", "1", "status", "--json").stdout)["count"] == "0"
    assert "count" in run(kt, "stat").stdout
    assert run(kt, "sync").exit_code == 0
    assert run(kt, "vacuum").exit_code == 0
    assert run(kt, "optimize").exit_code == 2  # a Tokyo Tyrant command
    assert run(kt, "ulog").exit_code == 1  # no -ulog: the server's own error, one line
    assert "rnum" in json.loads(run(tt, "status", "--json").stdout)
    assert run(tt, "sync").exit_code == 0
    assert run(tt, "optimize").exit_code == 0
    assert run(tt, "vacuum").exit_code == 2


def test_ulog_lists_update_logs(tmp_path):
    from kt import EmbeddedServer

    server = EmbeddedServer(
        server=None, database="*", server_args=["-ulog", str(tmp_path / "ulog"), "-sid", "1"]
    )
    server.run()
    try:
        server.client.set("k", "v")
        result = run(server, "ulog", "--json")
        assert result.exit_code == 0, result.stderr
        files = json.loads(result.stdout)
        assert files and files[0]["path"].startswith(str(tmp_path / "ulog")) and int(files[0]["size"]) > 0
    finally:
        server.stop()


def test_search_with_readable_filters(tt_servers_table):
    table = tt_servers_table.client(serializer=TT_TABLE)
    table.clear()
    table.set_bulk(
        {
            "ada": {"name": "Ada", "age": "36"},
            "alan": {"name": "Alan", "age": "41"},
            "bob": {"name": "Bob", "age": "20"},
            "carl": {"name": "Carl", "age": "30"},
        }
    )
    result = run(
        tt_servers_table, "search", "age>=30", "name^=A", "--order", "age:num-desc", "--limit", "10", "--json"
    )
    assert [row["key"] for row in json.loads(result.stdout)] == ["alan", "ada"]
    assert json.loads(result.stdout)[0] == {"key": "alan", "name": "Alan", "age": "41"}
    assert run(tt_servers_table, "search", "name!^=A", "--keys", "--order", "name").stdout.split() == [
        "bob",
        "carl",
    ]
    assert run(tt_servers_table, "search", "age><25,35", "--count").stdout == "1\n"
    assert run(tt_servers_table, "search", "name*=a", "--keys", "--order", "name").stdout.split() == [
        "ada",
        "alan",
        "carl",
    ]
    table_out = run(tt_servers_table, "search", "age<25")
    assert "Bob" in table_out.stdout and "name" in table_out.stdout
    assert run(tt_servers_table, "search", "age").exit_code == 2
    assert run(tt_servers_table, "search", "--order", "age:sideways").exit_code == 2


# -- errors and exit codes -------------------------------------------------------------------------


def test_unreachable_server_is_exit_code_3_without_traceback(free_port):
    result = CliRunner().invoke(cli, ["-p", str(free_port), "--kt", "get", "k"])
    assert result.exit_code == 3
    assert result.stderr.startswith("kt: ") and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_debug_shows_the_traceback(free_port):
    result = CliRunner().invoke(cli, ["-p", str(free_port), "--kt", "--debug", "get", "k"])
    assert result.exit_code == 1 and isinstance(result.exception, ConnectionError)


def test_subprocess_exit_codes_and_env(kt_server, free_port):
    environ = {"KT_HOST": kt_server.host, "KT_PORT": str(kt_server.port)}
    ok = subprocess.run(
        [sys.executable, "-m", "kt.cli", "set", "envkey", "v"],
        capture_output=True,
        env=dict(os.environ, PYTHONPATH=SRC, **environ),
        timeout=60,
    )
    assert ok.returncode == 0, ok.stderr
    assert kt_server.client().get("envkey") == "v"
    missing = kt_sub(kt_server, "get", "no-such-key")
    assert (missing.returncode, missing.stderr) == (1, b"kt: no record 'no-such-key'\n")
    assert kt_sub(kt_server, "-p", str(free_port), "--kt", "count").returncode == 3
    assert kt_sub(kt_server, "get").returncode == 2
    # not a terminal: no colour codes, even in tables
    report = kt_sub(kt_server, "report")
    assert report.returncode == 0 and b"\x1b[" not in report.stdout


def test_colour_only_on_a_terminal_and_never_with_no_color():
    from kt.cli.context import Target

    os.environ.pop("FORCE_COLOR", None)
    assert Target("h", 1, 0, None, "kt", False).out.is_terminal is False
    previous = os.environ.get("NO_COLOR")
    os.environ["NO_COLOR"] = "1"
    try:
        assert Target("h", 1, 0, None, "kt", False).out.no_color
    finally:
        if previous is None:
            del os.environ["NO_COLOR"]
        else:
            os.environ["NO_COLOR"] = previous


# -- export / import ---------------------------------------------------------------------------------


def _fill(db, count, now):
    """``count`` records with binary keys/values; a third never expire, the rest at two times."""
    expected = {}
    groups = {0: {}, 1: {}, 2: {}}
    for i in range(count):
        key = b"k%07d" % i + bytes([i % 256])
        value = bytes((i * 7 + j) % 256 for j in range(i % 40)) + b"\t\n\\x"
        groups[i % 3][key] = value
    for g, data in groups.items():
        xt = None if g == 0 else now + 3600 * g
        when = None if xt is None else datetime.datetime.fromtimestamp(xt, datetime.timezone.utc)
        db.set_bulk(data, db=1, expire_time=when)
        expected.update({k: (v, xt) for k, v in data.items()})
    return expected


@pytest.mark.parametrize("fmt", ["tsv", "hex", "jsonl", "csv"])
def test_export_import_round_trip_is_byte_identical(kt, tmp_path, fmt):
    db = kt.client(serializer=KT_NONE, decode_keys=False)
    expected = _fill(db, 1500, int(time.time()))
    options = ["--hex"] if fmt == "hex" else ["--format", fmt]
    first, second = tmp_path / "first", tmp_path / "second"
    exported = run(kt, "--db", "1", "export", str(first), *options)
    assert exported.exit_code == 0 and "exported 1,500 records" in exported.stderr
    db.clear(db=1)
    imported = run(kt, "--db", "1", "import", str(first), *options)
    assert imported.exit_code == 0, imported.stderr
    assert "imported 1,500 records" in imported.stderr and "0 bad lines" in imported.stderr
    assert db.get_bulk(list(expected), db=1) == {k: v for k, (v, _) in expected.items()}
    assert run(kt, "--db", "1", "export", str(second), *options).exit_code == 0
    assert first.read_bytes() == second.read_bytes()  # B+ tree: same order, same bytes
    if fmt == "tsv":
        records = [decode_tsv(line) for line in first.read_bytes().splitlines()]
        assert {r.key: (r.value, r.xt) for r in records} == expected


def test_round_trip_of_100k_records_is_byte_identical(kt, tmp_path):
    """The issue's acceptance check at full size: 100k binary records, two thirds expiring."""
    db = kt.client(serializer=KT_NONE, decode_keys=False)
    expected = _fill(db, 100_000, int(time.time()))
    first, second = tmp_path / "first.tsv", tmp_path / "second.tsv"
    assert run(kt, "--db", "1", "export", str(first)).exit_code == 0
    records = [decode_tsv(line) for line in first.read_bytes().splitlines()]
    assert {r.key: (r.value, r.xt) for r in records} == expected
    db.clear(db=1)
    imported = run(kt, "--db", "1", "import", str(first))
    assert imported.exit_code == 0 and "imported 100,000 records" in imported.stderr, imported.stderr
    assert run(kt, "--db", "1", "export", str(second)).exit_code == 0
    assert first.read_bytes() == second.read_bytes()
    db.clear(db=1)


def test_round_trip_through_a_pipe_of_two_processes(kt):
    db = kt.client(serializer=KT_NONE, decode_keys=False)
    _fill(db, 1000, int(time.time()))
    env = dict(os.environ, PYTHONPATH=SRC)
    base = [sys.executable, "-m", "kt.cli", "-h", kt.host, "-p", str(kt.port)]
    before = run(kt, "--db", "1", "export", "-q").stdout_bytes
    exporter = subprocess.Popen([*base, "--db", "1", "export"], stdout=subprocess.PIPE, env=env)
    importer = subprocess.run(
        [*base, "--db", "0", "import"], stdin=exporter.stdout, capture_output=True, env=env, timeout=120
    )
    exporter.stdout.close()
    assert exporter.wait(timeout=60) == 0 and importer.returncode == 0, importer.stderr
    assert b"imported 1,000 records" in importer.stderr
    exported = run(kt, "--db", "0", "export", "-q").stdout_bytes.splitlines()
    after = sorted(line for line in exported if line.startswith(b"k0"))
    assert after == sorted(before.splitlines())
    db.remove_bulk([decode_tsv(line).key for line in after], db=0)


def test_tt_export_import_round_trip(tt, tmp_path):
    db = tt.client(serializer=KT_NONE, decode_keys=False)
    data = {b"t%05d" % i: bytes(range(i % 256)) for i in range(1500)}
    db.set_bulk(data)
    out = tmp_path / "tt.jsonl"
    assert run(tt, "export", str(out)).exit_code == 0
    db.clear()
    result = run(tt, "import", str(out))
    assert result.exit_code == 0, result.stderr
    assert db.get_bulk(list(data)) == data


@pytest.mark.parametrize(
    "content, message",
    [
        (b"a\t1\nb\t2\nc\t3", "3: truncated"),
        (b"a\t1\nb\t\\q\n", "2: bad escape '\\\\q'"),
        (b"a\t1\nb\n", "2: wrong column count: 1"),
        (b"a\t1\nb\t1\tx\n", "2: expiry b'x' is not a Unix time"),
        (b"a\t1\nb\t2\t3\t4\n", "2: wrong column count: 4"),
        (b"a\t1\nb\t\xff\xfe\n", "2: not valid UTF-8 at byte 3"),
    ],
)
def test_bad_tsv_lines_are_reported_with_their_numbers(kt, tmp_path, content, message):
    path = tmp_path / "bad.tsv"
    path.write_bytes(content)
    result = run(kt, "--db", "1", "import", str(path))
    assert result.exit_code == 1
    assert f"{path}:{message}" in result.stderr
    # the good line before the bad one was stored (nothing already imported is lost)
    assert kt.client(serializer=KT_NONE, decode_keys=False).get(b"a", db=1) == b"1"


@pytest.mark.parametrize(
    "suffix, content, message",
    [
        (".jsonl", b'{"key":"a","value":"1"}\n{"key":"b","val', "2: truncated"),
        (".jsonl", b'{"key":"a","value":"1"}\n{"key":"b"}\n', '2: missing "value"'),
        (".jsonl", b'{"key":"a","value":"1"}\n{"key":"b","value_b64":"!!"}\n', '2: "value_b64" is not valid'),
        (".jsonl", b'{"key":"a","value":"1"}\n{"key":"b",\n', "2: invalid JSON"),
        (".csv", b'key,value,xt\na,1,\nb,"2\n', "3: bad CSV"),
        (".csv", b"key,value,xt\na,1,\nb,2,3,4\n", "3: wrong column count: 4"),
        (".csv", b"key,value,xt\na,1,\nb,\\x4,\n", "3: bad escape"),
    ],
)
def test_bad_jsonl_and_csv_lines(kt, tmp_path, suffix, content, message):
    path = tmp_path / f"bad{suffix}"
    path.write_bytes(content)
    result = run(kt, "--db", "1", "import", str(path))
    assert result.exit_code == 1 and f"{path}:{message}" in result.stderr, result.stderr
    assert kt.client(serializer=KT_NONE, decode_keys=False).get(b"a", db=1) == b"1"


def test_on_error_skip_imports_every_good_line(kt, tmp_path):
    path = tmp_path / "mixed.tsv"
    path.write_bytes(b"a\t1\nbroken\nc\t\\z\nd\t4\n")
    result = run(kt, "--db", "1", "import", str(path), "--on-error", "skip")
    assert result.exit_code == 1
    assert f"{path}:2: wrong column count" in result.stderr and f"{path}:3: bad escape" in result.stderr
    assert "imported 2 records" in result.stderr and "2 bad lines" in result.stderr
    assert kt.client(serializer=KT_NONE, decode_keys=False).get_bulk([b"a", b"d"], db=1) == {
        b"a": b"1",
        b"d": b"4",
    }


def test_import_xt_overrides_the_file(kt, tmp_path):
    path = tmp_path / "in.tsv"
    path.write_bytes(encode_tsv(Record(b"x", b"1")) + encode_tsv(Record(b"y", b"2", 4_000_000_000)))
    assert run(kt, "--db", "1", "import", str(path), "--xt", "60").exit_code == 0
    exported = run(kt, "--db", "1", "export", "--format", "jsonl").stdout
    xts = [json.loads(line)["xt"] for line in exported.splitlines()]
    assert all(abs(xt - time.time() - 60) < 30 for xt in xts)


def test_progress_bar_shows_rate_and_eta(kt, tmp_path):
    db = kt.client(serializer=KT_NONE, decode_keys=False)
    db.set_bulk({b"p%04d" % i: b"v" for i in range(1500)}, db=1)
    result = run(kt, "--db", "1", "export", str(tmp_path / "p.tsv"), "--progress")
    assert "rec/s" in result.stderr and "1500/1500" in result.stderr and "ETA" in result.stderr


# -- serve and bench -------------------------------------------------------------------------------------


def test_serve_runs_the_bundled_server(free_port):
    env = dict(os.environ, PYTHONPATH=SRC)
    proc = subprocess.Popen(
        [sys.executable, "-m", "kt.cli", "serve", "tt", "-port", str(free_port), "*"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
    )
    try:
        deadline = time.time() + 30
        while time.time() < deadline:
            probe = subprocess.run(
                [sys.executable, "-m", "kt.cli", "-p", str(free_port), "count"],
                capture_output=True,
                env=env,
                timeout=30,
            )
            if probe.returncode == 0:
                break
            time.sleep(0.2)
        assert probe.stdout == b"0\n"
        assert (
            subprocess.run(
                [sys.executable, "-m", "kt.cli", "serve", "xx"], capture_output=True, env=env, timeout=30
            ).returncode
            == 2
        )
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_bench_prints_a_table_and_cleans_up(kt_server):
    result = run(kt_server, "bench", "-n", "200", "-c", "2", "--batch", "50", "--json")
    assert result.exit_code == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [row["test"] for row in rows] == ["set", "get", "set_bulk x50", "get_bulk x50"]
    assert all(row["records"] == 200 and row["records_per_s"] > 0 for row in rows)
    assert kt_server.client().match_prefix("kt-bench:") == []
    table = run(kt_server, "bench", "-n", "100", "-c", "1")
    assert "records/s" in table.stdout


@pytest.fixture
def free_port():
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_tt_import_warns_that_expiries_are_ignored(tt, tmp_path):
    path = tmp_path / "with-xt.tsv"
    path.write_bytes(encode_tsv(Record(b"x", b"1", 4_000_000_000)))
    result = run(tt, "import", str(path))
    assert result.exit_code == 0 and "expiries are ignored" in result.stderr
    assert tt.client(serializer=KT_NONE).get(b"x") == b"1"


def test_script_on_tt_calls_an_ext_function(tmp_path):
    from kt import EmbeddedTokyoTyrantServer

    script_path = tmp_path / "ext.lua"
    script_path.write_text("function join(key, value)\n  return key .. '=' .. value\nend\n")
    server = EmbeddedTokyoTyrantServer(server=None, database="*", server_args=["-ext", str(script_path)])
    server.run()
    try:
        result = run(server, "script", "join", "key=a", "value=1")
        assert (result.exit_code, result.stdout) == (0, "a=1\n")
        assert json.loads(run(server, "script", "join", "key=a", "value=1", "--json").stdout) == {
            "result": "a=1"
        }
        assert run(server, "script", "join", "other=1").exit_code == 2
    finally:
        server.stop()


def test_no_xt_leaves_expiries_out(kt, tmp_path):
    kt.client(serializer=KT_NONE).set(b"x", b"1", db=1, expire_time=600)
    assert run(kt, "--db", "1", "export", "--no-xt").stdout_bytes == b"x\t1\n"
    assert run(kt, "--db", "1", "export", "-q").stdout_bytes.count(b"\t") == 2


def _ktremotemgr():
    server = os.environ.get("KTSERVER")
    tool = os.path.join(os.path.dirname(server), "ktremotemgr") if server else None
    if not tool or not os.access(tool, os.X_OK):
        pytest.skip("needs ktremotemgr beside $KTSERVER")
    return tool


def test_hex_tsv_is_ktremotemgrs_format(real_kt_server, tmp_path):
    tool = _ktremotemgr()
    port = ["-port", str(real_kt_server.port)]
    db = real_kt_server.client(serializer=KT_NONE, decode_keys=False)
    db.clear(db=1)
    db.set_bulk({b"a key": b"plain", b"kb": b"\x00\xff\n\t"}, db=1)
    listed = subprocess.run([tool, "list", *port, "-db", "1", "-pv", "-px"], capture_output=True, check=True)
    (tmp_path / "px.tsv").write_bytes(listed.stdout)
    assert run(real_kt_server, "--db", "1", "export", "--hex", "-q").stdout_bytes == listed.stdout
    db.clear(db=1)
    assert run(real_kt_server, "--db", "1", "import", "--hex", str(tmp_path / "px.tsv")).exit_code == 0
    assert db.get_bulk([b"a key", b"kb"], db=1) == {b"a key": b"plain", b"kb": b"\x00\xff\n\t"}
    (tmp_path / "ours.tsv").write_bytes(
        run(real_kt_server, "--db", "1", "export", "--hex", "--no-xt").stdout_bytes
    )
    db.clear(db=1)
    subprocess.run(
        [tool, "import", *port, "-db", "1", "-sx", str(tmp_path / "ours.tsv")],
        capture_output=True,
        check=True,
    )
    assert db.get_bulk([b"a key", b"kb"], db=1) == {b"a key": b"plain", b"kb": b"\x00\xff\n\t"}


# -- every command as a separate process -----------------------------------------------------------
# Each ``kt`` process costs ~0.4 s of interpreter start-up, so independent commands run a few at
# a time; the checks still name the command that went wrong.


def kt_subs(server, commands, env=None):
    """``kt_sub`` for each ``name: args`` of ``commands``, four processes at a time."""
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {name: pool.submit(kt_sub, server, *args, env=env) for name, args in commands.items()}
    return {name: future.result() for name, future in futures.items()}


def check(results, expected):
    """``expected`` maps a command's name to ``(exit code, stdout check)``; the check is the
    exact bytes, or a callable that gets stdout and returns whether it is right."""
    wrong = []
    for name, (code, out) in expected.items():
        proc = results[name]
        good_out = out(proc.stdout) if callable(out) else proc.stdout == out
        if proc.returncode != code or not good_out:
            wrong.append(f"{name}: exit {proc.returncode} out {proc.stdout[:200]!r} err {proc.stderr!r}")
        elif code == 2:  # a usage error: click's usage line and what is wrong
            assert proc.stderr.startswith(b"Usage: kt ") and b"Error: " in proc.stderr, (name, proc.stderr)
        elif code:  # any other error is one clear line on stderr
            assert proc.stderr.startswith(b"kt: ") and proc.stderr.count(b"\n") == 1, (name, proc.stderr)
    assert not wrong, "\n".join(wrong)


def _table_with(*words):
    return lambda out: all(word.encode() in out for word in words) and b"\x1b[" not in out


def test_kt_commands_as_subprocesses(kt):
    db = kt.client(serializer=KT_NONE, decode_keys=False)
    db.set_bulk({b"r1": b"1", b"r2": b"2", b"s1": b"x"}, db=1)
    db1 = ["--db", "1"]
    results = kt_subs(
        kt,
        {
            "remove": [*db1, "remove", "r1"],
            "incr": [*db1, "incr", "n", "5"],
            "stat": [*db1, "stat"],
            "sync": [*db1, "sync"],
            "vacuum": [*db1, "vacuum"],
            "optimize": ["optimize"],
            "ulog": ["ulog"],
            "bench": ["bench", "-n", "20", "-c", "2", "--batch", "5", "--json"],
        },
    )
    check(
        results,
        {
            "remove": (0, b""),
            "incr": (0, b"5\n"),
            "stat": (0, _table_with("status of", "count")),
            "sync": (0, b""),
            "vacuum": (0, b""),
            "optimize": (2, b""),  # a Tokyo Tyrant command: usage error
            "ulog": (1, b""),  # started without -ulog: the server's error
            "bench": (
                0,
                lambda out: (
                    [(r["test"], r["records"]) for r in json.loads(out)]
                    == [("set", 20), ("get", 20), ("set_bulk x5", 20), ("get_bulk x5", 20)]
                ),
            ),
        },
    )
    assert db.get_bulk([b"r1", b"r2", b"n"], db=1) == {b"r2": b"2", b"n": b"\x00" * 7 + b"\x05"}
    assert kt.client().match_prefix("kt-bench:") == []
    results = kt_subs(
        kt,
        {
            "list": [*db1, "list", "--regex", "^[nr]", "--json"],
            "count": [*db1, "count"],
            "status": [*db1, "status", "--json"],
        },
    )
    check(
        results,
        {
            "list": (0, lambda out: json.loads(out) == [{"key": "n"}, {"key": "r2"}]),
            "count": (0, b"3\n"),
            "status": (0, lambda out: json.loads(out)["count"] == "3"),
        },
    )
    check({"clear": kt_sub(kt, *db1, "clear", "--yes")}, {"clear": (0, b"")})
    assert db.count(db=1) == 0


def test_tt_commands_as_subprocesses(tt):
    db = tt.client(serializer=KT_NONE, decode_keys=False)
    db.set_bulk({b"r1": b"1", b"r2": b"2"})
    results = kt_subs(
        tt,
        {
            "remove": ["remove", "r1"],
            "incr": ["--tt", "incr", "n", "3"],
            "sync": ["sync"],
            "optimize": ["optimize"],
        },
    )
    check(
        results,
        {
            "remove": (0, b""),
            "incr": (0, b"3\n"),
            "sync": (0, b""),
            "optimize": (0, b""),
        },
    )
    results = kt_subs(tt, {"list": ["list", "--json"], "count": ["count"], "status": ["status"]})
    check(
        results,
        {
            "list": (0, lambda out: sorted(r["key"] for r in json.loads(out)) == ["n", "r2"]),
            "count": (0, b"2\n"),
            "status": (0, _table_with("status of", "rnum")),
        },
    )
    check({"clear": kt_sub(tt, "clear", "--yes")}, {"clear": (0, b"")})
    assert db.count() == 0


def test_search_as_a_subprocess(tt_servers_table):
    table = tt_servers_table.client(serializer=TT_TABLE)
    table.clear()
    table.set_bulk({"ada": {"name": "Ada", "age": "36"}, "bob": {"name": "Bob", "age": "20"}})
    results = kt_subs(
        tt_servers_table,
        {
            "search": ["search", "age>=30", "--json"],
            "search --keys": ["search", "name^=", "--keys", "--order", "age:num-desc"],
            "search bad filter": ["search", "age"],
        },
    )
    check(
        results,
        {
            "search": (0, lambda out: json.loads(out) == [{"key": "ada", "name": "Ada", "age": "36"}]),
            "search --keys": (0, b"ada\nbob\n"),
            "search bad filter": (2, b""),
        },
    )


def test_kt_script_as_a_subprocess(kt_servers_lua):
    kt_servers_lua.client(serializer=KT_NONE).set(b"gp", b"hello")
    results = kt_subs(
        kt_servers_lua,
        {"script": ["script", "get_part", "key=gp", "start=1", "stop=3"], "missing": ["script", "no_such"]},
    )
    check(results, {"script": (0, b"value\tel\n"), "missing": (1, b"")})


def test_tt_script_as_a_subprocess(tt_servers_lua):
    result = kt_sub(tt_servers_lua, "script", "hash", "key=abc", "value=md5")
    assert (result.returncode, result.stdout) == (0, b"900150983cd24fb0d6963f7d28e17f72\n"), result.stderr


@pytest.mark.parametrize("fmt", ["tsv", "hex", "jsonl", "csv"])
def test_export_and_import_as_subprocesses(kt, tmp_path, fmt):
    db = kt.client(serializer=KT_NONE, decode_keys=False)
    expected = _fill(db, 300, int(time.time()))
    options = ["--hex"] if fmt == "hex" else ["--format", fmt]
    path = tmp_path / "records"
    exported = kt_sub(kt, "--db", "1", "export", str(path), *options)
    assert exported.returncode == 0 and b"exported 300 records" in exported.stderr, exported.stderr
    before = path.read_bytes()
    db.clear(db=1)
    imported = kt_sub(kt, "--db", "1", "import", str(path), *options)
    assert imported.returncode == 0 and b"imported 300 records" in imported.stderr, imported.stderr
    assert db.get_bulk(list(expected), db=1) == {k: v for k, (v, _) in expected.items()}
    assert run(kt, "--db", "1", "export", "-q", *options).stdout_bytes == before  # expiries too


def test_tt_export_and_import_as_subprocesses(tt, tmp_path):
    db = tt.client(serializer=KT_NONE, decode_keys=False)
    data = {b"t%03d" % i: bytes(range(i % 256)) + b"\n" for i in range(300)}
    db.set_bulk(data)
    path = tmp_path / "tt.csv"
    assert kt_sub(tt, "export", str(path)).returncode == 0
    db.clear()
    imported = kt_sub(tt, "import", str(path))
    assert imported.returncode == 0 and b"imported 300 records" in imported.stderr, imported.stderr
    assert db.get_bulk(list(data)) == data
