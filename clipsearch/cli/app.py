"""The `clipsearch` command: the typer app, its global options, and the entry point that
turns a mistyped command line into one line like every other failure."""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import sys
import threading
from typing import NoReturn

import typer

from .console import TRACEBACKS, Terminated, err, escaped

app = typer.Typer(
    help="Semantic image search on CLIP: index folders, query with words or pictures, "
    "fine-tune the model on your own captions.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _terminate(signum, frame) -> None:
    raise Terminated


def _interrupted_again(unraisable) -> None:
    """sys.unraisablehook: a Ctrl-C or SIGTERM that lands while Python runs a weak
    reference's callback or a finalizer (the cycle collector runs them at any moment)
    cannot stop anything there; Python would print it as ignored and carry on. Sent
    again a moment later (from here it would be raised here), it stops the command as at
    any other moment."""
    if isinstance(unraisable.exc_value, KeyboardInterrupt):
        again = signal.SIGTERM if isinstance(unraisable.exc_value, Terminated) else signal.SIGINT
        main = threading.main_thread().ident
        threading.Timer(0.01, signal.pthread_kill, (main, again)).start()
    else:
        sys.__unraisablehook__(unraisable)


@app.callback()
def main(
    debug: bool = typer.Option(
        False,
        "--debug",
        envvar="CLIPSEARCH_DEBUG",
        help="On an error, also print the traceback (for bug reports).",
    ),
) -> None:
    TRACEBACKS["shown"] = debug
    signal.signal(signal.SIGTERM, _terminate)
    sys.unraisablehook = _interrupted_again


def _command_line_errors():
    """Where the command line's errors are defined: typer's own copy of click (typer 0.2x
    and later), or click itself."""
    try:
        from typer._click import exceptions
    except ImportError:
        from click import exceptions
    return exceptions


def run(args: list[str] | None = None) -> None:
    """The `clipsearch` command: the app, with a mistyped command line told in one line
    like every other failure (click draws a box around it, under the usage)."""
    errors = _command_line_errors()
    try:
        code = app(args, prog_name="clipsearch", standalone_mode=False)
    except getattr(errors, "NoArgsIsHelpError", ()) as e:
        e.show()  # the help itself
        sys.exit(e.exit_code)
    except errors.UsageError as e:
        command = e.ctx.command_path if e.ctx else "clipsearch"
        message = escaped(e.format_message().rstrip("."))
        err.print(f"[red]Error:[/red] {message} (see `{escaped(command)} --help`)", markup=True)
        sys.exit(e.exit_code)
    except errors.ClickException as e:
        err.print(f"[red]Error:[/red] {escaped(e.format_message())}", markup=True)
        sys.exit(e.exit_code)
    except typer.Abort:
        err.print("Aborted.")
        sys.exit(1)
    leave(code if isinstance(code, int) else 0, args if args is not None else sys.argv[1:])


# Commands that only read: once they return, their store is closed and their output
# written, and nothing of theirs waits for the interpreter's shutdown.
READING = {"query", "similar", "embed", "classify", "status", "models"}


def leave(code: int, args: list[str]) -> NoReturn:
    """Exit. Python's own shutdown with torch loaded costs 0.3-0.5 s (its modules torn
    down one by one: `python -c "import torch"` takes 1.25 s against an import of 0.9 s),
    a third of what a cold query spends after its imports; a reading command that loaded
    torch flushes its output and leaves without it. Any other command leaves through
    the shutdown, its exit handlers run, but with every object frozen out of the cycle
    collector's last passes: most of that time, and nothing they would free that the
    end of the process does not (its store is closed, its files written)."""
    command = next((a for a in args if not a.startswith("-")), None)
    if command in READING and "torch" in sys.modules:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError):  # a reader gone (`| head`) is no failure
                stream.flush()
        os._exit(code)
    gc.freeze()
    sys.exit(code)
