"""The vector index file: FAISS's own bytes, then the tombstones, their count and a magic
marker, written atomically under a name made from the catalog's numbers.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import faiss
import numpy as np

from ..core.files import replacing

MAGIC = b"clipsix2"  # ends every index file: FAISS's own bytes, tombstones, their count


def write_index_file(path: Path, index: faiss.Index, tombstones: set[int]) -> None:
    """FAISS writes the file itself (no copy of the index in memory), then the tombstones
    follow, so a memory-mapped read finds FAISS's bytes where it expects them."""
    dead = np.fromiter(sorted(tombstones), dtype=np.int64, count=len(tombstones))
    with replacing(path) as tmp:
        try:
            faiss.write_index(index, str(tmp))
        except RuntimeError as e:  # FAISS's word for a full disk or a failed write
            raise OSError(str(e).strip().splitlines()[-1]) from None
        with open(tmp, "ab") as f:
            f.write(dead.tobytes())
            f.write(np.int64(len(dead)).tobytes())
            f.write(MAGIC)


def read_index_file(path: Path, mapped: bool) -> tuple[faiss.Index, set[int]]:
    """An index file's index and tombstones; raises on a file that is not one."""
    with open(path, "rb") as f:
        size = f.seek(0, os.SEEK_END)
        f.seek(size - 16)
        count, magic = np.frombuffer(f.read(8), np.int64)[0], f.read(8)
        if magic != MAGIC or not 0 <= count <= (size - 16) // 8:
            raise ValueError(f"{path.name} is not a clipsearch index file")
        f.seek(size - 16 - 8 * int(count))
        tombstones = set(np.frombuffer(f.read(8 * int(count)), np.int64).tolist())
    index = faiss.read_index(str(path), faiss.IO_FLAG_MMAP_IFC if mapped else 0)
    return index, tombstones


SAFE_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,31}")  # a preset name as it may appear in a file name


def index_file_name(model_id: int, preset: str, log_seq: int) -> str:
    """An index file's name, made from the catalog row's numbers, never read from it: a
    catalog that someone else can write cannot point clipsearch at any other file."""
    return f"model{int(model_id)}-{preset}-{int(log_seq)}.faiss"
