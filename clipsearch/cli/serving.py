"""`serve`: the search page and the JSON API."""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path

import typer

from .app import app
from .console import err, escaped, user_errors
from .options import (
    DbOption,
    DeviceOption,
    QueryLogOption,
    QueryPrecisionOption,
    StoreModelOption,
    StoreOption,
    TextModelOption,
    open_library,
)


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
    allowed_hosts: list[str] = typer.Option(
        [],
        "--allowed-host",
        help="Also answer requests that call the server by this name (a reverse proxy's, "
        "this machine's); repeat for more. Loopback names and the --host address always.",
    ),
    no_auth: bool = typer.Option(
        False,
        "--no-auth",
        help="Listen beyond loopback without a key (anyone who can reach it sees your photos).",
    ),
    open_page: bool = typer.Option(False, "--open", help="Open the page in your browser."),
    watch: list[Path] = typer.Option(
        [],
        "--watch",
        metavar="FOLDER",
        help="Also keep FOLDER indexed while serving, as `clipsearch watch` does (repeat for "
        "more): a photo added there is found seconds later; the page says when indexing runs.",
    ),
    device: str = DeviceOption,
    precision: str = QueryPrecisionOption,
    query_log: bool | None = QueryLogOption,
    text_model: str = TextModelOption,
) -> None:
    """Serve the store: a search page and a JSON API (/api/v1, documented at /docs),
    with the model and index kept warm. Runs until Ctrl-C. Images indexed meanwhile by
    `clipsearch index` in another process are found without a restart."""
    check_exposure(host, api_key, no_auth)
    with user_errors():
        from ..server import Exposure, Service

        lib = open_library(store, db, create=True, device=device, precision=precision,
                           query_log=query_log, text_model=text_model)  # fmt: skip
        started = time.perf_counter()
        with watching_beside(watch, lambda: open_library(store, db, create=True, device=device,
                             precision=precision), model) as watcher:  # fmt: skip
            service = Service(lib, model, watcher)
            service.warm_up()
            exposure = Exposure(host, tuple(allowed_hosts), api_key)
            run_server(service, exposure, port, lambda url: announce(lib, url, started, open_page))
        lib.close()
    err.print("Stopped.")


@contextlib.contextmanager
def watching_beside(folders: list[Path], open_store, model: str | None):
    """`serve --watch`: a Watcher on a thread of its own, with a Library of its own (the
    server's answers searches meanwhile), stopped when the server stops."""
    if not folders:
        yield None
        return
    from ..watching.watcher import Watcher

    def note(text: str) -> None:
        err.print(f"[yellow]Watching:[/yellow] {escaped(text)}", markup=True)

    with open_store() as lib:
        watcher = Watcher(lib, [str(f) for f in folders], model, on_note=note)
        stop = threading.Event()
        thread = threading.Thread(target=watcher.run_noted, args=(stop,), daemon=True)
        thread.start()
        try:
            yield watcher
        finally:
            stop.set()
            thread.join(60)  # a run in progress ends whole first


def check_exposure(host: str, api_key: str | None, no_auth: bool) -> None:
    """Beyond loopback, a key or an explicit --no-auth: photos are private."""
    import ipaddress

    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not (loopback or api_key or no_auth):
        err.print(
            f"[red]Error:[/red] listening on {escaped(host)} lets anyone who can reach it see "
            "your photos: give --api-key KEY (or set CLIPSEARCH_API_KEY), or --no-auth",
            markup=True,
        )
        raise typer.Exit(1)
    if not loopback and no_auth and not api_key:
        err.print(f"[yellow]Warning:[/yellow] serving {escaped(host)} without a key", markup=True)


def run_server(service, exposure, port: int, ready) -> None:
    """Serve until Ctrl-C or SIGTERM; `ready(url)` is called once the port is bound."""
    from ..server import create_app, make_server

    server = make_server(create_app(service, exposure), exposure.host, port)
    url_host = f"[{exposure.host}]" if ":" in exposure.host else exposure.host

    def when_bound() -> None:
        while not server.started:
            time.sleep(0.05)
        bound = server.servers[0].sockets[0].getsockname()[1] if server.servers else port
        ready(f"http://{url_host}:{bound}/")

    threading.Thread(target=when_bound, daemon=True).start()
    with contextlib.suppress(KeyboardInterrupt):  # raised again once it stopped cleanly
        server.run()


def announce(lib, url: str, started: float, open_page: bool) -> None:
    err.print(f"Serving {escaped(str(lib.store.path))} at {url} (ready in "
              f"{time.perf_counter() - started:.1f}s; Ctrl-C stops)")  # fmt: skip
    if open_page:
        import webbrowser

        webbrowser.open(url)
