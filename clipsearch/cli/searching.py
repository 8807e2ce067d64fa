"""`query`, `similar` and `duplicates`: search a store, and print or write what it finds."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import typer

from .app import app
from .console import err, escaped, out, user_errors
from .options import (
    CameraOption,
    DbOption,
    DeviceOption,
    FormatOption,
    InOption,
    KOption,
    NearOption,
    OutputOption,
    QueryLogOption,
    QueryPrecisionOption,
    StoreModelOption,
    StoreOption,
    TextModelOption,
    export_text_tower,
    open_library,
)


def _print_answer(answer, fmt: str, output: Path | None) -> None:
    from ..query import render

    fmt = render.format_for(fmt, None if output is None else str(output))
    if fmt == "table" and output is None:
        out.print(render.table(answer.query, answer.results))
        if not answer.results:
            err.print("No results.")
        return
    text = render.results_as(fmt, answer.query, answer.model, answer.results)
    _write(text, output, f"{len(answer.results)} results")


def _write(text: str, output: Path | None, what: str) -> None:
    """Text to stdout or a file; `paths` gives names back byte for byte."""
    data = text.encode("utf-8", "surrogateescape")
    if output is None:
        sys.stdout.flush()
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    else:
        from ..core.files import write_output

        write_output(output, data)
        err.print(f"Wrote {what} to {escaped(str(output))}")


@app.command(context_settings={"allow_interspersed_args": True})
def query(
    terms: list[str] = typer.Argument(
        None, help='Words, image files and operators: "beach" + "sunset" - "people", 2:beach.'
    ),
    k: int = KOption,
    image: list[Path] = typer.Option(
        [], "--image", "-i", help="An image to search by (repeatable)."
    ),
    model: str = StoreModelOption,
    store: Path = StoreOption,
    db: str = DbOption,
    folder: list[Path] = InOption,
    after: str = typer.Option(
        None, "--after", help="Taken on or after (EXIF date, else file time)."
    ),
    before: str = typer.Option(None, "--before", help="Taken before this date."),
    ext: list[str] = typer.Option([], "--ext", help="Only these formats, e.g. jpg (repeatable)."),
    camera: str = CameraOption,
    near: str = NearOption,
    min_score: float = typer.Option(None, "--min-score", help="Drop results scoring below this."),
    sort: str = typer.Option(
        "score",
        "--sort",
        help="score (best first), -date (newest first) or date (oldest first); by date, the "
        "best 200 matches (above --min-score) are ordered.",
    ),
    exclude_self: bool = typer.Option(
        False, "--exclude-self", help="Leave query images out of the results."
    ),
    mode: str = typer.Option(
        "hybrid",
        "--mode",
        help="hybrid: by what images show and by the words files carry (names, folders, "
        "captions, camera), fused; vector: what they show only; text: words only. In the "
        'words, "a phrase" must appear as written; name:, folder:, caption:, camera: look '
        "in one field.",
    ),
    fmt: str = FormatOption,
    output: Path = OutputOption,
    device: str = DeviceOption,
    precision: str = QueryPrecisionOption,
    query_log: bool | None = QueryLogOption,
    text_model: str = TextModelOption,
) -> None:
    """Find the images that best match words, images, or a weighted combination."""
    from ..query.search import Filters

    with (
        user_errors(),
        open_library(
            store, db, device=device, precision=precision, query_log=query_log,
            text_model=text_model,
        ) as lib,
    ):  # fmt: skip
        answer = lib.search(
            terms or [],
            k=k,
            model=model,
            filters=Filters.parse(folder, after, before, ext, camera, near),
            images=[str(p) for p in image],
            min_score=min_score,
            exclude_self=exclude_self,
            sort=sort,
            mode=mode,
        )
        _print_answer(answer, fmt, output)
        export_text_tower(lib, model)


@app.command()
def similar(
    path: Path = typer.Argument(..., help="An image, indexed or not."),
    k: int = KOption,
    model: str = StoreModelOption,
    store: Path = StoreOption,
    db: str = DbOption,
    folder: list[Path] = InOption,
    camera: str = CameraOption,
    near: str = NearOption,
    fmt: str = FormatOption,
    output: Path = OutputOption,
    device: str = DeviceOption,
    precision: str = QueryPrecisionOption,
) -> None:
    """Find the images nearest to one image (the image itself excluded)."""
    from ..query.search import Filters

    with user_errors(), open_library(store, db, device=device, precision=precision) as lib:
        filters = Filters.parse(folder, camera=camera, near=near)
        answer = lib.similar(str(path), k=k, model=model, filters=filters)
        _print_answer(answer, fmt, output)


@app.command()
def duplicates(
    paths: list[Path] = typer.Argument(
        None, help="Only groups that hold one of these files, or a file under these folders."
    ),
    kind: str = typer.Option(
        "near",
        "--kind",
        help="exact: the same bytes. near: the same picture re-encoded, resized, lightly "
        "cropped or recoloured. similar: the same scene, another shot (bursts).",
    ),
    threshold: float = typer.Option(
        None,
        "--threshold",
        min=-1,
        max=1,
        help="The similarity where near or similar begins (default: measured for the "
        "model on this store's photos, once).",
    ),
    folder: list[Path] = InOption,
    camera: str = CameraOption,
    near: str = NearOption,
    model: str = StoreModelOption,
    store: Path = StoreOption,
    db: str = DbOption,
    fmt: str = FormatOption,
    output: Path = OutputOption,
    device: str = DeviceOption,
    precision: str = QueryPrecisionOption,
) -> None:
    """List groups of duplicate images, the one to keep first (largest, then oldest);
    `--format paths` prints the others. Nothing is deleted or moved."""
    from ..query import render
    from ..query.search import Filters

    with user_errors(), open_library(store, db, device=device, precision=precision) as lib:
        fmt = render.format_for(fmt, None if output is None else str(output))
        filters = Filters.parse(folder, camera=camera, near=near)
        with err.status("Finding duplicates…") if err.is_terminal else contextlib.nullcontext():
            found = lib.duplicates(kind, [str(p) for p in paths or []], filters, threshold, model)
        _say_measured(found)
        if fmt == "table" and output is None:
            out.print(render.duplicates_table(found))
            return
        _write(render.duplicates_as(fmt, found), output, f"{len(found.groups)} groups")


def _say_measured(found) -> None:
    """Where a measured threshold came from; a warning where the model tells copies from
    other photos poorly."""
    measured = found.calibrated
    if measured is None:
        return
    err.print(
        f"{found.kind.capitalize()} begins at {found.threshold:.3f}, measured for this model on "
        f"{measured.photos} of this store's photos; --threshold sets another."
    )
    if not measured.separated:
        err.print(
            f"[yellow]Warning:[/yellow] this model puts 5% of copies below {measured.copies:.3f} "
            f"and 1% of different photos above {measured.different:.3f}: a group may hold "
            "different pictures; look before you delete.",
            markup=True,
        )
