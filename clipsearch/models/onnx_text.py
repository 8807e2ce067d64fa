"""A CLIP text tower as an ONNX graph run by ONNX Runtime, so that a query can start
without importing torch.

Importing torch was half of a cold `clipsearch query` (bench/cold_query.py). ONNX Runtime
imports in about 50 ms, and opens a ViT-B/32 text tower in about 70 ms where the weights
lie beside the graph as external data (read in place, not parsed out of the graph's
protobuf) and it neither rewrites the graph nor repacks the weights when it opens them:
work that only a process asking many queries would earn back.

The graph is exported once per model digest from the loaded model and kept in the user's
cache folder under that digest (every store with that model reads it; the KEPT most
recently used stay), but only after ONNX Runtime's unit vectors have matched torch's
within TOLERANCE on texts of every length. A store where an earlier clipsearch kept one
is read too. Only clipsearch's own CLIP is exported: its tokenizer
is clipsearch's, which needs no torch; other families (open_clip's SigLIP, XLM-R) keep
torch. Export and run need `onnxruntime` only (onnx_graph.py writes the graph).
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import stat
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..core.cpu import free_cores
from .tokenizer import (
    END_OF_TEXT,
    START_OF_TEXT,
    cut_to_longest,
    default_tokenizer,
    encode_in_batches,
)

if TYPE_CHECKING:
    from .encoder import Encoder

FOLDER = "text-towers"  # in the user's cache (or an older store): one folder per digest
KEPT = 4  # towers the user's cache keeps, the most recently used (250 MB for ViT-B/32)
GRAPH, WEIGHTS, ABOUT = "tower.onnx", "tower.data", "tower.json"
OFF = "CLIPSEARCH_NO_ONNX"
MIN_RUNTIME = (1, 25)  # ONNX Runtime that checks external data paths, symbolic links too
TOLERANCE = 1e-5  # largest difference from torch's unit vectors that an export may show
_DIGEST = re.compile(r"[0-9a-f]{16}(-[0-9a-f]{8})?")  # model_digest's form
# Texts the export is checked on: empty, one token, a phrase, and one truncated; ASCII, so
# that cleaning them imports no ftfy (the vocabulary's ends are checked by ids: _checked).
CHECKED = ["", "x", "a dog on a beach at sunset", "word " * 90]


def can_run() -> bool:
    """ONNX Runtime is installed, new enough to refuse a graph whose weights lie outside
    its folder (a store, and so its towers, may come from someone else), and not turned
    off (CLIPSEARCH_NO_ONNX=1: torch reads every query, and nothing is exported)."""
    if os.environ.get(OFF, "") not in ("", "0") or importlib.util.find_spec("onnxruntime") is None:
        return False
    for distribution in ("onnxruntime", "onnxruntime-gpu"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            version = importlib.metadata.version(distribution).split(".")[:2]
            return tuple(int(part) for part in version if part.isdigit()) >= MIN_RUNTIME
    return False


def folder_for(place: Path, digest: str) -> Path | None:
    """Where the tower of the model with this digest is kept under a folder (the user's
    cache, a store); None for a string that is not a digest (it is read from a store's
    files, which may come from someone else)."""
    return place / FOLDER / digest if _DIGEST.fullmatch(digest) else None


def can_keep(place: Path) -> bool:
    """Towers can be kept under this folder: it can be written, or made where it can be
    (the user's cache may be read-only, or not a folder at all, wherever CLIPSEARCH_CACHE
    points). Nothing is created to learn it."""
    folder = place.absolute() / FOLDER
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder.is_dir() and os.access(folder, os.W_OK)


def used(folder: Path) -> None:
    """Count the tower as used now, for keeping the most recently used (prune)."""
    with contextlib.suppress(OSError):  # a folder this user cannot write
        os.utime(folder)


def prune(towers: Path, keep: int = KEPT) -> None:
    """Delete all but the `keep` most recently used towers in this folder of towers."""

    def last_used(folder: Path) -> float:
        with contextlib.suppress(OSError):
            return folder.stat().st_mtime
        return 0.0

    found = [p for p in towers.iterdir() if _DIGEST.fullmatch(p.name) and p.is_dir()]
    for old in sorted(found, key=last_used, reverse=True)[keep:]:
        shutil.rmtree(old, ignore_errors=True)


def exportable_kind(encoder: Encoder) -> bool:
    """Whether the encoder's model is of a kind whose text tower exports: clipsearch's
    CLIP read from a file (random weights are for tests and benchmarks, and rebuilt from
    their spec), answering for its own weights (not a tower aligned to another's)."""
    from .model import CLIP

    return (
        isinstance(encoder.model, CLIP)
        and encoder.source is not None
        and encoder.text_key == encoder.digest
    )


def exportable(encoder: Encoder) -> bool:
    """Whether the encoder's text tower can be exported as it stands: of a kind that
    exports, on the CPU, in fp32, its modules not yet packed for oneDNN."""
    return exportable_kind(encoder) and encoder.device.type == "cpu" and encoder.text_as_built


class OnnxTextTower:
    """The text half of an Encoder, for queries: texts in, unit vectors out."""

    text_only = True
    precision = "fp32"

    def __init__(self, folder: Path, name: str, digest: str):
        import onnxruntime as ort

        for file in (GRAPH, WEIGHTS, ABOUT):  # not links to anything elsewhere
            if not stat.S_ISREG(os.lstat(folder / file).st_mode):
                raise ValueError(f"{file} is not a plain file")
        about = json.loads((folder / ABOUT).read_text())
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        options.add_session_config_entry("session.disable_prepacking", "1")
        options.intra_op_num_threads = free_cores()  # on a busy machine, one (core/cpu.py)
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only: they come back as exceptions
        self._session = ort.InferenceSession(
            str(folder / GRAPH), options, providers=["CPUExecutionProvider"]
        )
        self.name, self.digest, self.text_key = name, digest, digest
        self.dim = int(about["dim"])
        self.tokenizer = default_tokenizer()
        self.texts_encoded = 0

    def encode_tokens(self, tokens: np.ndarray) -> np.ndarray:
        if len(tokens) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        ids = np.ascontiguousarray(cut_to_longest(tokens), dtype=np.int64)
        (y,) = self._session.run(None, {"tokens": ids})
        self.texts_encoded += len(tokens)
        return (y / np.linalg.norm(y, axis=1, keepdims=True)).astype(np.float32)

    def encode_text(self, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
        """Texts -> float32 (n, dim), L2-normalised, as Encoder.encode_text."""
        return encode_in_batches(texts, self.tokenizer, self.encode_tokens, self.dim, batch_size)


def export(encoder: Encoder, folder: Path) -> bool:
    """Write the encoder's text tower to `folder` (which must not exist yet), checked
    against the encoder first; False, and nothing written, where the check fails."""
    folder.parent.mkdir(mode=0o700, parents=True, exist_ok=True)  # yours alone, as a store
    work = Path(tempfile.mkdtemp(prefix=".export-", dir=folder.parent))
    try:
        _write(encoder, work)
        tower = OnnxTextTower(work, encoder.name, encoder.digest)
        if _largest_difference(encoder, tower) > TOLERANCE:
            return False
        os.replace(work, folder)  # whole or not at all; another process's export stays
        prune(folder.parent)
        return True
    except OSError:
        if folder.is_dir():  # another process finished the same export first
            return True
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _write(encoder: Encoder, folder: Path) -> None:
    from . import onnx_graph

    state = {
        k: v.detach().float().cpu().numpy()
        for k, v in encoder.model.state_dict().items()
        if not k.startswith("visual.")
    }
    with open(folder / WEIGHTS, "wb") as data:
        graph = onnx_graph.text_tower(state, encoder.config, data, WEIGHTS)
    (folder / GRAPH).write_bytes(graph)
    about = {"digest": encoder.digest, "dim": encoder.dim, "made_by": "clipsearch"}
    (folder / ABOUT).write_text(json.dumps(about))


def _largest_difference(encoder: Encoder, tower: OnnxTextTower) -> float:
    """Over _checked's rows one at a time, and the shorter ones together (padding cut to
    the longest), against torch's vectors for each row alone."""
    import torch

    tokens = _checked(encoder.tokenizer)
    rows = [cut_to_longest(tokens[i : i + 1]) for i in range(len(tokens))]
    with torch.inference_mode():
        y = torch.cat([encoder.model.encode_text(torch.from_numpy(row)) for row in rows])
        want = torch.nn.functional.normalize(y, dim=-1).numpy()
    got = np.concatenate([tower.encode_tokens(row) for row in rows])
    short = tokens[:, -1] == 0  # a batch of the full-length row costs what all the rest do
    together = tower.encode_tokens(tokens[short])
    return float(max(np.abs(got - want).max(), np.abs(together - want[short]).max()))


def _checked(tokenizer) -> np.ndarray:
    """CHECKED's token ids, and a row of the vocabulary's ends: the first and last byte
    tokens (what unicode falls back to) and word-ending byte tokens, the first and the
    last merges, start and end of text."""
    from ..core.errors import TruncationWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TruncationWarning)
        tokens = tokenizer(CHECKED)
    ends = np.zeros_like(tokens[0])
    ends[:8] = [START_OF_TEXT, 0, 255, 256, 511, 512, END_OF_TEXT - 2, END_OF_TEXT]
    return np.concatenate([tokens, ends[None]])
