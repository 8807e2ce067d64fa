"""`train` (and `train --distill-text`) and `eval`: make a model, and measure one."""

from __future__ import annotations

import typer
from rich.table import Table

from ..core.config import TrainConfig
from .app import app
from .console import emit_json, err, out, progress_bar, user_errors
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
    device: str = DeviceOption,
    as_json: bool = JsonOption,
) -> None:
    """Text-to-image and image-to-text recall@1/5/10 and median rank on a data set."""
    from ..models.encoder import load_model
    from ..training.data import load_pairs
    from ..training.evaluate import evaluate

    with user_errors():
        pairs = load_pairs(data, image_column, caption_column)
        metrics = evaluate(load_model(model, device=device), pairs.rows)
    if as_json:
        emit_json({"model": model, "data": data, "skipped": pairs.skipped, **metrics})
        return
    out.print(_metrics_table(f"{model} on {data} ({metrics['n']} pairs)", {"value": metrics}))
