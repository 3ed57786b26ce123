"""Sphinx configuration of the kt documentation site (built by scripts/docs).

The build runs with ``-W -n``: every warning and every unresolved reference fails it.  Only
the public API modules listed in api.rst are autodoc'ed, so a docstring elsewhere can never
break the build.
"""

import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "src"))

project = "kt"
author = "the kt authors"
copyright = "the kt authors"
release = version = "0.1.0"

extensions = [
    "sphinx.ext.autodoc",
    "sphinx_click",
    "myst_parser",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build", "README*"]
html_theme = "furo"
html_title = "kt: Kyoto Tycoon and Tokyo Tyrant for Python"
html_static_path = []

myst_heading_anchors = 3
# Pages written for GitHub (internals.md, bench/README.md) start at any heading level.
suppress_warnings = ["myst.header"]

autodoc_member_order = "bysource"
autodoc_typehints = "none"  # signatures show the names; types live in the text
autodoc_default_options = {"members": True, "undoc-members": True}

nitpicky = True
nitpick_ignore_regex = [
    # builtins and typing names that docstrings mention in prose-like type fields
    (r"py:.*", r"(int|str|bytes|bool|float|dict|list|tuple|callable|generator|iterable|None|optional)"),
    (r"py:.*", r"(typing|collections\.abc|datetime)\..*"),
    # The site documents what ``kt`` exports (kt.KyotoTycoon, kt.KT_JSON...); a docstring's
    # reference into an internal module (kt.ops.kt, kt.protocol..., kt.errors.X) is not a link.
    (r"py:.*", r"kt\.[a-z_][a-z0-9_]*(\..*)?"),
]

# h11's coleifer/kt table (docs/compat.md) goes under "migration" once it exists.
_COMPAT = os.path.exists(os.path.join(HERE, "compat.md"))


def _aio_classes():
    """The asyncio clients of ``kt.aio`` (issue 12) once they exist, else none."""
    try:
        import kt.aio as aio
    except ImportError:
        return []
    return [name for name in ("KyotoTycoon", "Cursor", "TokyoTyrant") if hasattr(aio, name)]


def _unlisted_pages():
    """Pages in docs/ that index.md's toctrees do not name (another branch's new page): listed
    under "More" so that every page is reachable and the -W build does not fail on them."""
    with open(os.path.join(HERE, "index.md"), encoding="utf-8") as f:
        listed = {line.strip() for line in f}
    pages = []
    for name in sorted(os.listdir(HERE)):
        stem, ext = os.path.splitext(name)
        if (
            ext in (".md", ".rst")
            and stem not in listed | {"index", "compat"}
            and not stem.startswith("README")
        ):
            pages.append(stem)
    return pages


def _add_to_pages(app, docname, source):
    if docname == "index" and _unlisted_pages():
        source[0] += (
            "\n\n```{toctree}\n:maxdepth: 2\n:caption: More\n\n" + "\n".join(_unlisted_pages()) + "\n```\n"
        )
    if docname == "migration" and _COMPAT:
        source[0] += "\n\n```{toctree}\n:maxdepth: 2\n\ncompat\n```\n"
    if docname == "asyncio" and _aio_classes():
        source[0] += "\n\n## API\n\n" + "".join(
            f"```{{eval-rst}}\n.. autoclass:: kt.aio.{name}\n```\n\n" for name in _aio_classes()
        )


def _seed_names():
    """Every public name of the API reference the user wrote (../../shared/seed-api.rst)."""
    seed = os.path.join(ROOT, "..", "shared", "seed-api.rst")
    if not os.path.exists(seed):
        return []
    names, current = [], None
    for line in open(seed, encoding="utf-8"):
        match = re.match(r"\.\. py:(class|method|attribute|data):: (\w+)", line)
        if not match:
            continue
        kind, name = match.groups()
        if kind == "class":
            current = name
        names.append((kind, name if kind in ("class", "data") else f"{current}.{name}"))
    return names


def _check_seed(app, exception):
    """Warn (a build error under -W) for a public name of the seed that the site lacks."""
    if exception is not None:
        return
    from sphinx.util import logging

    objects = app.env.get_domain("py").objects
    documented = {name.split(".", 1)[1] if name.startswith("kt.") else name for name in objects}
    documented |= {".".join(name.split(".")[-2:]) for name in objects}
    logger = logging.getLogger(__name__)
    for kind, name in _seed_names():
        if name not in documented and name.rsplit(".", 1)[-1] not in ("__init__",):
            logger.warning(f"seed API name {name} ({kind}) is not documented")


def setup(app):
    app.connect("source-read", _add_to_pages)
    app.connect("build-finished", _check_seed)
