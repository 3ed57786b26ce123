"""Start-up stays lean: ``import kt`` and ``kt get`` do not load what they do not use.

``kt/__init__.py`` loads its public names on first use (PEP 562 ``__getattr__``) and the
``kt`` command imports a subcommand's module only when that command runs (or ``--help``
lists them).  These tests run fresh interpreters, since this one has imported everything.
The speed itself is measured by bench/bench_startup.py, not here.
"""

from __future__ import annotations

import ast
import importlib
import json
import os
import re
import subprocess
import sys
from typing import Dict, List

import pytest

import kt
from kt import KT_NONE
from kt.cli.main import COMMAND_MODULES

SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")

# Heavy modules the plain client must not import (asyncio alone was ~45 ms of ``import kt``).
NOT_FOR_IMPORT_KT = [
    "asyncio",
    "concurrent.futures",
    "kt.embedded",
    "kt.kyototycoon",
    "kt.replication",
    "kt.sharding",
    "kt.tokyotyrant",
    "subprocess",
]
NOT_FOR_KT_GET = [
    "asyncio",
    "concurrent.futures",
    "kt.cli.bench",
    "kt.cli.progress",
    "kt.cli.search",
    "kt.cli.server",
    "kt.cli.transfer",
    "kt.embedded",
    "kt.sharding",
    "kt.tokyotyrant",
    "pickle",
    "rich",
    "urllib.parse",
]


def python(code: str, *, timeout: float = 60) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=timeout
    )


def modules_after(code: str) -> List[str]:
    """``sys.modules`` of a fresh interpreter once ``code`` has run (printed at exit)."""
    proc = python(
        "import atexit, json, sys\n"
        "atexit.register(lambda: print('MODULES', json.dumps(sorted(sys.modules))))\n" + code
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("MODULES ")]
    assert lines, proc.stdout + proc.stderr
    return json.loads(lines[-1][len("MODULES ") :])


def homes_from_type_checking_block() -> Dict[str, str]:
    """name -> home module, read from ``if TYPE_CHECKING:`` of kt/__init__.py (what IDEs see)."""
    with open(kt.__file__, encoding="utf-8") as f:
        tree = ast.parse(f.read())
    homes: Dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            for imp in node.body:
                assert isinstance(imp, ast.ImportFrom)
                homes.update({alias.name: imp.module for alias in imp.names})
    return homes


def test_import_kt_loads_only_the_errors():
    loaded = set(modules_after("import kt"))
    assert "kt" in loaded and "kt.errors" in loaded
    assert not loaded & set(NOT_FOR_IMPORT_KT), sorted(loaded & set(NOT_FOR_IMPORT_KT))


def test_one_name_loads_only_its_home_module():
    loaded = set(modules_after("from kt import KyotoTycoon"))
    assert "kt.kyototycoon" in loaded
    assert not {"asyncio", "kt.embedded", "kt.sharding", "kt.replication"} & loaded


def test_embedded_server_does_not_import_asyncio():
    loaded = set(modules_after("from kt import EmbeddedServer"))
    assert "kt.embedded" in loaded and "asyncio" not in loaded


def test_every_public_name_resolves_in_a_fresh_interpreter():
    proc = python(
        "import json, kt\n"
        "names = {name: repr(getattr(kt, name)) for name in kt.__all__}\n"
        "exec('from kt import *')\n"
        "print(json.dumps(names))"
    )
    assert proc.returncode == 0, proc.stderr
    names = json.loads(proc.stdout)
    assert list(names) == kt.__all__
    assert names["KyotoTycoon"] == "<class 'kt.kyototycoon.KyotoTycoon'>"
    assert names["EmbeddedServer"] == "<class 'kt.embedded.EmbeddedServer'>"


@pytest.mark.parametrize("name", kt.__all__)
def test_public_name_is_its_home_modules_object(name):
    homes = homes_from_type_checking_block()
    home = homes.get(name, "kt.errors")
    assert getattr(kt, name) is getattr(importlib.import_module(home), name)
    exec_globals: dict = {}
    exec(f"from kt import {name}", exec_globals)
    assert exec_globals[name] is getattr(kt, name)


def test_type_checking_block_covers_every_lazy_name():
    homes = homes_from_type_checking_block()
    lazy = {name for name in kt.__all__ if name not in vars(importlib.import_module("kt.errors"))}
    assert set(homes) == lazy
    assert kt._HOME_OF == homes


def test_unknown_names_fail_as_before():
    with pytest.raises(AttributeError, match="no attribute 'NoSuchThing'"):
        kt.NoSuchThing  # noqa: B018
    with pytest.raises(ImportError, match="NoSuchThing"):
        exec("from kt import NoSuchThing", {})


def test_submodules_are_attributes_after_import_kt_as_before():
    proc = python("import kt; print(kt.tokyotyrant.QueryBuilder.__name__, kt.protocol.__name__)")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["QueryBuilder", "kt.protocol"]


def test_dir_lists_public_names_and_not_helpers():
    names = dir(kt)
    assert set(kt.__all__) <= set(names)
    assert "__version__" in names and "tokyotyrant" in names
    assert not {"importlib", "TYPE_CHECKING", "Any"} & set(names)


# -- the kt command ---------------------------------------------------------------------------


def all_commands() -> Dict[str, str]:
    """command name -> kt.cli module that defines it, from each module's COMMANDS."""
    found = {}
    for module_name in sorted(set(COMMAND_MODULES.values())):
        module = importlib.import_module(f"kt.cli.{module_name}")
        found.update({command.name: module_name for command in module.COMMANDS})
    return found


def test_command_map_matches_each_modules_commands():
    assert COMMAND_MODULES == all_commands()


def test_help_lists_every_command():
    proc = python("import sys; sys.argv = ['kt', '--help']; from kt.cli import main; main()")
    assert proc.returncode == 0, proc.stderr
    section = proc.stdout.split("Commands:\n", 1)[1]
    listed = re.findall(r"^  (\S+)  ", section, flags=re.M)
    assert listed == sorted(all_commands())


def test_kt_get_loads_only_what_it_uses(kt_server):
    client = kt_server.client(serializer=KT_NONE)
    client.set(b"startup:key", b"startup value")
    argv = ["kt", "-h", kt_server.host, "-p", str(kt_server.port), "--kt", "get", "startup:key"]
    proc = python(
        "import atexit, json, sys\n"
        "atexit.register(lambda: sys.stderr.write('MODULES ' + json.dumps(sorted(sys.modules))))\n"
        f"sys.argv = {argv!r}\n"
        "from kt.cli import main\n"
        "main()\n"
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "startup value\n"
    loaded = set(json.loads(proc.stderr.split("MODULES ", 1)[1]))
    assert "kt.cli.records" in loaded and "kt.kyototycoon" in loaded
    heavy = {name for name in loaded if name.split(".")[0] == "rich"} | (loaded & set(NOT_FOR_KT_GET))
    assert not heavy, sorted(heavy)


def test_unknown_command_is_still_a_usage_error():
    proc = python("import sys; sys.argv = ['kt', 'nosuch']; from kt.cli import main; main()")
    assert proc.returncode == 2
    assert "No such command 'nosuch'" in proc.stderr
