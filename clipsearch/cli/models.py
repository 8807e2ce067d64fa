"""`embed`, `models`, `classify`, `merge`: the model itself, without a store."""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.table import Table

from ..models.pretrained import DEFAULT_MODEL, PRETRAINED, cached_file
from .app import app
from .console import emit_json, err, out, user_errors
from .options import DeviceOption, JsonOption, ModelOption


@app.command()
def embed(
    text: list[str] = typer.Option([], "--text", "-t", help="A text to embed (repeatable)."),
    image: list[Path] = typer.Option([], "--image", "-i", help="An image file (repeatable)."),
    model: str = ModelOption,
    precision: str = typer.Option("fp32", help="fp32, bf16, fp16, int8 or auto."),
    device: str = DeviceOption,
    as_json: bool = JsonOption,
) -> None:
    """Print the CLIP vector of each text and image (L2-normalised, float32)."""
    if not text and not image:
        err.print("[red]Error:[/red] give at least one --text or --image", markup=True)
        raise typer.Exit(2)
    with user_errors():
        from ..models.encoder import load_model

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
    """List the named pretrained models: family, size, languages, and whether each needs
    the open_clip extra or is already downloaded."""
    rows = [
        {
            "name": p.name,
            "family": p.family,
            "params_millions": p.params_m,
            "dim": p.embed_dim,
            "languages": p.languages,
            "needs_open_clip": p.needs_open_clip,
            "repo": p.repo,
            "cached": cached_file(p),
        }
        for p in PRETRAINED.values()
    ]
    if as_json:
        emit_json(rows)
        return
    table = Table("model", "family", "params", "dim", "languages", "needs", "downloaded")
    for r in rows:
        table.add_row(
            r["name"], r["family"], f"{r['params_millions']}M", str(r["dim"]), r["languages"],
            "open_clip extra" if r["needs_open_clip"] else "", "yes" if r["cached"] else "no",
        )  # fmt: skip
    out.print(table)
    out.print(
        f"Default: {DEFAULT_MODEL}. Weights download on first use into the Hugging Face cache. "
        'Models marked "open_clip extra" need `pip install "clipsearch\\[open_clip]"` '
        "(docs/models.md); `--model open_clip:<arch>/<tag>` reaches any other model open_clip "
        "knows."
    )
