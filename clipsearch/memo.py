"""Small JSON files in which a store remembers costly answers (weights digests, int8 checks).

No torch here: the store owns these files, and commands like `status` never import torch.
A memo is only ever a shortcut, so it is written best effort and read forgivingly: a
read-only store or a damaged file means the answer is worked out again, never an error.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

from .files import write_atomic


class MemoFile:
    """A JSON object in one file, replaced atomically on each write."""

    def __init__(self, path: Path):
        self.path = path

    def read(self) -> dict:
        try:
            entries = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return entries if isinstance(entries, dict) else {}

    def write(self, entries: dict) -> None:
        with contextlib.suppress(OSError):
            write_atomic(self.path, json.dumps(entries, indent=1).encode())
