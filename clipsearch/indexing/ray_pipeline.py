"""Decoding and embedding on a Ray cluster (Ray Data), for `clipsearch index --ray`.

Only the scheduling differs from the local pipeline: the driver plans the work from the
catalog and alone writes it, exactly as a local run does (pipeline.py); Ray Data runs the
same decoding function as CPU tasks and the same model in a pool of actors that each
load it once (one per GPU where there are GPUs), streaming results back to the driver as
they are ready. A task or actor that dies has its batch run again (Ray's retries); the
driver commits each batch it receives in one transaction, so a driver killed at any
moment leaves whole batches only, and the next run plans the rest.

Ray is an optional extra (`pip install "clipsearch[ray]"`); nothing imports this module
unless --ray is given.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from ..core import faults
from ..core.errors import ClipsearchError
from ..images.decode import ImageInfo
from ..images.pixels import Preprocessing
from . import ray_reaper
from .worker import decode_for_index


class RayRunError(ClipsearchError):
    """Ray is missing, its cluster unreachable, or the run on it failed: the message says
    which."""


@dataclass(frozen=True)
class Embedding:
    """Where the actors find the model, and the digest they must arrive at."""

    spec: str
    precision: str
    digest: str
    gpus_per_actor: float = 0.0  # 0: CPU actors


@dataclass(frozen=True)
class Decoded:
    """One item's outcome, as the driver commits it."""

    position: int  # in the planned task list
    info: ImageInfo | None
    error: str | None
    vector: np.ndarray | None


def connect(address: str | None) -> None:
    """Join a cluster (`auto`: the one the environment names; ray://host:port) or, with
    no address, start a Ray instance on this machine."""
    try:
        import ray
    except ImportError:
        raise RayRunError('--ray needs Ray: pip install "clipsearch[ray]"') from None
    if ray.is_initialized():
        return
    quiet()
    own = address is None and "RAY_ADDRESS" not in os.environ  # ray.init starts an instance
    env = {faults.VARIABLE: os.environ[faults.VARIABLE]} if faults.VARIABLE in os.environ else {}
    try:
        ray.init(
            address=address,
            runtime_env={"env_vars": env} if env else None,
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
        )
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise RayRunError(f"cannot reach the Ray cluster {address or '(local)'}: {e}") from None
    if own:
        context = ray.get_runtime_context()
        ray_reaper.start(os.path.join(context.get_temp_dir(), context.get_session_name()))


def quiet() -> None:
    """Ray's notes, progress bars and execution logs stay off the user's terminal (the
    indexer reports progress itself); its errors still reach it."""
    import ray.data

    for name in ("ray", "ray.data"):
        logging.getLogger(name).setLevel(logging.ERROR)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False


def decode_rows(batch: dict, prep: Preprocessing) -> dict:
    """Ray Data task: a batch of planned items decoded, as the local workers do it."""
    pixels, infos, errors = [], [], []
    for key, size, mtime in zip(batch["key"], batch["size"], batch["mtime_ns"]):
        square, info, error = decode_for_index(str(key), prep, (int(size), int(mtime)))
        pixels.append(square if square is not None else np.zeros((prep.size,) * 2 + (3,), np.uint8))
        infos.append(json.dumps(asdict(info), default=str) if info is not None else "")
        errors.append(error or "")
    return {
        "position": batch["position"],
        "pixels": np.stack(pixels),
        "info": np.array(infos, dtype=object),
        "error": np.array(errors, dtype=object),
    }


class Embedder:
    """Ray Data actor: the model, loaded once, embeds the batches of decoded pixels. Each
    run makes a subclass that carries its Embedding (`embedder_for`): constructor arguments
    would sit in Ray's object store, where a restarted actor might not find them."""

    embedding: Embedding

    def __init__(self):
        import torch

        embedding = self.embedding
        from ..models.encoder import load_model

        device = "cuda" if embedding.gpus_per_actor and torch.cuda.is_available() else "cpu"
        self.encoder = load_model(embedding.spec, device=device, precision=embedding.precision)
        if self.encoder.digest != embedding.digest:
            raise RuntimeError(
                f"the model {embedding.spec} loads differently on this worker (digest "
                f"{self.encoder.digest[:12]}, the driver has {embedding.digest[:12]})"
            )

    def __call__(self, batch: dict) -> dict:
        faults.hit("embed", f"{len(batch['position'])} items")
        ok = np.array([not e for e in batch["error"]])
        vectors = np.zeros((len(ok), self.encoder.dim), np.float32)
        if ok.any():
            vectors[ok] = self.encoder.encode_pixels(batch["pixels"][ok])
        return {
            "position": batch["position"],
            "vector": vectors,
            "info": batch["info"],
            "error": batch["error"],
        }


def embedder_for(embedding: Embedding) -> type[Embedder]:
    return type("Embedder", (Embedder,), {"embedding": embedding})


def cluster_gpus() -> float:
    import ray

    return float(ray.cluster_resources().get("GPU", 0))


def actors_for(embedding: Embedding) -> int:
    """One actor per GPU (or per fraction asked for); on CPUs, one per two cores, so
    decoding tasks keep cores of their own."""
    import ray

    if embedding.gpus_per_actor:
        return max(1, int(cluster_gpus() / embedding.gpus_per_actor))
    return max(1, int(ray.cluster_resources().get("CPU", 1)) // 2)


def run(
    items: Sequence[tuple[str, tuple[int, int]]],
    prep: Preprocessing,
    embedding: Embedding,
    batch_size: int,
) -> Iterator[list[Decoded]]:
    """The planned items decoded and embedded on the cluster, a batch at a time as they
    come back (in no particular order; each carries its position in `items`)."""
    import ray.data
    import ray.exceptions

    rows = [
        {"position": i, "key": key, "size": size, "mtime_ns": mtime}
        for i, (key, (size, mtime)) in enumerate(items)
    ]
    blocks = max(1, -(-len(rows) // batch_size))
    actors = actors_for(embedding)
    ds = ray.data.from_items(rows, override_num_blocks=blocks)
    ds = ds.map_batches(decode_rows, fn_kwargs={"prep": prep}, batch_size=batch_size, num_cpus=1)
    ds = ds.map_batches(
        embedder_for(embedding),
        batch_size=batch_size,
        compute=ray.data.ActorPoolStrategy(min_size=1, max_size=actors),
        num_gpus=embedding.gpus_per_actor or None,
        num_cpus=0 if embedding.gpus_per_actor else 1,
    )  # Ray Data restarts a dead actor and runs its batch again (max_restarts=-1 by default)
    try:
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
            yield _decoded(batch)
    except ray.exceptions.RayError as e:
        raise RayRunError(
            f"the Ray run stopped: {_cause(e)}; what was committed is kept and the next run "
            "goes on from there"
        ) from None


def _cause(error: Exception) -> str:
    """The error a worker raised, out of the traceback and colours Ray wraps it in."""
    lines = [ANSI.sub("", line).strip() for line in str(error).splitlines()]
    raised = [m[1] for line in lines if (m := RAISED.match(line))]
    return raised[-1] if raised else next((line for line in lines if line), type(error).__name__)


ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
RAISED = re.compile(r"[A-Za-z_.]*(?:Error|Exception): (.+)")


def _decoded(batch: dict) -> list[Decoded]:
    return [
        Decoded(int(p), _info(info), str(error) or None, None if error else vector)
        for p, info, error, vector in zip(
            batch["position"], batch["info"], batch["error"], batch["vector"]
        )
    ]


def _info(text: str) -> ImageInfo | None:
    return ImageInfo(**json.loads(text)) if text else None
