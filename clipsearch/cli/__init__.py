"""The `clipsearch` command: a thin layer over the Python API.

Every command prints a table on a terminal and machine-readable output with --json;
errors are one clear line on stderr and exit status 1, never a traceback. The commands
are grouped by what they work on: indexing (a store's contents), searching, serving,
models, training; app holds the typer app and the entry point, console and options what
they share.
"""

from . import indexing, models, searching, serving, training  # noqa: F401 (registers commands)
from .app import app, run

__all__ = ["app", "run"]
