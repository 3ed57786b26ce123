"""The rich progress bar of ``kt export`` / ``kt import`` (its own module: rich.progress is
imported only by the commands that draw it, not by every ``kt`` command)."""

from __future__ import annotations

from typing import Optional

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text


class RateColumn(ProgressColumn):
    """Records per second."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("-- rec/s" if speed is None else f"{speed:,.0f} rec/s", style="progress.data.speed")


def progress_bar(console: Console, enabled: Optional[bool]) -> Progress:
    """A rich progress bar on stderr (by default only when stderr is a terminal)."""
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
        disable=not (console.is_terminal if enabled is None else enabled),
        refresh_per_second=4,
    )
