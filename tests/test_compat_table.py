"""docs/compat.md promises a name here for every public name of coleifer/kt 0.9.6.

Every ``kt.…`` name in the tables' second column must resolve, so the table cannot list a
name that does not exist.
"""

from __future__ import annotations

import importlib
import os
import re

import pytest

DOC = os.path.join(os.path.dirname(__file__), os.pardir, "docs", "compat.md")


def _promised_names():
    names = []
    with open(DOC, encoding="utf-8") as f:
        for line in f:
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if len(cells) == 3 and line.startswith("|") and not set(cells[1]) <= {"-", " "}:
                names += re.findall(r"`(kt(?:\.\w+)+)`", cells[1])
    return names


def _resolve(dotted):
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(dotted)


def test_the_table_lists_names():
    assert len(_promised_names()) > 150


@pytest.mark.parametrize("dotted", sorted(set(_promised_names())))
def test_promised_name_exists(dotted):
    _resolve(dotted)
