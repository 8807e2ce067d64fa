"""The options several commands share, declared once; settings dataclasses become options
through with_settings; open_library opens the store the options name, and
export_text_tower leaves its model ready for queries that start without torch."""

from __future__ import annotations

import inspect
import sys
import typing
from dataclasses import MISSING, fields
from pathlib import Path

import typer

from ..models.pretrained import DEFAULT_MODEL
from .console import err, escaped

ModelOption = typer.Option(
    DEFAULT_MODEL,
    "--model",
    "-m",
    help="Named model (see `clipsearch models`), a checkpoint file, a model directory, "
    "or random:<config> for tests.",
)
StoreModelOption = typer.Option(
    None,
    "--model",
    "-m",
    help=f"The model whose vectors to use; default: the store's only model, else {DEFAULT_MODEL}.",
)
DeviceOption = typer.Option("auto", "--device", help="auto, cpu or cuda.")
JsonOption = typer.Option(False, "--json", help="Machine-readable output.")
StoreOption = typer.Option(
    None,
    "--store",
    help="Store folder (catalog + vector indexes). Default: $CLIPSEARCH_HOME, else the user "
    "data folder.",
)
DbOption = typer.Option(None, "--db", help="SQLAlchemy URL for the catalog instead of SQLite.")
WaitOption = typer.Option(
    True,
    "--wait/--no-wait",
    help="If another clipsearch process is writing the store: wait for it (the default), or "
    "stop at once.",
)
IndexPrecisionOption = typer.Option(
    "auto",
    "--precision",
    help="auto (bf16 where the CPU has it, fp16 on CUDA, else fp32), fp32, bf16, fp16, int8. "
    "On a CPU, fp16 keeps weights in fp16 and computes in fp32.",
)
QueryPrecisionOption = typer.Option(
    "auto",
    "--precision",
    help="Query encoder precision: auto, fp32, bf16, fp16 or int8. auto: fp16 on CUDA, bf16 "
    "on CPUs that have it; else, for text queries, the fastest of int8 and fp16 weights (fp32 "
    "arithmetic) that the store's first check shows finds what fp32 finds (see `clipsearch "
    "status`), else fp32.",
)
KOption = typer.Option(10, "-k", min=1, help="Number of results.")
InOption = typer.Option([], "--in", help="Only images under this folder (repeatable).")
CameraOption = typer.Option(
    None,
    "--camera",
    help="Only photos from a camera whose make and model hold this, any case (canon, "
    "'eos r5', iphone); photos without camera data never match.",
)
NearOption = typer.Option(
    None,
    "--near",
    metavar="LAT,LON[,KM]",
    help="Only photos taken within KM (default 10) of a place, from their EXIF GPS "
    "position (48.858,2.294 or 48.858,2.294,2); photos without one never match.",
)
FormatOption = typer.Option(
    "auto",
    "--format",
    "-f",
    help="auto, table, json, jsonl, paths or html. auto: a table on the screen; with -o, "
    "what the file's extension names (.html, .json, .jsonl), else one path per line.",
)
OutputOption = typer.Option(None, "--output", "-o", help="Write to this file instead of stdout.")
TextModelOption = typer.Option(
    None,
    "--text-model",
    help="A text tower aligned to the store's model (made by train --distill-text) to read "
    "the query's words, e.g. in other languages. The store remembers it for that model; "
    "`none` goes back to the model's own.",
)
QueryLogOption = typer.Option(
    None,
    "--query-log/--no-query-log",
    help="Keep this query's vector (never its text) in the store, so that the vector index "
    "is tuned for the queries people run (off for good: CLIPSEARCH_QUERY_LOG=0).",
)


def with_settings(config: type, only: tuple[str, ...] | None = None):
    """The command also takes every field of a config dataclass that declares a flag
    (config.setting), or those `only` names: defaults, flags and help come from the field,
    declared once. They arrive in the command's **settings."""

    def wrap(command):
        hints = typing.get_type_hints(config)
        derived = [
            inspect.Parameter(
                f.name,
                inspect.Parameter.KEYWORD_ONLY,
                default=typer.Option(
                    ...
                    if f.default is MISSING and f.default_factory is MISSING
                    else (f.default if f.default is not MISSING else f.default_factory()),
                    *f.metadata["flags"],
                    help=f.metadata["help"],
                    **f.metadata["cli"],
                ),
                annotation=hints[f.name],
            )
            for f in fields(config)
            if "flags" in f.metadata and (only is None or f.name in only)
        ]
        own = [
            p
            for p in inspect.signature(command).parameters.values()
            if p.kind is not inspect.Parameter.VAR_KEYWORD
        ]
        last = [  # --json ends every option list
            p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own if p.name == "as_json"
        ]
        first = [p for p in own if p.name != "as_json"]
        command.__signature__ = inspect.Signature(first + derived + last)
        return command

    return wrap


def open_library(store: Path | None, db: str | None, create: bool = False, **kwargs):
    from ..library import Library

    return Library(store, db_url=db, create=create, **kwargs)


def export_text_tower(lib, model: str | None) -> None:
    """After a command that loaded the model in torch (an index run that embedded, a
    query), export its text tower for ONNX Runtime (once per model), so that queries start
    without torch: a few seconds, after its output. A failure leaves queries on torch,
    and says why."""

    def on_start() -> None:
        sys.stdout.flush()  # the output first, even into a pipe
        err.print("Exporting the model's text tower, once, so that queries start faster…")

    try:
        lib.export_text_tower(model, load=False, on_start=on_start)
    except Exception as e:  # numpy, the file system and ONNX Runtime raise many kinds
        reason = escaped(" ".join(str(e).split())[:200])
        err.print(f"[yellow]Warning:[/yellow] the text tower was not exported ({reason}); "
                  "queries go on with torch", markup=True)  # fmt: skip
