"""The ``kt`` command line (``pip install 'kt-tycoon[cli]'``): click commands over the public
client API.  :data:`cli` is the click group; :func:`main` the console-script entry point."""

from kt.cli.main import cli, main

__all__ = ["cli", "main"]
