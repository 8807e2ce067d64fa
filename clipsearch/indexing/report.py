"""What an indexing run did, file by file counted, and where its time went."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from .scan import ScanProblem

Progress = Callable[[int, int], None]  # (done, total)


@dataclass
class IndexReport:
    added: int = 0
    updated: int = 0
    moved: int = 0
    copied: int = 0
    removed: int = 0
    failed: int = 0
    unchanged: int = 0
    seconds: float = 0.0
    failures: list[tuple[str, str]] = field(default_factory=list)
    problems: list[ScanProblem] = field(default_factory=list)
    skipped_heif: int = 0
    skipped_raw: int = 0  # RAW files without a preview, for lack of rawpy
    exif_read_again: int = 0  # rows from before lens and place were read (details.py)
    text_read: int = 0  # images whose text was read (text.py)
    index_action: str = ""
    preset: str = ""
    index_error: str | None = None
    index_note: str | None = None  # why the preset is not the one asked for
    profile: dict[str, float] = field(default_factory=dict)  # seconds per part (Stopwatch)
    planned: dict[str, int] = field(default_factory=dict)  # for --dry-run

    def to_dict(self) -> dict:
        d = {k: v for k, v in self.__dict__.items() if k not in ("failures", "problems")}
        d["failures"] = [{"path": p, "reason": r} for p, r in self.failures]
        d["problems"] = [{"path": p.path, "reason": p.reason} for p in self.problems]
        return d


class Stopwatch:
    """Seconds spent in each named part of a run, summed: where the time goes."""

    def __init__(self, spent: dict[str, float]):
        self.spent = spent

    @contextmanager
    def __call__(self, part: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.spent[part] = self.spent.get(part, 0.0) + time.perf_counter() - start
