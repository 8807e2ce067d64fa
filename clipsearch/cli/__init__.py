"""The `clipsearch` command: a thin layer over the Python API.

Every command prints a table on a terminal and machine-readable output with --json;
errors are one clear line on stderr and exit status 1, never a traceback. The commands
are grouped by what they work on: indexing (a store's contents), searching, serving,
models, training; importing them registers their commands, in the order `--help`
lists them. app holds the typer app and the entry point, console and options what
they share.
"""

# The commands, in the order `clipsearch --help` lists them: importing one registers it.
# isort: off
from .app import app, run
from . import models, indexing, searching, serving, training  # noqa: F401
# isort: on

__all__ = ["app", "run"]
