"""`train` (and `train --distill-text`), `eval`, `classify` and `merge`: make a model,
measure it, use it without a store, blend two."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from ..core.config import TrainConfig
from .app import app
from .console import emit_json, err, escaped, out, progress_bar, user_errors
from .options import DeviceOption, JsonOption, ModelOption, with_settings


def _metrics_table(title: str, columns: dict[str, dict | None]) -> Table:
    table = Table("metric", *columns, title=title)
    keys = next((list(m) for m in columns.values() if m), [])
    for key in keys:
        if key in ("n", "epoch", "step", "score"):
            continue
        cells = []
        for m in columns.values():
            v = None if m is None else m.get(key)
            cells.append("-" if v is None else (f"{v:.1f}" if "median" in key else f"{v:.1%}"))
        table.add_row(key.replace("_", " "), *cells)
    return table


@app.command()
@with_settings(TrainConfig)
def train(as_json: bool = JsonOption, **settings) -> None:
    """Train CLIP from scratch or fine-tune it on image-caption data. Ctrl-C saves a
    checkpoint; --resume continues. Use the result with --model RUN_DIR (or RUN_DIR/best)."""
    from ..training.train import train as run_training

    cfg = TrainConfig(**settings)
    if cfg.distill_text:
        return distill(cfg, as_json)
    with user_errors(), progress_bar(out.is_terminal and not as_json, "training") as bar:

        def progress(step: int, total: int, m: dict) -> None:
            bar(step, total, f"loss {m['loss']:.3f} lr {m['lr']:.2e} {m['images_per_s']:.0f} img/s")

        result = run_training(cfg, bar and progress)
    if not result.main_process:  # under torchrun, the first process reports
        return
    if as_json:
        from dataclasses import asdict

        emit_json(asdict(result))
        return
    state = "interrupted; continue with --resume" if result.interrupted else "done"
    out.print(
        f"Training {state}: {result.steps} steps, {result.epochs_done} epochs, "
        f"{result.images_per_s:.0f} images/s. Model: {result.run_dir}"
    )
    if result.skipped_rows:
        err.print(f"Skipped {result.skipped_rows} unusable rows.")
    if result.before or result.after:
        out.print(
            _metrics_table(
                "validation", {"before": result.before, "after": result.after, "best": result.best}
            )
        )
        if result.best:
            out.print(f"Best (epoch {result.best['epoch']}): {result.run_dir}/best")


def distill(cfg: TrainConfig, as_json: bool) -> None:
    """`train --distill-text`: a text tower that reads other languages."""
    from dataclasses import asdict

    from ..training.distill import distill_text

    with user_errors(), progress_bar(out.is_terminal and not as_json, "distilling") as bar:

        def progress(step: int, total: int, m: dict) -> None:
            bar(step, total, f"loss {m['loss']:.4f}")

        result = distill_text(cfg, bar and progress)
    if as_json:
        emit_json(asdict(result))
        return
    out.print(
        f"Text tower for {', '.join(result.languages)} (and {cfg.source_language}), "
        f"{result.steps} steps: {result.run_dir}. Search with it: clipsearch query ... "
        f"--text-model {result.run_dir}"
    )


@app.command("eval")
def evaluate_command(
    data: str = typer.Option(..., "--data", help="Image-caption data, as for train."),
    model: str = ModelOption,
    image_column: str = typer.Option(None, "--image-column"),
    caption_column: str = typer.Option(None, "--caption-column"),
    text_model: str = typer.Option(
        None,
        "--text-model",
        help="Read the captions with this text tower (made for --model by train "
        "--distill-text), as query --text-model does: scores the languages it was taught.",
    ),
    device: str = DeviceOption,
    as_json: bool = JsonOption,
) -> None:
    """Text-to-image and image-to-text recall@1/5/10 and median rank on a data set."""
    from ..models.encoder import load_model
    from ..training.data import load_pairs
    from ..training.evaluate import evaluate

    with user_errors():
        pairs = load_pairs(data, image_column, caption_column)
        reader = load_model(text_model, device=device, text_only=True) if text_model else None
        metrics = evaluate(load_model(model, device=device), pairs.rows, reader)
    if as_json:
        about = {"model": model, "text_model": text_model, "data": data}
        emit_json({**about, "skipped": pairs.skipped, **metrics})
        return
    out.print(_metrics_table(f"{model} on {data} ({metrics['n']} pairs)", {"value": metrics}))


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
