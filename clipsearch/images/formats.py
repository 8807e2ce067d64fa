"""Which files are images: by extension, with HEIC/HEIF/AVIF when pillow-heif is installed.

No decoding here: the scan asks this of every name it walks.
"""

from __future__ import annotations

import os
from functools import lru_cache

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jpe", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"}
)
HEIF_EXTENSIONS = frozenset({".heic", ".heif", ".avif"})
_EXTENSIONS = IMAGE_EXTENSIONS | HEIF_EXTENSIONS


def is_image_name(name: str) -> bool:
    """An image file by its extension; HEIF ones too (without pillow-heif they are
    recorded as skipped, so that installing it later picks them up). As os.path.splitext
    reads an extension (leading dots are none), without its cost on every name walked."""
    stem, dot, ext = name.rpartition(os.sep)[2].rpartition(".")
    return bool(dot and stem.strip(".")) and f".{ext.lower()}" in _EXTENSIONS


def skipped_for_heif(error: str | None) -> bool:
    """A file recorded as failed only because pillow-heif was missing."""
    return error == NO_HEIF


NO_HEIF = "HEIC/HEIF/AVIF needs pillow-heif: pip install 'clipsearch[heif]', then index again"


@lru_cache(maxsize=1)
def heif_support() -> bool:
    """HEIC/HEIF/AVIF decode through pillow-heif when it is installed (the `heif` extra)."""
    try:
        import pillow_heif
    except ImportError:
        return False
    pillow_heif.register_heif_opener()
    if hasattr(pillow_heif, "register_avif_opener"):
        pillow_heif.register_avif_opener()
    return True
