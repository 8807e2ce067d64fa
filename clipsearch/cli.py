"""The `clipsearch` command: a thin layer over the Python API.

Every command prints a table on a terminal and machine-readable output with --json;
errors are one clear line on stderr and exit status 1, never a traceback.
"""

from __future__ import annotations

import json
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from .encoder import PRECISIONS, load_model
from .preprocess import ImageError
from .tokenizer import TruncationWarning
from .weights import DEFAULT_MODEL, PRETRAINED, WeightsError, cached_file

app = typer.Typer(
    help="Semantic image search on CLIP: index folders, query with words or pictures, "
    "fine-tune the model on your own captions.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

USER_ERRORS: tuple[type[Exception], ...] = (WeightsError, ImageError, ValueError, OSError)

ModelOption = typer.Option(
    DEFAULT_MODEL,
    "--model",
    "-m",
    help="Named model (see `clipsearch models`), a checkpoint file, a model directory, "
    "or random:<config> for tests.",
)
DeviceOption = typer.Option("auto", "--device", help="auto, cpu or cuda.")
JsonOption = typer.Option(False, "--json", help="Machine-readable output.")


def register_errors(*types: type[Exception]) -> None:
    """Other modules add their user-facing exception types here."""
    global USER_ERRORS
    USER_ERRORS = (*USER_ERRORS, *types)


@contextmanager
def user_errors() -> Iterator[None]:
    """Known failures become one line on stderr; truncation becomes a warning line."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", TruncationWarning)
        try:
            yield
        except USER_ERRORS as e:
            err.print(f"[red]Error:[/red] {e}", markup=True)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            err.print("Interrupted.")
            raise typer.Exit(130) from None
        finally:
            for w in caught:
                if issubclass(w.category, TruncationWarning):
                    err.print(f"[yellow]Warning:[/yellow] {w.message}", markup=True)


def emit_json(data) -> None:
    sys.stdout.write(json.dumps(data, ensure_ascii=False) + "\n")


@app.command()
def embed(
    text: list[str] = typer.Option([], "--text", "-t", help="A text to embed (repeatable)."),
    image: list[Path] = typer.Option([], "--image", "-i", help="An image file (repeatable)."),
    model: str = ModelOption,
    precision: str = typer.Option("fp32", help=f"One of {', '.join(PRECISIONS)}."),
    device: str = DeviceOption,
    as_json: bool = JsonOption,
) -> None:
    """Print the CLIP vector of each text and image (L2-normalised, float32)."""
    if not text and not image:
        err.print("[red]Error:[/red] give at least one --text or --image", markup=True)
        raise typer.Exit(2)
    with user_errors():
        encoder = load_model(model, device=device, precision=precision)
        rows = [("text", t, v) for t, v in zip(text, encoder.encode_text(text))]
        rows += [("image", str(p), v) for p, v in zip(image, encoder.encode_images(image))]
    if as_json:
        emit_json(
            {
                "model": encoder.name,
                "digest": encoder.digest,
                "dim": encoder.dim,
                "vectors": [
                    {"kind": k, "input": s, "vector": [round(float(x), 7) for x in v]}
                    for k, s, v in rows
                ],
            }
        )
        return
    for kind, source, vector in rows:
        sys.stdout.write(f"{kind}\t{source}\t" + " ".join(f"{x:.6f}" for x in vector) + "\n")


@app.command()
def models(as_json: bool = JsonOption) -> None:
    """List the named pretrained models and whether each is already downloaded."""
    rows = [
        {"name": p.name, "repo": p.repo, "file": p.filename, "cached": cached_file(p)}
        for p in PRETRAINED.values()
    ]
    if as_json:
        emit_json(rows)
        return
    table = Table("model", "Hugging Face repository", "downloaded")
    for r in rows:
        table.add_row(r["name"], r["repo"], "yes" if r["cached"] else "no")
    out.print(table)
    out.print(
        f"Default: {DEFAULT_MODEL}. Weights download on first use into the Hugging Face cache."
    )
