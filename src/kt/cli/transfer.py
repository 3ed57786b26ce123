"""``kt export`` and ``kt import``: stream records between a server and a file.

Export walks the database with a cursor (Kyoto Tycoon: pipelined ``cur_get``; Tokyo Tyrant:
the server's iterator), so memory stays flat for any database size.  Import reads one line at
a time and stores records with ``set_bulk`` in batches; a bad line is reported with its number
and either skipped or ends the import after storing every good record before it.
"""

from __future__ import annotations

import datetime
import sys
import time
from typing import IO, Dict, Iterator, List, Optional, Tuple

import click

from kt.cli import formats
from kt.cli.context import Failure, Target
from kt.cli.formats import Record, RecordError
from kt.cli.kt_rpc_walk import walk_records


def _tt_records(target: Target) -> Iterator[Record]:
    """Tokyo Tyrant: the server's one iterator, a record per ``iternext``."""
    client = target.client
    if client.misc("iterinit", [], update_log=False) is None:
        return
    while True:
        item = client.misc("iternext", [], update_log=False)
        if not item:
            return
        yield Record(item[0], item[1] if len(item) > 1 else b"")


def source_records(target: Target) -> Iterator[Record]:
    if target.is_tt:
        return _tt_records(target)
    return walk_records(target.host, target.port, target.db, target.timeout)


def _open_output(path: str) -> IO[bytes]:
    return sys.stdout.buffer if path == "-" else open(path, "wb")


def _open_input(path: str) -> IO[bytes]:
    return sys.stdin.buffer if path == "-" else open(path, "rb")


_FORMAT = click.option(
    "--format",
    "fmt",
    type=click.Choice(formats.FORMATS),
    help="File format (default: from the file name's suffix, else tsv).",
)
_HEX = click.option(
    "--hex", "hex_", is_flag=True, help="tsv with hex keys and values (ktremotemgr list -px / import -sx)."
)
_PROGRESS = click.option(
    "--progress/--no-progress", default=None, help="Show a progress bar (default: when stderr is a terminal)."
)
_QUIET = click.option("-q", "--quiet", is_flag=True, help="No summary line.")


@click.command("export")
@click.argument("file", default="-")
@_FORMAT
@_HEX
@click.option("--no-xt", is_flag=True, help="Leave the expiries out (ktremotemgr import reads 2 columns).")
@_PROGRESS
@_QUIET
@click.pass_obj
def export(
    target: Target,
    file: str,
    fmt: Optional[str],
    hex_: bool,
    no_xt: bool,
    progress: Optional[bool],
    quiet: bool,
) -> None:
    """Write every record to FILE (default: stdout) as tsv, jsonl or csv.

    Each line holds a key, its value and, when it expires, the absolute Unix time it expires
    at.  Plain text is written as it is; tabs, line breaks, backslashes and bytes that are not
    UTF-8 are escaped (\\t \\n \\r \\\\ \\xHH).
    """
    fmt = fmt or formats.guess_format(None if file == "-" else file)
    encode, _ = _codec(fmt, hex_)
    total = target.client.count() if target.is_tt else target.client.count(target.db)
    started = time.perf_counter()
    written = nbytes = 0
    out = _open_output(file)
    try:
        out.write(formats.HEADERS.get(fmt, b""))
        from kt.cli.progress import progress_bar  # rich.progress: only when a transfer runs

        with progress_bar(target.err, progress) as bar:
            task = bar.add_task("export", total=total)
            batch: List[bytes] = []
            for record in source_records(target):
                line = encode(record._replace(xt=None) if no_xt and record.xt else record)
                batch.append(line)
                nbytes += len(record.key) + len(record.value)
                if len(batch) >= 1000:
                    out.write(b"".join(batch))
                    written += len(batch)
                    bar.update(task, completed=written)
                    batch.clear()
            out.write(b"".join(batch))
            written += len(batch)
            bar.update(task, completed=written, total=written)  # count includes unpurged expired
        out.flush()
    finally:
        if file != "-":
            out.close()
    if not quiet:
        _summary(target, "exported", written, nbytes, time.perf_counter() - started, 0)


def _codec(fmt: str, hex_: bool) -> Tuple[formats.Encoder, formats.Decoder]:
    try:
        return formats.codec(fmt, hex_)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None


def _summary(target: Target, verb: str, records: int, nbytes: int, seconds: float, errors: int) -> None:
    rate = records / seconds if seconds > 0 else 0.0
    tail = f", {errors:,} bad line{'s' if errors != 1 else ''}" if errors or verb == "imported" else ""
    target.err.print(
        f"{verb} {records:,} records ({nbytes / 1e6:,.1f} MB) in {seconds:.2f} s, {rate:,.0f} rec/s{tail}"
    )


def read_lines(stream: IO[bytes], decode: formats.Decoder, skip_header: bool) -> Iterator[Tuple[int, object]]:
    """``(line number, Record or RecordError)`` for every non-empty line of ``stream``."""
    lineno = 0
    for raw in stream:
        lineno += 1
        if skip_header and lineno == 1:
            continue
        if raw.endswith(b"\n"):
            line = raw[:-2] if raw.endswith(b"\r\n") else raw[:-1]
        else:
            yield lineno, RecordError("truncated: the file ends in the middle of this line (no newline)")
            return
        if not line:
            continue
        try:
            yield lineno, decode(line)
        except RecordError as exc:
            yield lineno, exc


class BatchWriter:
    """Collects records and stores them with ``set_bulk``, one call per distinct expiry."""

    def __init__(self, target: Target, batch_size: int, expire: Optional[float]) -> None:
        self.target = target
        self.batch_size = batch_size
        self.expire = expire
        self.pending: Dict[bytes, Tuple[bytes, Optional[int]]] = {}
        self.stored = 0
        self.warned = False

    def add(self, record: Record) -> None:
        self.pending[record.key] = (record.value, record.xt)
        if len(self.pending) >= self.batch_size:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        target, client = self.target, self.target.client
        if target.is_tt:
            if not self.warned and any(xt is not None for _, xt in self.pending.values()):
                target.err.print("kt: Tokyo Tyrant records do not expire: the file's expiries are ignored")
                self.warned = True
            client.set_bulk({k: v for k, (v, _) in self.pending.items()})
        else:
            groups: Dict[Optional[int], Dict[bytes, bytes]] = {}
            for key, (value, xt) in self.pending.items():
                groups.setdefault(xt, {})[key] = value
            for xt, data in groups.items():
                client.set_bulk(data, db=target.db, expire_time=self._expire_time(xt))
        self.stored += len(self.pending)
        self.pending.clear()

    def _expire_time(self, xt: Optional[int]):
        if self.expire is not None:
            return self.expire
        if xt is None:
            return None
        return datetime.datetime.fromtimestamp(xt, tz=datetime.timezone.utc)


@click.command("import")
@click.argument("file", default="-")
@_FORMAT
@_HEX
@click.option(
    "--xt",
    type=click.FloatRange(min=0, min_open=True),
    help="Expire every record after this many seconds (instead of the file's expiries; KT).",
)
@click.option(
    "--batch", type=click.IntRange(min=1), default=1000, show_default=True, help="Records per set_bulk call."
)
@click.option(
    "--on-error",
    type=click.Choice(["stop", "skip"]),
    default="stop",
    show_default=True,
    help="What a bad line does: end the import (after storing every good line before it) "
    "or get reported and skipped.",
)
@_PROGRESS
@_QUIET
@click.pass_obj
def import_(
    target: Target,
    file: str,
    fmt: Optional[str],
    hex_: bool,
    xt: Optional[float],
    batch: int,
    on_error: str,
    progress: Optional[bool],
    quiet: bool,
) -> None:
    """Store the records of FILE (default: stdin), as written by ``kt export``.

    Lines hold ``key, value[, xt]`` with xt an absolute Unix time.  A bad line is reported
    as ``FILE:LINE: what is wrong``; the exit code is 1 when any line was bad.
    """
    fmt = fmt or formats.guess_format(None if file == "-" else file)
    _, decode = _codec(fmt, hex_)
    if target.is_tt and xt is not None:
        raise click.UsageError("Tokyo Tyrant records do not expire (--xt is for Kyoto Tycoon)")
    name = "<stdin>" if file == "-" else file
    source = _open_input(file)
    total = _count_lines(file)
    writer = BatchWriter(target, batch, xt)
    started = time.perf_counter()
    errors = nbytes = 0
    try:
        from kt.cli.progress import progress_bar  # rich.progress: only when a transfer runs

        with progress_bar(target.err, progress) as bar:
            task = bar.add_task("import", total=total)
            for lineno, item in read_lines(source, decode, fmt in formats.HEADERS):
                if isinstance(item, RecordError):
                    errors += 1
                    target.err.print(f"{name}:{lineno}: {item}", markup=False, highlight=False)
                    if on_error == "stop":
                        break
                    continue
                writer.add(item)  # type: ignore[arg-type]
                nbytes += len(item.key) + len(item.value)  # type: ignore[attr-defined]
                if lineno % 1000 == 0:
                    bar.update(task, completed=lineno)
            writer.flush()
            bar.update(task, completed=total or writer.stored)
    finally:
        if file != "-":
            source.close()
    if not quiet:
        _summary(target, "imported", writer.stored, nbytes, time.perf_counter() - started, errors)
    if errors:
        raise Failure(
            f"{errors} bad line{'s' if errors != 1 else ''} "
            f"({'stopped at the first' if on_error == 'stop' else 'skipped'})"
        )


def _count_lines(file: str) -> Optional[int]:
    """Lines of a regular file (for the ETA); None for stdin."""
    if file == "-":
        return None
    lines = 0
    with open(file, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            lines += block.count(b"\n")
    return lines


COMMANDS = [export, import_]
