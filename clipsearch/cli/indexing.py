"""`index`, `status`, `forget`, `rebuild`: the commands that fill and keep a store."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import typer
from rich.table import Table

from ..core.config import MEMORY_BUDGET_HELP, IndexOptions
from ..images.formats import skipped_for_heif, skipped_for_raw
from .app import app
from .console import emit_json, err, escaped, on_wait, out, progress_bar, user_errors
from .options import (
    DbOption,
    DeviceOption,
    IndexPrecisionOption,
    JsonOption,
    StoreModelOption,
    StoreOption,
    WaitOption,
    export_text_tower,
    open_library,
    with_settings,
)


def show_problems(report) -> None:
    for p in report.problems:
        err.print(
            f"[yellow]Skipped:[/yellow] {escaped(p.path)}: {escaped(p.reason)}",
            markup=True,
        )
    failures = [  # files skipped for want of an extra are counted once, below
        (p, r) for p, r in report.failures if not (skipped_for_heif(r) or skipped_for_raw(r))
    ]
    for path, reason in failures[:20]:
        err.print(f"[red]Failed:[/red] {escaped(path)}: {escaped(reason)}", markup=True)
    if len(failures) > 20:
        err.print(f"... and {len(failures) - 20} more: `clipsearch status --failed`")


@app.command()
@with_settings(IndexOptions)
def index(
    paths: list[Path] = typer.Argument(..., help="Folders or files to index."),
    model: str = StoreModelOption,
    store: Path = StoreOption,
    db: str = DbOption,
    device: str = DeviceOption,
    precision: str = IndexPrecisionOption,
    wait: bool = WaitOption,
    background: bool = typer.Option(
        True,
        "--background/--foreground",
        help="background (the default): yield to interactive work on this machine (lower "
        "CPU and I/O priority, threads that sleep rather than spin while they wait), so that "
        "searches stay fast while indexing runs. --foreground: normal priority.",
    ),
    threads: int = typer.Option(
        None,
        "--threads",
        min=1,
        help="Cap the model's threads (and, unless --workers says otherwise, the decoding "
        "processes) at N, to leave cores free.",
    ),
    as_json: bool = JsonOption,
    **settings,
) -> None:
    """Embed every image under PATHS into the store. Re-runs touch only new, changed,
    moved and deleted files (one that finds nothing to do is a walk of the folders); an
    interrupted run (Ctrl-C, kill, power cut) continues where it stopped. One process
    writes a store at a time; searching never waits."""
    options = IndexOptions(**settings)
    share_the_machine(background, threads, options)
    with user_errors():
        report = settled_report(store, db, paths, model, options)
    if report is not None:
        show_report(report, options, as_json)
        return
    with (
        user_errors(),
        open_library(
            store, db, create=True, device=device, precision=precision, wait=wait, on_wait=on_wait
        ) as lib,
        progress_bar(out.is_terminal and not as_json, "indexing") as bar,
    ):
        start = time.perf_counter()

        def progress(done: int, total: int) -> None:
            bar(done, total, f"{done / (time.perf_counter() - start):.1f} img/s")

        report = lib.index([str(p) for p in paths], model, options, bar and progress, quick=False)
        show_report(report, options, as_json)
        export_text_tower(lib, model)


def settled_report(store: Path | None, db: str | None, paths: list[Path], model: str | None,
                   options: IndexOptions):  # fmt: skip
    """The report of a re-run with nothing to do, where the store's note of the last one
    still holds (indexing/settled.py): answered before the library, SQLAlchemy, numpy and
    FAISS are imported, which is most of such a run's time. None: run in full."""
    if db or options.dry_run or options.ray:
        return None
    from ..images.items import absolute_roots
    from ..indexing.settled import SettledRuns
    from ..storage.layout import default_store

    folder = Path(store).expanduser() if store else default_store()
    return SettledRuns(folder).check(absolute_roots([str(p) for p in paths]), model, options)


def show_report(report, options: IndexOptions, as_json: bool) -> None:
    if as_json:
        emit_json(report.to_dict())
    else:
        show_index_report(report, options.dry_run)


WATCHED = ("batch_size", "workers", "preset", "include_hidden", "follow_symlinks", "exclude", "ocr")


@app.command()
@with_settings(IndexOptions, only=WATCHED)
def watch(
    paths: list[Path] = typer.Argument(..., help="Folders to keep indexed."),
    model: str = StoreModelOption,
    store: Path = StoreOption,
    db: str = DbOption,
    device: str = DeviceOption,
    precision: str = IndexPrecisionOption,
    poll: float = typer.Option(
        None,
        "--poll",
        metavar="SECONDS",
        min=0.5,
        help="Look for changes every SECONDS instead of waiting for file-system events (for "
        "network shares, which send none). Without it, watch falls back to looking every 5 s "
        "where events cannot be had (the inotify watch limit reached), and says so.",
    ),
    as_json: bool = JsonOption,
    **settings,
) -> None:
    """Index PATHS, then keep them indexed: a photo added, changed, moved or deleted is
    searchable (or gone) seconds later, until Ctrl-C or SIGTERM. Runs at background
    priority; the model loads with the first photo to embed and stays loaded. With --json,
    one line per run: added, updated, moved, copied, removed, failed."""
    from ..watching.watcher import Watcher

    options = IndexOptions(**settings)
    share_the_machine(True, None, options)
    stop = threading.Event()
    with (
        user_errors(),
        open_library(
            store, db, create=True, device=device, precision=precision, on_wait=on_wait
        ) as lib,
    ):
        watcher = Watcher(
            lib, [str(p) for p in paths], model, options, poll,
            on_report=lambda report: said_of_run(report, as_json),
            on_note=lambda note: err.print(f"[yellow]Note:[/yellow] {escaped(note)}", markup=True),
        )  # fmt: skip
        if not as_json:
            err.print(f"Watching {len(watcher.roots)} folder(s); Ctrl-C stops.")
        try:
            watcher.run(stop)
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM: the run in progress stopped whole
            stop.set()
    if not as_json:
        err.print("Stopped watching.")


def said_of_run(report, as_json: bool) -> None:
    """One line per run of a watch: JSON for scripts, else a sentence when it changed
    something."""
    counts = {k: getattr(report, k) for k in ("added", "updated", "moved", "copied", "removed")}
    if as_json:
        emit_json({**counts, "failed": report.failed, "seconds": round(report.seconds, 3)})
        return
    show_problems(report)
    if any(counts.values()) or report.failed:
        done = ", ".join(f"{n} {k}" for k, n in counts.items() if n)
        failed = f"{report.failed} failed" if report.failed else ""
        out.print(f"{time.strftime('%H:%M:%S')} {', '.join(x for x in (done, failed) if x)}.")


def share_the_machine(background: bool, threads: int | None, options: IndexOptions) -> None:
    """--background and --threads, set before torch is imported (OpenMP reads its
    variables once)."""
    from ..indexing.priority import run_in_background

    if background:
        run_in_background(threads)
    elif threads:
        os.environ["OMP_NUM_THREADS"] = str(threads)
    if threads and options.workers is None:
        options.workers = threads


def show_index_report(report, dry_run: bool) -> None:
    show_problems(report)
    if dry_run:
        p = report.planned
        out.print(
            f"Dry run: would embed {p['embed']}, remove {p['remove']}, "
            f"leave {p['unchanged']} unchanged."
        )
        return
    out.print(
        f"Indexed in {report.seconds:.1f}s: {report.added} added, {report.updated} updated, "
        f"{report.moved} moved, {report.copied} copied, {report.removed} removed, "
        f"{report.failed} failed, {report.unchanged} unchanged."
    )
    if report.index_error:
        err.print(f"[yellow]Warning:[/yellow] {escaped(report.index_error)}", markup=True)
    elif report.index_action:
        out.print(f"Vector index ({report.preset}): {report.index_action}.")
    if report.index_note:
        err.print(f"[yellow]Note:[/yellow] {escaped(report.index_note)}", markup=True)
    if report.skipped_heif:
        err.print(
            f"{report.skipped_heif} HEIC/AVIF files need pillow-heif: "
            "pip install 'clipsearch[heif]'",
            markup=False,
        )
    if report.skipped_raw:
        err.print(
            f"{report.skipped_raw} RAW files have no preview to read and need rawpy: "
            "pip install 'clipsearch[raw]'",
            markup=False,
        )
    if report.text_read:
        out.print(f"Text read in {report.text_read} images.")
    if report.exif_read_again:
        out.print(f"Lens and place read for {report.exif_read_again} photos indexed before.")


@app.command()
def status(
    store: Path = StoreOption,
    db: str = DbOption,
    failed: bool = typer.Option(False, "--failed", help="List every failed file with its reason."),
    as_json: bool = JsonOption,
) -> None:
    """Show the store: files, models and their vectors, vector indexes, failures."""
    with user_errors(), open_library(store, db) as lib:
        info = lib.status()
    if as_json:
        emit_json(info.to_dict())
        return
    out.print(f"Store: {escaped(info.store)}")
    out.print(f"Files: {info.files_ok} indexed, {info.files_failed} failed")
    table = Table(
        "model", "weights", "dim", "vectors", "index", "built", "state", "recall@10", "text queries"
    )
    for m in info.models:
        ix = m.index
        state = "-" if ix is None else ("stale (updated on next query)" if ix.stale else "current")
        table.add_row(
            escaped(m.name),
            m.digest,
            str(m.dim),
            str(m.vectors),
            "-" if ix is None else f"{ix.preset} ({ix.count})",
            "-" if ix is None else ix.built_at[:19],
            state,
            recall_cell(ix),
            precision_cell(m.query_precision),
        )
    out.print(table)
    say_what_photos_hold(info)
    if failed:
        for f in info.failed:
            out.print(f"{escaped(f.path)}: {escaped(f.reason)}")
    elif info.failed:
        out.print("List failed files with: clipsearch status --failed")


def say_what_photos_hold(info) -> None:
    """Status lines on the photos: their cameras, how many have a place, what was skipped
    for want of an extra."""
    if info.cameras:
        cameras = ", ".join(f"{escaped(c.name)} ({c.photos})" for c in info.cameras)
        out.print(f"Cameras: {cameras}")
    if info.placed:
        out.print(f"Photos with a place (GPS): {info.placed}")
    if info.heif_skipped:
        out.print(
            f"{info.heif_skipped} HEIC/AVIF files skipped: "
            "pip install 'clipsearch[heif]', then index again.",
            markup=False,
        )
    if info.raw_skipped:
        out.print(
            f"{info.raw_skipped} RAW files without a preview skipped: "
            "pip install 'clipsearch[raw]', then index again.",
            markup=False,
        )


def recall_cell(index) -> str:
    """The lowest recall@10 over the query sets, as last measured."""
    if index is None or index.recall is None:
        return "exact" if index is not None and index.preset == "exact" else "-"
    low = min(index.recall.sets.values())
    flag = " (below target)" if index.recall.below else ""
    return f"{low:.2f}{flag} {index.recall.measured_at[:10]}"


def precision_cell(check) -> str:
    """What `--precision auto` does for text queries, from the store's precision check."""
    if check is None:
        return "-"
    found = ", ".join(f"{p} {a:.0%}" for p, a in check.agreement.items())
    return f"{check.uses} (same top-10: {found})"


@app.command()
def forget(
    paths: list[Path] = typer.Argument(..., help="Files or folders to remove from the store."),
    store: Path = StoreOption,
    db: str = DbOption,
    wait: bool = WaitOption,
    as_json: bool = JsonOption,
) -> None:
    """Remove files or folders from the catalog and the vector indexes (not from disk)."""
    with user_errors(), open_library(store, db, wait=wait, on_wait=on_wait) as lib:
        n = lib.forget([str(p) for p in paths])
    if as_json:
        emit_json({"forgotten": n})
    else:
        out.print(f"Forgot {n} files.")


@app.command()
def rebuild(
    preset: str = typer.Option("auto", help="auto, exact, hnsw, ivf-flat or ivf-pq."),
    model: str = typer.Option(None, "--model", "-m", help="Only this model's index."),
    memory_budget: str = typer.Option(
        None,
        "--memory-budget",
        help=MEMORY_BUDGET_HELP,
    ),
    check: bool = typer.Option(
        False,
        "--check",
        help="Rebuild nothing: measure each index's recall@10 against exact search on every "
        "query set (store images, prompts, across the modality gap, logged queries) and say "
        "what a rebuild would change where it is below target.",
    ),
    store: Path = StoreOption,
    db: str = DbOption,
    wait: bool = WaitOption,
    as_json: bool = JsonOption,
) -> None:
    """Rebuild vector indexes from the catalog (e.g. to change preset), or check them."""
    from dataclasses import asdict

    from ..core.sizes import parse_size

    with user_errors(), open_library(store, db, wait=wait, on_wait=on_wait) as lib:
        budget = parse_size(memory_budget) if memory_budget else None
        done = lib.check_recall(model) if check else lib.rebuild(preset, model, budget)
    if as_json:
        emit_json([asdict(d) for d in done])
        return
    for d in done:
        if check:
            show_recall_check(d)
            continue
        search = d.params or "exact"
        out.print(f"{escaped(d.model)}: {d.preset} index of {d.count} vectors, search {search}")
        if d.note:
            err.print(f"[yellow]Note:[/yellow] {escaped(d.note)}", markup=True)


def recall_text(recall) -> str:
    sets = ", ".join(f"{name} {r:.2f}" for name, r in recall.sets.items())
    return f"recall@10 {sets} (target {recall.target:.2f}; measured {recall.measured_at})"


def show_recall_check(d) -> None:
    if d.recall is None:
        out.print(f"{escaped(d.model)}: {d.preset}: exact search, recall 1.00")
        return
    params = " ".join(f"{k}={v}" for k, v in d.recall.params.items())
    out.print(f"{escaped(d.model)}: {d.preset} {params}: {recall_text(d.recall)}")
    if d.recall.below and d.retuned is not None:
        better = " ".join(f"{k}={v}" for k, v in d.retuned.params.items())
        verdict = (
            f"`clipsearch rebuild` would search with {better}: {recall_text(d.retuned)}"
            if not d.retuned.below
            else f"no {d.preset} setting reaches it (best: {better}); try --preset hnsw or exact"
        )
        err.print(
            f"[yellow]Below target[/yellow] on {', '.join(d.recall.below)}: {verdict}",
            markup=True,
        )
