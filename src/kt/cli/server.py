"""Server commands: report/status/stat, sync, vacuum/optimize, ulog, and ``serve``."""

from __future__ import annotations

from typing import Dict, Optional, Tuple

import click

from kt.cli.context import Failure, Target, json_option
from kt.cli.kt_rpc_walk import ulog_list


def _show(target: Target, title: str, fields: Dict[str, str], as_json: bool) -> None:
    if as_json:
        target.json(fields)
    else:
        target.table(title, ["field", "value"], sorted(fields.items()))


@click.command()
@json_option
@click.pass_obj
def report(target: Target, as_json: bool) -> None:
    """The server-wide report (Tokyo Tyrant: its status) as a table."""
    fields = target.client.status() if target.is_tt else target.client.report()
    _show(target, f"report of {target.host}:{target.port}", fields, as_json)


@click.command()
@json_option
@click.pass_obj
def status(target: Target, as_json: bool) -> None:
    """The database's status fields (count, size, path...) as a table."""
    fields = target.client.status() if target.is_tt else target.client.status(target.db)
    where = "" if target.is_tt else f" db {target.db}"
    _show(target, f"status of {target.host}:{target.port}{where}", fields, as_json)


stat = click.Command("stat", callback=status.callback, params=status.params, help="Same as status.")


@click.command()
@click.option("--hard", is_flag=True, help="Also sync the device (KT).")
@click.option("--command", "command", help="Run this -cmd script after syncing (KT).")
@click.pass_obj
def sync(target: Target, hard: bool, command: Optional[str]) -> None:
    """Write the database to its file."""
    if target.is_tt:
        if hard or command:
            raise click.UsageError("--hard and --command are for Kyoto Tycoon")
        ok = target.client.synchronize()
    else:
        ok = target.client.synchronize(hard=hard, command=command, db=target.db)
    if not ok:
        raise Failure("synchronize failed")


@click.command()
@click.option("--step", type=click.IntRange(min=0), default=0, help="Only this many steps (0: all).")
@click.pass_obj
def vacuum(target: Target, step: int) -> None:
    """Purge expired records (Kyoto Tycoon)."""
    target.require("kt", "vacuum")
    if not target.client.vacuum(step, db=target.db):
        raise Failure("vacuum failed")


@click.command()
@click.argument("params", default="")
@click.pass_obj
def optimize(target: Target, params: str) -> None:
    """Optimize (defragment/retune) the database (Tokyo Tyrant; PARAMS as tuning text)."""
    target.require("tt", "optimize")
    if not target.client.optimize(params):
        raise Failure("optimize failed")


@click.command()
@json_option
@click.pass_obj
def ulog(target: Target, as_json: bool) -> None:
    """List the server's update-log files (Kyoto Tycoon, started with -ulog)."""
    target.require("kt", "ulog")
    files = ulog_list(target.host, target.port, target.timeout)
    if as_json:
        target.json(files)
    else:
        target.table("update logs", ["path", "size", "ts"], [[f["path"], f["size"], f["ts"]] for f in files])


@click.command(context_settings={"ignore_unknown_options": True, "help_option_names": []})
@click.argument("flavour", type=click.Choice(["kt", "tt"]))
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def serve(flavour: str, args: Tuple[str, ...]) -> None:
    """Run the bundled server: ``kt serve kt|tt [server options] [db...]``.

    The same as ``python -m kt.server``; the options are ktserver's or ttserver's own
    (``kt serve kt -h`` lists them).  The connection options of ``kt`` do not apply.
    """
    from kt.server.__main__ import main as server_main

    raise click.exceptions.Exit(server_main([flavour, *args]) or 0)


COMMANDS = [report, status, stat, sync, vacuum, optimize, ulog, serve]
