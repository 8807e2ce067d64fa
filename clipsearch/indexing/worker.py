"""What a decoding process does with one file: read it once, make sure it did not change
while being read, hash it (what recognises it when it moves) and decode it to the model's
square. Runs in the local decoding processes (pool.py) and in Ray's tasks alike; no torch.
"""

from __future__ import annotations

import os
from dataclasses import replace

import numpy as np

from ..core import faults
from ..images.decode import BytesSource, ImageError, ImageInfo
from ..images.formats import HEIF_EXTENSIONS, NO_HEIF, heif_support
from ..images.items import is_plain_file, read_bytes, source_stat
from ..images.pixels import Preprocessing, square
from .content import content_hash, fingerprint_of


def decode_for_index(
    path: str, prep: Preprocessing | int, expect: tuple[int, int]
) -> tuple[np.ndarray | None, ImageInfo | None, str | None]:
    """Worker-process entry point: (uint8 square, info, None) or (None, None, reason).
    Whatever goes wrong with one file (memory included) is that file's failure, never the
    run's.

    The file is read once: its bytes are hashed (what recognises it when it moves) and
    decoded. `expect` is the (size, mtime_ns) seen by the scan; a file that differs
    afterwards changed while being read, and its pixels cannot be trusted to match.
    """
    if os.path.splitext(path)[1].lower() in HEIF_EXTENSIONS and not heif_support():
        return None, None, NO_HEIF
    try:
        faults.hit("decode", path)
        data = read_bytes(path)
        held = source_stat(path)
        whole = is_plain_file(path)
        if held is not None and (held != expect or (whole and len(data) != expect[0])):
            return None, None, "changed while being read; it will be retried on the next run"
        pixels, info = square(BytesSource(path, data), prep, draft=True)
    except ImageError as e:
        return None, None, e.reason
    except FileNotFoundError as e:
        if is_plain_file(path):
            return None, None, "file not found (gone since the scan, or listed but not there)"
        return None, None, f"not found: {e}"
    except PermissionError:
        return None, None, "permission denied"
    except OSError as e:
        return None, None, f"cannot read: {e.strerror or e}"
    except MemoryError:
        return None, None, "too large to decode in memory"
    except Exception as e:  # a decoder bug on crafted data: this file's problem
        return None, None, f"cannot decode: {type(e).__name__}: {e}"
    return pixels, replace(info, fingerprint=fingerprint_of(data), content=content_hash(data)), None


def decode_many(items: list[tuple[str, tuple[int, int]]], prep: Preprocessing | int) -> list:
    """A chunk of files for one worker round trip."""
    return [decode_for_index(path, prep, expect) for path, expect in items]
