"""Memory sizes as people write them ('800M', '4GB'), and the memory free now."""

from __future__ import annotations

import os
import re

from .errors import ClipsearchError


def available_memory() -> int:
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 8 << 30


SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b)?", re.IGNORECASE)


def parse_size(text: str) -> int:
    """Bytes from '800M', '4GB', '1.5GiB' or a plain number of bytes (powers of 1024 either
    way: memory is counted in them)."""
    m = SIZE.fullmatch(text.strip())
    if not m:
        raise ClipsearchError(f"not a size: {text!r}; write it as 800M, 4G or 1.5GB")
    return int(float(m[1]) * 1024 ** " kmgt".index((m[2] or " ").lower()))
