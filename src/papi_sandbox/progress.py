"""Progress of long work: verify on a large ledger, jobs over many accounts, migrations, benchmark
fills.

Long work takes a :class:`Progress` hook and reports through it; it never prints. The hook does
nothing unless the caller gives one, so a library call, the server and the tests pay one no-op
call per batch. :func:`progress_for` gives the command-line one: a Rich progress display on
**stderr** only (never stdout, whose JSON or report stays machine-readable), on when stderr is a
terminal or when asked (``--progress``), off otherwise (``--no-progress``, pipes, CI logs).
Asked for while stderr is not a terminal, Rich writes each stage's final line once, at the end,
without cursor movements.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import IO, Protocol

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.progress import (
    Progress as RichProgressDisplay,
)

#: Columns of the final lines written when stderr is not a terminal.
_LOG_WIDTH = 120

#: Advances a stage by n units of work (rows, entries, accounts, steps).
Tick = Callable[[int], None]


class Progress(Protocol):
    """Where long work reports how far it got."""

    def stage(self, description: str, total: int | None = None) -> Tick:
        """Start a named stage of ``total`` units (None when unknown); returns its tick."""
        ...


def _ignore(n: int) -> None:
    return None


class NoProgress:
    """The default hook: reports nothing."""

    def stage(self, description: str, total: int | None = None) -> Tick:
        return _ignore


NO_PROGRESS: Progress = NoProgress()


class RichProgress:
    """Stages shown as Rich progress bars (description, bar, done/total, elapsed, remaining)."""

    def __init__(self, display: RichProgressDisplay) -> None:
        self._display = display

    def stage(self, description: str, total: int | None = None) -> Tick:
        task: TaskID = self._display.add_task(description, total=total)

        def tick(n: int) -> None:
            self._display.advance(task, n)

        return tick

    def finish(self) -> None:
        """Stages of unknown size end as complete bars at what they counted."""
        for state in self._display.tasks:
            if state.total is None:
                self._display.update(state.id, total=state.completed)


def wants_progress(enabled: bool | None, stream: IO[str] | None = None) -> bool:
    """``enabled`` as given, or (None) whether ``stream`` (default stderr) is a terminal."""
    if enabled is not None:
        return enabled
    target = stream if stream is not None else sys.stderr
    isatty = getattr(target, "isatty", None)
    return bool(isatty and isatty())


@contextmanager
def progress_for(enabled: bool | None, stream: IO[str] | None = None) -> Iterator[Progress]:
    """The hook for a command: a Rich display on ``stream`` (default stderr) when
    :func:`wants_progress`, else :data:`NO_PROGRESS`. The display stops when the block ends."""
    if not wants_progress(enabled, stream):
        yield NO_PROGRESS
        return
    target = stream if stream is not None else sys.stderr
    console = Console(file=target)
    if not console.is_terminal:  # a log file: whole lines, not 80-column folds
        console = Console(file=target, width=_LOG_WIDTH)
    display = RichProgressDisplay(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        refresh_per_second=4,
    )
    reporter = RichProgress(display)
    with display:
        try:
            yield reporter
        finally:
            reporter.finish()


class Batched:
    """A tick that forwards every ``every`` units (and the rest on :meth:`flush`), for loops that
    would otherwise call the display once per row."""

    def __init__(self, tick: Tick, every: int = 8192) -> None:
        self._tick = tick
        self._every = every
        self._pending = 0

    def __call__(self, n: int = 1) -> None:
        self._pending += n
        if self._pending >= self._every:
            self._tick(self._pending)
            self._pending = 0

    def flush(self) -> None:
        if self._pending:
            self._tick(self._pending)
            self._pending = 0
