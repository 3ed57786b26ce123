"""Record commands: get, set, remove, incr, list, count, clear, script."""

from __future__ import annotations

import sys
from typing import Optional, Tuple

import click

from kt.cli.context import Failure, Target, json_bytes, json_option, text


def _key(key: str) -> bytes:
    return key.encode("utf-8", "surrogateescape")


@click.command()
@click.argument("key")
@json_option
@click.pass_obj
def get(target: Target, key: str, as_json: bool) -> None:
    """Print the value of KEY (exit code 1 when it does not exist)."""
    value = target.client.get(_key(key)) if target.is_tt else target.client.get(_key(key), target.db)
    if as_json:
        target.json(json_bytes(json_bytes({}, "key", _key(key)), "value", value))
        if value is None:
            raise click.exceptions.Exit(1)
        return
    if value is None:
        raise Failure(f"no record {key!r}")
    target.write_bytes(value + b"\n")


@click.command("set")
@click.argument("key")
@click.argument("value")
@click.option(
    "--xt", type=click.FloatRange(min=0, min_open=True), help="Expire after this many seconds (KT)."
)
@click.option("--add", "mode", flag_value="add", help="Only if KEY does not exist.")
@click.option("--replace", "mode", flag_value="replace", help="Only if KEY exists (KT).")
@click.option("--append", "mode", flag_value="append", help="Append VALUE to the stored value.")
@click.pass_obj
def set_(target: Target, key: str, value: str, xt: Optional[float], mode: Optional[str]) -> None:
    """Store VALUE under KEY."""
    client = target.client
    kbytes, vbytes = _key(key), _key(value)
    if target.is_tt:
        if xt is not None:
            raise click.UsageError("Tokyo Tyrant records do not expire (--xt is for Kyoto Tycoon)")
        if mode == "replace":
            raise click.UsageError("--replace is for Kyoto Tycoon")
        ok = getattr(client, mode or "set")(kbytes, vbytes)
    elif mode is None:
        ok = client.set(kbytes, vbytes, target.db, xt)
    else:
        ok = getattr(client, mode)(kbytes, vbytes, target.db, xt)
    if not ok:
        raise Failure(f"{mode or 'set'} of {key!r} refused")


@click.command()
@click.argument("keys", nargs=-1, required=True)
@click.pass_obj
def remove(target: Target, keys: Tuple[str, ...]) -> None:
    """Remove KEYS (exit code 1 when none of them existed)."""
    encoded = [_key(k) for k in keys]
    if target.is_tt:
        removed = sum(1 for k in encoded if target.client.remove(k))
    elif len(encoded) == 1:
        removed = target.client.remove(encoded[0], target.db)
    else:
        removed = target.client.remove_bulk(encoded, target.db)
    if not removed:
        raise Failure("no such record" if len(keys) == 1 else "none of the records existed")


@click.command()
@click.argument("key")
@click.argument("n", default="1")
@click.option("--float", "as_float", is_flag=True, help="Add a floating point number.")
@click.option(
    "--xt", type=click.FloatRange(min=0, min_open=True), help="Expire after this many seconds (KT)."
)
@json_option
@click.pass_obj
def incr(target: Target, key: str, n: str, as_float: bool, xt: Optional[float], as_json: bool) -> None:
    """Add N (default 1) to the number stored under KEY and print the result."""
    try:
        amount = float(n) if as_float else int(n)
    except ValueError:
        kind = "a number" if as_float else "an integer"
        raise click.BadParameter(f"{n!r} is not {kind}", param_hint="N") from None
    client = target.client
    if target.is_tt:
        if xt is not None:
            raise click.UsageError("Tokyo Tyrant records do not expire (--xt is for Kyoto Tycoon)")
        result = client.incr_double(_key(key), amount) if as_float else client.incr(_key(key), amount)
    elif as_float:
        result = client.incr_double(_key(key), amount, db=target.db, expire_time=xt)
    else:
        result = client.incr(_key(key), amount, db=target.db, expire_time=xt)
    if as_json:
        target.json({"key": key, "value": result})
    else:
        click.echo(result)


@click.command("list")
@click.argument("prefix", required=False)
@click.option("--regex", help="Keys matching this POSIX regular expression instead.")
@click.option("--max", "max_keys", type=click.IntRange(min=0), help="At most this many keys.")
@json_option
@click.pass_obj
def list_(
    target: Target, prefix: Optional[str], regex: Optional[str], max_keys: Optional[int], as_json: bool
) -> None:
    """List keys: all, those starting with PREFIX, or those matching --regex."""
    if prefix is not None and regex is not None:
        raise click.UsageError("give a PREFIX or --regex, not both")
    client = target.client
    if regex is not None:
        keys = (
            client.match_regex(regex, max_keys)
            if target.is_tt
            else client.match_regex(regex, max_keys, target.db)
        )
    elif target.is_tt:
        keys = client.match_prefix(_key(prefix or ""), max_keys)
    else:
        keys = client.match_prefix(_key(prefix or ""), max_keys, target.db)
    if as_json:
        target.json([json_bytes({}, "key", k) for k in keys])
        return
    stream = sys.stdout.buffer
    for k in keys:
        stream.write(k + b"\n")


@click.command()
@json_option
@click.pass_obj
def count(target: Target, as_json: bool) -> None:
    """Print the number of records."""
    number = target.client.count() if target.is_tt else target.client.count(target.db)
    target.json({"count": number}) if as_json else click.echo(number)


@click.command()
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_obj
def clear(target: Target, yes: bool) -> None:
    """Remove every record of the database."""
    if not yes:
        where = f"{target.host}:{target.port}" + ("" if target.is_tt else f" db {target.db}")
        click.confirm(f"Remove every record of {where}?", abort=True, err=True)
    ok = target.client.clear() if target.is_tt else target.client.clear(target.db)
    if not ok:
        raise Failure("clear failed")


@click.command()
@click.argument("name")
@click.argument("params", nargs=-1)
@json_option
@click.pass_obj
def script(target: Target, name: str, params: Tuple[str, ...], as_json: bool) -> None:
    """Run the server's Lua procedure NAME with PARAMS given as k=v.

    Kyoto Tycoon passes every k=v to the procedure and prints what it returns as
    ``key<TAB>value`` lines.  Tokyo Tyrant functions take ``key=...`` and ``value=...``.
    """
    data = {}
    for param in params:
        k, eq, v = param.partition("=")
        if not eq:
            raise click.BadParameter(f"{param!r} is not k=v", param_hint="PARAMS")
        data[_key(k)] = _key(v)
    if target.is_tt:
        unknown = set(data) - {b"key", b"value"}
        if unknown:
            raise click.UsageError("Tokyo Tyrant functions take only key=... and value=...")
        result = target.client.script(name, data.get(b"key"), data.get(b"value"), encode_value=False)
        target.json(json_bytes({}, "result", result)) if as_json else target.write_bytes(result + b"\n")
        return
    output = target.client.script(name, data, encode_values=False)
    if as_json:
        target.json({text(k): text(v) for k, v in output.items()})
        return
    stream = sys.stdout.buffer
    for k, v in output.items():
        stream.write(k + b"\t" + v + b"\n")


COMMANDS = [get, set_, remove, incr, list_, count, clear, script]
