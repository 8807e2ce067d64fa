"""Helpers shared by the tests (and benchmarks): generated images, the shared emoji data,
processes, a throwaway PostgreSQL server."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
EMOJI = SHARED_DATA / "emoji"


def make_image(path: Path, size=(48, 40), seed: int = 0, mode: str = "RGB", **save) -> Path:
    """A real image file with random smooth content, so distinct seeds embed distinctly."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
    img = Image.fromarray(small).resize(size, Image.Resampling.BILINEAR)
    if mode != "RGB":
        img = img.convert(mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, **save)
    return path


FONTS = Path("/usr/share/fonts/truetype")  # Debian's fonts-dejavu-core, fonts-liberation


def font(name: str, size: int):
    """A Debian TrueType font by file name (DejaVuSans-Bold.ttf...), or a skip saying so."""
    from PIL import ImageFont

    found = sorted(FONTS.rglob(name))
    if not found:
        pytest.skip(f"font {name} not found under {FONTS} (Debian: fonts-dejavu-core)")
    return ImageFont.truetype(str(found[0]), size)


def sign(
    path: Path,
    lines: list[str],
    seed: int = 0,
    size: tuple[int, int] = (720, 400),
    typeface: str = "DejaVuSans-Bold.ttf",
    at: tuple[int, int] = (40, 60),
    height: int = 56,
) -> Path:
    """A photo of a sign: lines of text on a noisy coloured ground, as a JPEG. Each line's
    top-left corner is `at`, then `height` * 1.6 lower per line."""
    from PIL import ImageDraw

    rng = np.random.default_rng(seed)
    ground = rng.integers(150, 230, 3)
    noise = rng.normal(0, 12, (size[1], size[0], 3))
    img = Image.fromarray(np.clip(ground + noise, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    face = font(typeface, height)
    ink = tuple(int(c) for c in rng.integers(0, 70, 3))
    for i, line in enumerate(lines):
        draw.text((at[0], at[1] + int(i * height * 1.6)), line, fill=ink, font=face)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, quality=92)
    return path


def camera_photo(
    path: Path,
    seed: int,
    make: str | None,
    model: str | None,
    place: tuple[float, float] | None = None,
    lens: str | None = None,
) -> Path:
    """A JPEG whose EXIF names the camera that took it (none when make is None), and
    where (latitude, longitude in degrees) and with which lens, where given."""
    exif = Image.Exif()
    if make:
        exif[0x010F], exif[0x0110] = make, model
    if lens:
        exif.get_ifd(0x8769)[0xA434] = lens
    if place:
        gps = exif.get_ifd(0x8825)
        for ref, value, tags in ((("N", "S"), place[0], (1, 2)), (("E", "W"), place[1], (3, 4))):
            whole, rest = divmod(abs(value) * 3600, 3600)
            gps[tags[0]] = ref[value < 0]
            gps[tags[1]] = (whole, rest // 60, round(rest % 60, 4))
    return make_image(path, seed=seed, size=(96, 72), exif=exif)


def photos_with_copies(folder: Path) -> Path:
    """Five distinct pictures; p0 copied byte for byte twice, p1 re-saved as a JPEG."""
    for i in range(5):
        make_image(folder / f"p{i}.png", size=(120, 90), seed=i)
    shutil.copy(folder / "p0.png", folder / "p0-copy.png")
    shutil.copy(folder / "p0.png", folder / "p0-again.png")
    Image.open(folder / "p1.png").convert("RGB").save(folder / "p1.jpg", quality=70)
    return folder


def write_dng(
    path: Path,
    rgb: np.ndarray,
    preview: bytes | None = None,
    make: str = "Canon",
    model: str = "EOS R5",
    orientation: int = 1,
) -> Path:
    """A small real DNG, written byte by byte: the picture as a 16-bit RGGB Bayer mosaic
    in its first directory (what LibRaw demosaics), the camera and orientation tags, and
    where given a JPEG preview embedded after the mosaic, as cameras embed theirs."""
    h, w = rgb.shape[0] // 2 * 2, rgb.shape[1] // 2 * 2
    wide = rgb[:h, :w].astype(np.uint16) * 257
    mosaic = np.zeros((h, w), np.uint16)
    mosaic[0::2, 0::2], mosaic[1::2, 1::2] = wide[0::2, 0::2, 0], wide[1::2, 1::2, 2]
    mosaic[0::2, 1::2], mosaic[1::2, 0::2] = wide[0::2, 1::2, 1], wide[1::2, 0::2, 1]
    pixels = mosaic.astype("<u2").tobytes()
    body = bytearray(b"II*\x00\x00\x00\x00\x00") + pixels + (preview or b"")
    identity = [(1, 1), (0, 1), (0, 1), (0, 1), (1, 1), (0, 1), (0, 1), (0, 1), (1, 1)]
    tags = [  # (tag, TIFF type, values): 1 BYTE, 2 ASCII, 3 SHORT, 4 LONG, 10 SRATIONAL
        (254, 4, [0]), (256, 4, [w]), (257, 4, [h]), (258, 3, [16]), (259, 3, [1]),
        (262, 3, [32803]), (271, 2, make), (272, 2, model), (273, 4, [8]),
        (274, 3, [orientation]), (277, 3, [1]), (278, 4, [h]), (279, 4, [len(pixels)]),
        (284, 3, [1]), (33421, 3, [2, 2]), (33422, 1, [0, 1, 1, 2]), (50706, 1, [1, 4, 0, 0]),
        (50708, 2, f"{make} {model}"), (50717, 4, [65535]), (50721, 10, identity),
        (50778, 3, [21]),
    ]  # fmt: skip
    at = len(body)
    extra_at = at + 2 + 12 * len(tags) + 4
    ifd, extra = bytearray(struct.pack("<H", len(tags))), bytearray()
    for tag, kind, values in tags:
        if kind == 2:
            data, count = values.encode() + b"\x00", len(values) + 1
        elif kind == 10:
            data, count = b"".join(struct.pack("<ii", *v) for v in values), len(values)
        else:
            data, count = (
                struct.pack("<" + {1: "B", 3: "H", 4: "I"}[kind] * len(values), *values),
                len(values),
            )
        if len(data) <= 4:
            ifd += struct.pack("<HHI", tag, kind, count) + data.ljust(4, b"\x00")
        else:
            ifd += struct.pack("<HHII", tag, kind, count, extra_at + len(extra))
            extra += data + b"\x00" * (len(data) % 2)
    body += ifd + struct.pack("<I", 0) + extra
    body[4:8] = struct.pack("<I", at)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes(body))
    return path


def write_emoji_split(emoji: Path, out: Path, split: str, vendors: set[str]) -> Path:
    """A JSONL of (absolute image path, caption) rows for some styles of one split."""
    rows = [json.loads(line) for line in (emoji / "captions.jsonl").read_text().splitlines()]
    with open(out, "w") as f:
        for r in rows:
            if r["split"] == split and r["vendor"] in vendors:
                f.write(
                    json.dumps(
                        {
                            "image": str(emoji / r["image"]),
                            "caption": r["caption"],
                            "codepoint": r["base_codepoint"],
                        }
                    )
                    + "\n"
                )
    return out


def cached_repo(cache: Path, repo: str, files: Path, revision: str = "main") -> Path:
    """A repository in huggingface_hub's cache layout, holding the files of a folder."""
    folder = cache / f"models--{repo.replace('/', '--')}"
    commit = (revision * 40)[:40] if revision != "main" else "c" * 40
    snapshot = folder / "snapshots" / commit
    shutil.copytree(files, snapshot, dirs_exist_ok=True)
    (folder / "refs").mkdir(parents=True, exist_ok=True)
    (folder / "refs" / revision).write_text(commit)
    return snapshot


def processes_marked(marker: str) -> list[int]:
    """Processes whose environment holds `marker`: a run's own children, found again
    after the run is gone."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit() and int(proc.name) != os.getpid():
            try:
                if marker.encode() in (proc / "environ").read_bytes():
                    found.append(int(proc.name))
            except OSError:
                continue
    return found


def wait_until_gone(marker: str, seconds: float = 10) -> list[int]:
    """The marked processes still alive after up to `seconds` (they exit asynchronously)."""
    deadline = time.time() + seconds
    while (alive := processes_marked(marker)) and time.time() < deadline:
        time.sleep(0.2)
    return alive


def clustered(n: int, dim: int = 64, seed: int = 0) -> np.ndarray:
    from clipsearch.storage import synthetic

    return synthetic.clustered(n, dim, seed=seed)


def make_store(folder: Path, n: int = 4000):
    """A catalog of n clustered 64-d vectors in folders /p/0../p/3, and its vector indexes:
    (catalog, indexes, model id, vectors); the vector of file id i is vectors[i - 1]."""
    from clipsearch.storage import synthetic
    from clipsearch.storage.catalog import Catalog
    from clipsearch.storage.vector_indexes import VectorIndexes

    catalog = Catalog(f"sqlite:///{folder / 'c.db'}")
    vectors = clustered(n)
    model = ("synthetic", "none", f"digest{n}", vectors.shape[1])
    model_id = synthetic.file_vectors(
        catalog, vectors, model, lambda i: f"/p/{(i - 1) % 4}/{i - 1}.jpg"
    )
    return catalog, VectorIndexes(catalog, folder / "indexes"), model_id, vectors


@contextmanager
def serving(
    store: Path,
    api_key: str | None = None,
    model: str = "random:tiny",
    names: tuple[str, ...] = (),
    **library,
):
    """`clipsearch serve`'s app on a free loopback port, in this process: its base URL."""
    from clipsearch import Library
    from clipsearch.server import Exposure, Service, create_app, make_server

    lib = Library(store, create=True, **library)
    service = Service(lib, model)
    service.warm_up()
    server = make_server(create_app(service, Exposure("127.0.0.1", names, api_key)), "127.0.0.1", 0)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        lib.close()


@contextmanager
def serving_watched(store: Path, folder: Path, model: str = "random:tiny"):
    """`clipsearch serve --watch FOLDER` as a user starts it, on a free port: (its base
    URL, the process). Stopped with Ctrl-C (SIGINT) at the end."""
    import signal

    command = [sys.executable, "-m", "clipsearch", "serve", "--store", str(store), "--port"]
    command += ["0", "--watch", str(folder), "--model", model]
    proc = subprocess.Popen(
        command, stderr=subprocess.PIPE, text=True, env={**os.environ, "CLIPSEARCH_QUERY_LOG": "0"}
    )
    try:
        line = proc.stderr.readline()
        assert " at http" in line, line + proc.stderr.read()
        yield line.split(" at ")[1].split(" ")[0].rstrip("/"), proc
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(60)
        finally:
            proc.kill()


class PostgresUnavailable(Exception):
    """No throwaway PostgreSQL server can run here; the message says why."""


def pg_binaries() -> tuple[str, str] | None:
    """initdb and pg_ctl from PATH or Debian's versioned folders."""
    for folder in [None, *sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)]:
        initdb = shutil.which("initdb", path=str(folder) if folder else None)
        pg_ctl = shutil.which("pg_ctl", path=str(folder) if folder else None)
        if initdb and pg_ctl:
            return initdb, pg_ctl
    return None


@contextmanager
def throwaway_postgres(fsync: bool = False) -> Iterator[Callable[[], str]]:
    """A throwaway PostgreSQL server on a Unix socket in a temporary folder (run as
    `postgres` when we are root: the server refuses root), stopped and deleted on exit.
    Yields a function that makes a fresh database and returns its URL. Without `fsync`
    the server never flushes to disk (fast, and fine for data that dies with it).
    Raises PostgresUnavailable when psycopg or the server binaries are missing, or the
    server does not start."""
    try:
        import psycopg
    except ImportError:
        raise PostgresUnavailable("the PostgreSQL driver psycopg is not installed") from None
    binaries = pg_binaries()
    if binaries is None:
        raise PostgresUnavailable("PostgreSQL server binaries (initdb, pg_ctl) are not installed")
    initdb, pg_ctl = binaries
    base = Path(tempfile.mkdtemp(prefix="clipsearch-pg-"))
    as_owner: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(base, "postgres")
        as_owner = ["runuser", "-u", "postgres", "--"]
    data, log = base / "data", base / "server.log"
    started = None
    try:
        subprocess.run(
            [*as_owner, initdb, "-D", str(data), "-A", "trust", "-U", "clipsearch", "--no-sync"],
            check=True,
            capture_output=True,
        )
        options = f"-k {base} -c listen_addresses=''" + ("" if fsync else " -c fsync=off")
        started = subprocess.run(
            [*as_owner, pg_ctl, "-D", str(data), "-o", options, "-l", str(log), "-w", "start"],
            capture_output=True,
            text=True,
        )
        if started.returncode != 0:
            raise PostgresUnavailable(f"PostgreSQL did not start: {started.stderr.strip()}")
        made = itertools.count()

        def fresh_database() -> str:
            name = f"catalog{next(made)}"
            with psycopg.connect(
                f"host={base} user=clipsearch dbname=postgres", autocommit=True
            ) as c:
                c.execute(f"CREATE DATABASE {name}")
            return f"postgresql+psycopg://clipsearch@/{name}?host={base}"

        yield fresh_database
    finally:
        if started is not None and started.returncode == 0:
            stop = [*as_owner, pg_ctl, "-D", str(data), "-m", "immediate", "stop"]
            subprocess.run(stop, check=False, capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


def train_emoji_models(folder: Path) -> dict:
    """A tiny CLIP trained from scratch by clipsearch on two emoji styles (train split), then
    fine-tuned on the third style's train split (run directories `scratch` and `tuned`).
    Evaluated on the third style's `val` concepts, which neither run ever saw."""
    from clipsearch.training.train import TrainConfig, train

    two = write_emoji_split(EMOJI, folder / "train_two.jsonl", "train", {"twemoji", "noto"})
    third = write_emoji_split(EMOJI, folder / "train_third.jsonl", "train", {"openmoji"})
    val = write_emoji_split(EMOJI, folder / "val_third.jsonl", "val", {"openmoji"})
    common = dict(batch_size=128, precision="fp32", workers=1, seed=0, augment="strong")
    scratch = train(
        TrainConfig(
            data=str(two),
            val_data=str(val),
            run_dir=str(folder / "scratch"),
            arch="tiny",
            epochs=15,
            lr=2e-3,
            warmup=50,
            **common,
        )
    )
    tuned = train(
        TrainConfig(
            data=str(third),
            val_data=str(val),
            run_dir=str(folder / "tuned"),
            init=str(folder / "scratch"),
            epochs=4,
            lr=5e-4,
            warmup=10,
            **common,
        )
    )
    return {"dir": folder, "scratch": scratch, "tuned": tuned, "val": val}  # fmt: skip


def index(store_dir: Path, roots, encoder, **options):
    """Index roots into a store with one decoding process: the run's report."""
    from clipsearch.indexing.indexer import Indexer, IndexOptions
    from clipsearch.storage.store import Store

    with Store(store_dir) as store:
        return Indexer(store, encoder, IndexOptions(workers=1, **options)).run(
            [str(r) for r in roots]
        )


def open_clip_missing() -> str | None:
    """None where open_clip (the optional backend) imports here, else why not."""
    from clipsearch.models.open_clip_models import BackendMissing, open_clip_module

    try:
        open_clip_module()
    except BackendMissing as e:
        return str(e)
    return None


needs_open_clip = pytest.mark.skipif(
    open_clip_missing() is not None,
    reason="open_clip does not import here (test_open_clip_models.py runs these elsewhere)",
)


def through_every_command(model: str, tmp_path: Path):
    """`model` through each command that takes one, as a user runs them: index and query,
    serve's search (over urllib: the open_clip environment has no httpx), and one step of
    train --from. Returns the model and the trained run, both loaded: they must differ,
    a little, with the same preprocessing."""
    from urllib.request import Request, urlopen

    from typer.testing import CliRunner

    from clipsearch.cli import app
    from clipsearch.models.encoder import load_model
    from clipsearch.training.train import TrainConfig, train

    photos = [make_image(tmp_path / "photos" / f"{i}.png", seed=i) for i in range(4)]
    store = ["--store", str(tmp_path / "store")]
    runner = CliRunner()
    indexed = runner.invoke(
        app, ["index", str(tmp_path / "photos"), *store, "-m", model, "--workers", "1"]
    )
    assert indexed.exit_code == 0, indexed.output
    found = runner.invoke(app, ["query", "a photo", *store, "-f", "json"])
    assert found.exit_code == 0, found.output
    answer = json.loads(found.stdout)
    assert answer["model"] == model and len(answer["results"]) == 4
    body = json.dumps({"query": "a photo"}).encode()
    with serving(tmp_path / "store", model=model) as url:
        asked = Request(f"{url}/api/v1/search", body, {"Content-Type": "application/json"})
        with urlopen(asked, timeout=60) as served:
            assert len(json.loads(served.read())["items"]) == 4

    captions = ["a dog on a beach", "a diagram", "a red car", "a cat"]
    data = tmp_path / "pairs.jsonl"
    rows = [{"image": str(p), "caption": c} for p, c in zip(photos, captions)]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = TrainConfig(
        data=str(data), init=model, run_dir=str(tmp_path / "run"), epochs=1, batch_size=4,
        lr=1e-4, warmup=0, precision="fp32", workers=0, augment="none",
    )  # fmt: skip
    assert train(config).steps == 1
    start, tuned = load_model(model), load_model(str(tmp_path / "run"))
    assert tuned.digest != start.digest and tuned.preprocessing == start.preprocessing
    moved = np.abs(tuned.encode_text(captions) - start.encode_text(captions)).max()
    assert 0 < moved < 0.5
    return start, tuned
