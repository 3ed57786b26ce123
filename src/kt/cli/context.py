"""What every ``kt`` command shares: the connection target, output, errors and exit codes.

Exit codes: 0 ok, 1 not found or a logical failure (:class:`Failure`, or a server error),
2 usage error (click's own), 3 the server could not be reached or timed out.
"""

from __future__ import annotations

import base64
import functools
import json
import socket
import sys
from typing import TYPE_CHECKING, Any, Callable, Dict, Optional, Sequence

import click

from kt.errors import KyotoTycoonError, ServerConnectionError

if TYPE_CHECKING:
    from rich.console import Console

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_CONNECTION = 0, 1, 2, 3
DEFAULT_PORT = 1978
_TT_STAT_PROBE = b"\xc8\x88"  # Tokyo Tyrant's binary ``stat``: a TT server answers 0x00 + length


class Failure(click.ClickException):
    """A logical failure (missing key, refused add...): one line on stderr, exit code 1."""

    exit_code = EXIT_FAILURE

    def show(self, file: Any = None) -> None:
        click.echo(f"kt: {self.format_message()}", err=True)


class Unreachable(Failure):
    """The server could not be reached, or did not answer in time: exit code 3."""

    exit_code = EXIT_CONNECTION


def detect_flavour(host: str, port: int, timeout: Optional[float]) -> str:
    """``"tt"`` when the server answers Tokyo Tyrant's binary ``stat``, else ``"kt"``.

    The probe ends with CRLF so a Kyoto Tycoon server sees a (bad) HTTP request line and
    answers at once with an HTTP error instead of waiting for more bytes.
    """
    wait = 2.0 if timeout is None else min(timeout, 2.0)
    try:
        with socket.create_connection((host or "127.0.0.1", port), timeout=wait) as sock:
            sock.sendall(_TT_STAT_PROBE + b"\r\n")
            first = sock.recv(5)
    except socket.timeout:
        return "kt"
    except OSError as exc:
        raise ServerConnectionError(f"{host or '127.0.0.1'}:{port}: {exc.strerror or exc}") from None
    return "tt" if first[:1] == b"\x00" else "kt"  # KT answers "HTTP/1.1 400"


class Target:
    """The server a command talks to; the client is made on first use."""

    def __init__(
        self, host: str, port: int, db: int, timeout: Optional[float], flavour: Optional[str], debug: bool
    ) -> None:
        self.host = host
        self.port = port
        self.db = db
        self.timeout = timeout
        self._flavour = flavour
        self.debug = debug
        self._client: Any = None

    # rich is imported on first use: ``kt get`` and most commands write plain bytes or JSON
    # and never need it (its import is a large part of the command's start-up time).

    @functools.cached_property
    def out(self) -> Console:
        from rich.console import Console

        return Console(highlight=False, soft_wrap=True)

    @functools.cached_property
    def err(self) -> Console:
        from rich.console import Console

        return Console(stderr=True, highlight=False, soft_wrap=True)

    @property
    def flavour(self) -> str:
        if self._flavour is None:
            self._flavour = detect_flavour(self.host, self.port, self.timeout)
        return self._flavour

    @property
    def is_tt(self) -> bool:
        return self.flavour == "tt"

    @property
    def client(self) -> Any:
        """A KyotoTycoon or TokyoTyrant client with bytes in, bytes out (``KT_NONE``)."""
        if self._client is None:
            from kt.serializers import KT_NONE

            if self.is_tt:
                from kt.tokyotyrant import TokyoTyrant

                self._client = TokyoTyrant(
                    self.host, self.port, serializer=KT_NONE, decode_keys=False, timeout=self.timeout
                )
            else:
                from kt.kyototycoon import KyotoTycoon

                self._client = KyotoTycoon(
                    self.host,
                    self.port,
                    serializer=KT_NONE,
                    decode_keys=False,
                    timeout=self.timeout,
                    default_db=self.db,
                )
        return self._client

    def require(self, flavour: str, what: str) -> None:
        if self.flavour != flavour:
            name = {"kt": "Kyoto Tycoon", "tt": "Tokyo Tyrant"}[flavour]
            raise click.UsageError(
                f"{what} needs a {name} server ({self.host or '127.0.0.1'}:{self.port} is not one)"
            )

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    # -- output ----------------------------------------------------------------------------

    def write_bytes(self, data: bytes) -> None:
        stream = sys.stdout.buffer
        stream.write(data)
        stream.flush()

    def json(self, obj: Any) -> None:
        click.echo(json.dumps(obj, ensure_ascii=False, indent=None))

    def table(self, title: Optional[str], columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        from rich.table import Table

        table = Table(title=title, show_header=True, header_style="bold")
        for column in columns:
            table.add_column(column, overflow="fold")
        for row in rows:
            table.add_row(*[str(cell) for cell in row])
        self.out.print(table)


def text(data: bytes) -> str:
    """Bytes for a human: UTF-8 when possible, else with ``\\xHH`` escapes."""
    return data.decode("utf-8", "backslashreplace")


def json_bytes(out: Dict[str, Any], name: str, data: Optional[bytes]) -> Dict[str, Any]:
    """Put ``data`` in ``out[name]`` as text, or ``out[name + "_b64"]`` when it is not UTF-8."""
    if data is None:
        out[name] = None
        return out
    try:
        out[name] = data.decode("utf-8")
    except UnicodeDecodeError:
        out[name + "_b64"] = base64.b64encode(data).decode("ascii")
    return out


json_option = click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")


def translate_errors(func: Callable[[], Any], debug: bool) -> Any:
    """Run ``func``; kt's exceptions become one-line click errors with kt's exit codes."""
    if debug:
        return func()
    try:
        return func()
    except ServerConnectionError as exc:
        raise Unreachable(str(exc)) from None
    except KyotoTycoonError as exc:
        raise Failure(str(exc)) from None
    except (BrokenPipeError, KeyboardInterrupt):
        raise
    except OSError as exc:
        where = f": {exc.filename}" if exc.filename else ""
        raise Failure(f"{exc.strerror or exc}{where}") from None
