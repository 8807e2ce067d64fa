"""The `clipsearch` command: a thin layer over the Python API.

Every command prints a table on a terminal and machine-readable output with --json;
errors are one clear line on stderr and exit status 1, never a traceback.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import signal
import sys
import time
import typing
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import MISSING, fields
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from ..core.config import MEMORY_BUDGET_HELP, IndexOptions, TrainConfig
from ..core.errors import explain
from ..models.pretrained import DEFAULT_MODEL, PRETRAINED, cached_file
from ..models.tokenizer import TruncationWarning

app = typer.Typer(
    help="Semantic image search on CLIP: index folders, query with words or pictures, "
    "fine-tune the model on your own captions.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

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


def with_settings(config: type):
    """The command also takes every field of a config dataclass that declares a flag
    (config.setting): defaults, flags and help come from the field, declared once. They
    arrive in the command's **settings."""

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
            if "flags" in f.metadata
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


class Terminated(KeyboardInterrupt):
    """SIGTERM (from `timeout`, systemd, kill): stop as Ctrl-C does."""


def _terminate(signum, frame) -> None:
    raise Terminated


@app.callback()
def main(
    debug: bool = typer.Option(
        False,
        "--debug",
        envvar="CLIPSEARCH_DEBUG",
        help="On an error, also print the traceback (for bug reports).",
    ),
) -> None:
    global DEBUG
    DEBUG = debug
    signal.signal(signal.SIGTERM, _terminate)


DEBUG = False


@contextmanager
def user_errors() -> Iterator[None]:
    """Failures become one line on stderr that says what to do (with the traceback too
    under --debug); Ctrl-C and SIGTERM stop cleanly; truncation becomes a warning line."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", TruncationWarning)
        try:
            yield
        except (typer.Exit, typer.Abort):
            raise
        except KeyboardInterrupt as e:
            err.print("Stopped." if isinstance(e, Terminated) else "Interrupted.")
            raise typer.Exit(143 if isinstance(e, Terminated) else 130) from None
        except Exception as e:
            if DEBUG:
                err.print_exception()
            message = explain(e)
            if message is None:
                message = (
                    f"unexpected {type(e).__name__}: {e}. This is a bug in clipsearch; run "
                    "again with --debug and report what it prints"
                )
            err.print("[red]Error:[/red] " + shown(message, multiline=True), markup=True)
            raise typer.Exit(1) from None
        finally:
            for w in caught:
                if issubclass(w.category, TruncationWarning):
                    err.print("[yellow]Warning:[/yellow] " + shown(str(w.message)), markup=True)


def on_wait(holder: str) -> None:
    err.print(f"Another clipsearch process (pid {shown(holder)}) is writing this store; waiting…")


def emit_json(data) -> None:
    from ..query.render import json_text

    sys.stdout.write(json_text(data) + "\n")


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


def open_library(store: Path | None, db: str | None, create: bool = False, **kwargs):
    from ..library import Library

    return Library(store, db_url=db, create=create, **kwargs)


@contextmanager
def progress_bar(enabled: bool, label: str) -> Iterator[Callable[[int, int, str], None] | None]:
    """A rich progress bar (count, a status text, elapsed, ETA) on a terminal; else None."""
    if not enabled:
        yield None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=err) as bar:
        task = bar.add_task(label, total=None, info="")

        def update(done: int, total: int, info: str) -> None:
            bar.update(task, completed=done, total=total, info=info)

        yield update


def shown(text: str, multiline: bool = False) -> str:
    from ..query.render import markup_safe

    return markup_safe(text, multiline)


def show_problems(report) -> None:
    for p in report.problems:
        err.print(f"[yellow]Skipped:[/yellow] {shown(p.path)}: {shown(p.reason)}", markup=True)
    for path, reason in report.failures[:20]:
        err.print(f"[red]Failed:[/red] {shown(path)}: {shown(reason)}", markup=True)
    if len(report.failures) > 20:
        err.print(f"... and {len(report.failures) - 20} more: `clipsearch status --failed`")


@app.command()
@with_settings(IndexOptions)
def index(
    paths: list[Path] = typer.Argument(..., help="Folders or files to index."),
    model: str = StoreModelOption,
    store: Path = StoreOption,
    db: str = DbOption,
    device: str = DeviceOption,
    precision: str = typer.Option(
        "auto",
        help="auto (bf16 where the CPU has it, fp16 on CUDA, else fp32), fp32, bf16, fp16, int8. "
        "On a CPU, fp16 keeps weights in fp16 and computes in fp32.",
    ),
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
    moved and deleted files; an interrupted run (Ctrl-C, kill, power cut) continues where
    it stopped. One process writes a store at a time; searching never waits."""
    from ..indexing.priority import run_in_background

    if background:
        run_in_background(threads)
    elif threads:
        os.environ["OMP_NUM_THREADS"] = str(threads)
    options = IndexOptions(**settings)
    if threads and options.workers is None:
        options.workers = threads
    dry_run = options.dry_run
    with (
        user_errors(),
        open_library(
            store, db, create=True, device=device, precision=precision, wait=wait, on_wait=on_wait
        ) as lib,
        progress_bar(out.is_terminal and not as_json, "embedding") as bar,
    ):
        start = time.perf_counter()

        def progress(done: int, total: int) -> None:
            bar(done, total, f"{done / (time.perf_counter() - start):.1f} img/s")

        report = lib.index([str(p) for p in paths], model, options, bar and progress)
    if as_json:
        emit_json(report.to_dict())
        return
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
        err.print(f"[yellow]Warning:[/yellow] {shown(report.index_error)}", markup=True)
    elif report.index_action:
        out.print(f"Vector index ({report.preset}): {report.index_action}.")
    if report.index_note:
        err.print(f"[yellow]Note:[/yellow] {shown(report.index_note)}", markup=True)
    if report.skipped_heif:
        err.print(
            f"{report.skipped_heif} HEIC/AVIF files need pillow-heif: "
            "pip install 'clipsearch[heif]'"
        )


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
    out.print(f"Store: {shown(info.store)}")
    out.print(f"Files: {info.files_ok} indexed, {info.files_failed} failed")
    table = Table(
        "model", "weights", "dim", "vectors", "index", "built", "state", "recall@10", "text queries"
    )
    for m in info.models:
        ix = m.index
        state = "-" if ix is None else ("stale (updated on next query)" if ix.stale else "current")
        table.add_row(
            shown(m.name),
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
    if info.heif_skipped:
        out.print(
            f"{info.heif_skipped} HEIC/AVIF files skipped: "
            "pip install 'clipsearch[heif]', then index again."
        )
    if failed:
        for f in info.failed:
            out.print(f"{shown(f.path)}: {shown(f.reason)}")
    elif info.failed:
        out.print("List failed files with: clipsearch status --failed")


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
        out.print(
            f"{shown(d.model)}: {d.preset} index of {d.count} vectors, search {d.params or 'exact'}"
        )
        if d.note:
            err.print(f"[yellow]Note:[/yellow] {shown(d.note)}", markup=True)


def recall_text(recall) -> str:
    sets = ", ".join(f"{name} {r:.2f}" for name, r in recall.sets.items())
    return f"recall@10 {sets} (target {recall.target:.2f}; measured {recall.measured_at})"


def show_recall_check(d) -> None:
    if d.recall is None:
        out.print(f"{shown(d.model)}: {d.preset}: exact search, recall 1.00")
        return
    params = " ".join(f"{k}={v}" for k, v in d.recall.params.items())
    out.print(f"{shown(d.model)}: {d.preset} {params}: {recall_text(d.recall)}")
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


def _filters(folders, after, before, ext):
    from ..query.search import Filters, parse_date

    return Filters(
        folders=[str(f) for f in folders],
        after=parse_date(after) if after else None,
        before=parse_date(before) if before else None,
        extensions=ext,
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
    data = text.encode("utf-8", "surrogateescape")  # `paths` gives names back byte for byte
    if output is None:
        sys.stdout.flush()
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    else:
        from ..core.files import write_atomic

        write_atomic(output, data, mode=0o666)  # a full disk leaves the old file whole
        err.print(f"Wrote {len(answer.results)} results to {shown(str(output))}")


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
    min_score: float = typer.Option(None, "--min-score", help="Drop results scoring below this."),
    exclude_self: bool = typer.Option(
        False, "--exclude-self", help="Leave query images out of the results."
    ),
    fmt: str = FormatOption,
    output: Path = OutputOption,
    device: str = DeviceOption,
    precision: str = QueryPrecisionOption,
    query_log: bool | None = QueryLogOption,
    text_model: str = TextModelOption,
) -> None:
    """Find the images that best match words, images, or a weighted combination."""
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
            filters=_filters(folder, after, before, ext),
            images=[str(p) for p in image],
            min_score=min_score,
            exclude_self=exclude_self,
        )
        _print_answer(answer, fmt, output)


@app.command()
def similar(
    path: Path = typer.Argument(..., help="An image, indexed or not."),
    k: int = KOption,
    model: str = StoreModelOption,
    store: Path = StoreOption,
    db: str = DbOption,
    folder: list[Path] = InOption,
    fmt: str = FormatOption,
    output: Path = OutputOption,
    device: str = DeviceOption,
    precision: str = QueryPrecisionOption,
) -> None:
    """Find the images nearest to one image (the image itself excluded)."""
    with user_errors(), open_library(store, db, device=device, precision=precision) as lib:
        answer = lib.similar(str(path), k=k, model=model, filters=_filters(folder, None, None, []))
        _print_answer(answer, fmt, output)


@app.command()
def serve(
    store: Path = StoreOption,
    db: str = DbOption,
    model: str = StoreModelOption,
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (loopback)."),
    port: int = typer.Option(8765, "--port", min=0, max=65535, help="Port (0: any free one)."),
    api_key: str = typer.Option(
        None,
        "--api-key",
        envvar="CLIPSEARCH_API_KEY",
        help="Require this key (X-API-Key header; the page asks once). Needed to listen "
        "beyond loopback; prefer the environment variable, which `ps` does not show.",
    ),
    no_auth: bool = typer.Option(
        False,
        "--no-auth",
        help="Listen beyond loopback without a key (anyone who can reach it sees your photos).",
    ),
    open_page: bool = typer.Option(False, "--open", help="Open the page in your browser."),
    device: str = DeviceOption,
    precision: str = QueryPrecisionOption,
    query_log: bool | None = QueryLogOption,
    text_model: str = TextModelOption,
) -> None:
    """Serve the store: a search page and a JSON API (/api/v1, documented at /docs),
    with the model and index kept warm. Runs until Ctrl-C. Images indexed meanwhile by
    `clipsearch index` in another process are found without a restart."""
    import ipaddress

    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not (loopback or api_key or no_auth):
        err.print(
            f"[red]Error:[/red] listening on {shown(host)} lets anyone who can reach it see "
            "your photos: give --api-key KEY (or set CLIPSEARCH_API_KEY), or --no-auth",
            markup=True,
        )
        raise typer.Exit(1)
    if not loopback and no_auth and not api_key:
        err.print(f"[yellow]Warning:[/yellow] serving {shown(host)} without a key", markup=True)
    with user_errors():
        import uvicorn

        from ..server import Service, create_app

        lib = open_library(store, db, create=True, device=device, precision=precision,
                           query_log=query_log, text_model=text_model)  # fmt: skip
        service = Service(lib, model)
        started = time.perf_counter()
        service.warm_up()
        config = uvicorn.Config(
            create_app(service, api_key), host=host, port=port, log_level="warning"
        )
        server = uvicorn.Server(config)
        url_host = f"[{host}]" if ":" in host else host

        def announce() -> None:
            while not server.started:
                time.sleep(0.05)
            bound = server.servers[0].sockets[0].getsockname()[1] if server.servers else port
            url = f"http://{url_host}:{bound}/"
            err.print(f"Serving {shown(str(lib.store.path))} at {url} (ready in "
                      f"{time.perf_counter() - started:.1f}s; Ctrl-C stops)")  # fmt: skip
            if open_page:
                import webbrowser

                webbrowser.open(url)

        import threading

        threading.Thread(target=announce, daemon=True).start()
        with contextlib.suppress(KeyboardInterrupt):  # raised again once it stopped cleanly
            server.run()
        lib.close()
    err.print("Stopped.")


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
        cells = [shown(f"{x['label']} {x['probability']:.0%}") for x in r["labels"]]
        table.add_row(shown(r["image"]), *cells)
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


def _command_line_errors():
    """Where the command line's errors are defined: typer's own copy of click (typer 0.2x
    and later), or click itself."""
    try:
        from typer._click import exceptions
    except ImportError:
        from click import exceptions
    return exceptions


def run(args: list[str] | None = None) -> None:
    """The `clipsearch` command: the app, with a mistyped command line told in one line
    like every other failure (click draws a box around it, under the usage)."""
    errors = _command_line_errors()
    try:
        code = app(args, prog_name="clipsearch", standalone_mode=False)
    except getattr(errors, "NoArgsIsHelpError", ()) as e:
        e.show()  # the help itself
        sys.exit(e.exit_code)
    except errors.UsageError as e:
        command = e.ctx.command_path if e.ctx else "clipsearch"
        message = shown(e.format_message().rstrip("."))
        err.print(f"[red]Error:[/red] {message} (see `{shown(command)} --help`)", markup=True)
        sys.exit(e.exit_code)
    except errors.ClickException as e:
        err.print(f"[red]Error:[/red] {shown(e.format_message())}", markup=True)
        sys.exit(e.exit_code)
    except typer.Abort:
        err.print("Aborted.")
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)
