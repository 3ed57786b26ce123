"""The ``kt`` command: a group with ktremotemgr-like connection options and every subcommand."""

from __future__ import annotations

import importlib
from typing import Any, List, Optional

import click

from kt.cli.context import DEFAULT_PORT, Target, translate_errors

CONTEXT_SETTINGS = {"help_option_names": ["--help"], "max_content_width": 100}

# The module (in kt.cli) holding each subcommand.  A module is imported only when one of its
# commands runs or help lists them all, so ``kt get`` does not load rich's progress bars,
# the bench, search or server commands (tests/test_startup.py checks this map against
# each module's COMMANDS).
COMMAND_MODULES = {
    **dict.fromkeys(["get", "set", "remove", "incr", "list", "count", "clear", "script"], "records"),
    "search": "search",
    **dict.fromkeys(["report", "status", "stat", "sync", "vacuum", "optimize", "ulog", "serve"], "server"),
    **dict.fromkeys(["export", "import"], "transfer"),
    "bench": "bench",
}


class KtGroup(click.Group):
    """Loads subcommands on first use; runs one with kt's errors turned into one line and an exit code."""

    def list_commands(self, ctx: click.Context) -> List[str]:
        # Whoever lists the commands (help, completion, sphinx-click) gets them all loaded.
        for name in COMMAND_MODULES:
            self.get_command(ctx, name)
        return sorted(self.commands)

    def get_command(self, ctx: click.Context, cmd_name: str) -> Optional[click.Command]:
        if cmd_name not in self.commands and cmd_name in COMMAND_MODULES:
            module = importlib.import_module(f"kt.cli.{COMMAND_MODULES[cmd_name]}")
            for command in module.COMMANDS:
                self.add_command(command)
        return self.commands.get(cmd_name)

    def invoke(self, ctx: click.Context) -> Any:
        debug = bool(ctx.params.get("debug"))
        return translate_errors(lambda: super(KtGroup, self).invoke(ctx), debug)


@click.group(cls=KtGroup, context_settings=CONTEXT_SETTINGS)
@click.option(
    "-h",
    "--host",
    default="127.0.0.1",
    show_default=True,
    envvar="KT_HOST",
    help="Server host (or $KT_HOST).",
)
@click.option(
    "-p",
    "--port",
    type=click.IntRange(1, 65535),
    default=DEFAULT_PORT,
    show_default=True,
    envvar="KT_PORT",
    help="Server port (or $KT_PORT).",
)
@click.option(
    "--db", type=click.IntRange(0, 65535), default=0, show_default=True, help="Kyoto Tycoon database index."
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Seconds to wait for each reply (default: no limit).",
)
@click.option("--tt", "flavour", flag_value="tt", help="The server is Tokyo Tyrant.")
@click.option("--kt", "flavour", flag_value="kt", help="The server is Kyoto Tycoon.")
@click.option("--debug", is_flag=True, help="Show the traceback of an error.")
@click.version_option(package_name="kt-tycoon", prog_name="kt")
@click.pass_context
def cli(
    ctx: click.Context,
    host: str,
    port: int,
    db: int,
    timeout: Optional[float],
    flavour: Optional[str],
    debug: bool,
) -> None:
    """Work with a Kyoto Tycoon or Tokyo Tyrant server from the shell.

    Without --tt/--kt the server's kind is detected (Tokyo Tyrant answers its binary
    ``stat``).  Exit codes: 0 ok, 1 not found or failed, 2 usage error, 3 server unreachable.
    Colour is used only on a terminal, and never when NO_COLOR is set.
    """
    target = Target(host, port, db, timeout, flavour, debug)
    ctx.obj = target
    ctx.call_on_close(target.close)


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="kt")
