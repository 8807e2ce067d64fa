"""What the command line prints, and how: tables and progress on a terminal, JSON for
programs, every failure as one line on stderr that says what to do (the traceback too
under --debug), never a raw control character from a file name.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import typer
from rich.console import Console

from ..core.errors import FallbackWarning, TruncationWarning, explain

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)
TRACEBACKS = {"shown": False}  # --debug


class Terminated(KeyboardInterrupt):
    """SIGTERM (from `timeout`, systemd, kill): stop as Ctrl-C does."""


@contextmanager
def user_errors() -> Iterator[None]:
    """Failures become one line on stderr that says what to do (with the traceback too
    under --debug); Ctrl-C and SIGTERM stop cleanly; truncation or a fallback becomes a
    warning line."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", TruncationWarning)
        warnings.simplefilter("always", FallbackWarning)
        try:
            yield
        except (typer.Exit, typer.Abort):
            raise
        except KeyboardInterrupt as e:
            err.print("Stopped." if isinstance(e, Terminated) else "Interrupted.")
            raise typer.Exit(143 if isinstance(e, Terminated) else 130) from None
        except Exception as e:
            if TRACEBACKS["shown"]:
                err.print_exception()
            message = explain(e)
            if message is None:
                message = (
                    f"unexpected {type(e).__name__}: {e}. This is a bug in clipsearch; run "
                    "again with --debug and report what it prints"
                )
            err.print("[red]Error:[/red] " + escaped(message, multiline=True), markup=True)
            raise typer.Exit(1) from None
        finally:
            for w in caught:
                if issubclass(w.category, (TruncationWarning, FallbackWarning)):
                    err.print("[yellow]Warning:[/yellow] " + escaped(str(w.message)), markup=True)


def on_wait(holder: str) -> None:
    """`holder`: the writer's pid (on this machine), or where it is (another machine)."""
    who = f"pid {holder}" if holder.isdigit() else holder
    err.print(f"Another clipsearch process ({escaped(who)}) is writing this store; waiting…")


def emit_json(data) -> None:
    from ..query.render import json_text

    sys.stdout.write(json_text(data) + "\n")
    sys.stdout.flush()  # a line a script reads as it comes (watch --json)


@contextmanager
def progress_bar(enabled: bool, label: str) -> Iterator[Callable[[int, int, str], None] | None]:
    """A rich progress bar (count, a status text, elapsed, ETA) on a terminal; else None."""
    if not enabled:
        yield None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=err) as bar:
        task = bar.add_task(label, total=None, info="")

        def update(done: int, total: int, info: str) -> None:
            bar.update(task, completed=done, total=total, info=info)

        yield update


def escaped(text: str, multiline: bool = False) -> str:
    from ..query.render import markup_safe

    return markup_safe(text, multiline)
