"""`embed`, `models`, `classify`, `merge`: the model itself, without a store."""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.table import Table

from ..models.pretrained import DEFAULT_MODEL, PRETRAINED, cached_file
from .app import app
from .console import emit_json, err, escaped, out, user_errors
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
        'Models marked "open_clip extra" need `pip install "clipsearch\\[open_clip]"` (README, '
        "Models); `--model open_clip:<arch>/<tag>` reaches any other model open_clip knows."
    )


@app.command()
def classify(
    images: list[Path] = typer.Argument(..., help="Images to classify."),
    labels: str = typer.Option(
        ..., "--labels", help='Comma-separated labels, e.g. "cat,dog,bird".'
    ),
    templates: str = typer.Option(
        "imagenet", "--templates", help="simple, imagenet (80 prompts) or a file."
    ),
    top: int = typer.Option(3, "--top", min=1, help="Labels shown per image."),
    model: str = ModelOption,
    device: str = DeviceOption,
    as_json: bool = JsonOption,
) -> None:
    """Zero-shot classification with prompt ensembling. Probabilities as the model was
    trained: over the labels for CLIP (they sum to 1), each label alone for SigLIP."""

    from ..models.encoder import load_model
    from ..training.evaluate import classify as zero_shot
    from ..training.evaluate import templates as load_templates
    from ..training.evaluate import top_labels

    names = [x.strip() for x in labels.split(",") if x.strip()]
    if len(names) < 2:
        err.print("[red]Error:[/red] give at least two --labels", markup=True)
        raise typer.Exit(2)
    with user_errors():
        probs = zero_shot(
            load_model(model, device=device), images, names, load_templates(templates)
        )
    rows = [
        {"image": str(path), "labels": [{"label": n, "probability": p} for n, p in best]}
        for path, best in zip(images, top_labels(probs, names, top))
    ]
    if as_json:
        emit_json(rows)
        return
    table = Table("image", *[f"#{i + 1}" for i in range(min(top, len(names)))])
    for r in rows:
        cells = [escaped(f"{x['label']} {x['probability']:.0%}") for x in r["labels"]]
        table.add_row(escaped(r["image"]), *cells)
    out.print(table)


@app.command()
def merge(
    a: str = typer.Argument(..., help="First model (e.g. the zero-shot one)."),
    b: str = typer.Argument(..., help="Second model (e.g. the fine-tuned one)."),
    alpha: float = typer.Option(0.5, "--alpha", help="Weight of B: (1 - alpha) A + alpha B."),
    out_dir: Path = typer.Option(..., "--out", help="Directory for the merged model."),
) -> None:
    """Interpolate two models of the same architecture (WiSE-FT)."""
    from ..models.weights import interpolate, resolve, save_weights

    with user_errors():
        merged = interpolate(resolve(a), resolve(b), alpha)
        save_weights(merged.build(), out_dir, merged.name)
    out.print(f"Wrote {merged.name} to {out_dir}")
