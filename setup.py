"""Builds kt's optional compiled speed-ups: every ``src/kt/_speedups/*.pyx`` (Cython).

They are optional on purpose: without a C compiler the package still installs as pure Python,
``kt._native.load()`` answers None, and the pure-Python paths run (the tests cover both).
Everything else about the package is in pyproject.toml.
"""

from pathlib import Path

from setuptools import Extension, setup

SPEEDUPS = Path("src/kt/_speedups")


def speedup_extensions() -> list:
    try:
        from Cython.Build import cythonize
    except ImportError:  # no Cython: a pure-Python install
        return []
    extensions = [
        Extension(f"kt._speedups.{source.stem}", [str(source)], optional=True, extra_compile_args=["-O2"])
        for source in sorted(SPEEDUPS.glob("*.pyx"))
    ]
    directives = {"language_level": 3, "boundscheck": False, "wraparound": False, "cdivision": True}
    return cythonize(extensions, compiler_directives=directives, quiet=True)


setup(ext_modules=speedup_extensions())
