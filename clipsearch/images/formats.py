"""Which files are images: by extension, with HEIC/HEIF/AVIF when pillow-heif is installed,
and camera RAW files (raw.py reads them); a RAW with a JPEG of its name beside it is one
photo with that JPEG.

No decoding here: the scan asks this of every name it walks.
"""

from __future__ import annotations

import os
from functools import lru_cache

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jpe", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"}
)
HEIF_EXTENSIONS = frozenset({".heic", ".heif", ".avif"})
RAW_EXTENSIONS = frozenset(
    {".cr2", ".cr3", ".nef", ".arw", ".dng", ".orf", ".rw2", ".raf", ".pef", ".srw"}
)
ALL_EXTENSIONS = IMAGE_EXTENSIONS | HEIF_EXTENSIONS | RAW_EXTENSIONS
JPEG_EXTENSIONS = frozenset({".jpg", ".jpeg", ".jpe"})


def is_image_name(name: str) -> bool:
    """An image file by its extension; HEIF ones too (without pillow-heif they are
    recorded as skipped, so that installing it later picks them up)."""
    return name_extension(name) in ALL_EXTENSIONS


def name_extension(name: str) -> str:
    """A file name's extension, lower-case with its dot ("" for none), as os.path.splitext
    reads one (leading dots are none), without its cost on every name walked."""
    stem, dot, ext = name.rpartition(os.sep)[2].rpartition(".")
    return f".{ext.lower()}" if dot and stem.strip(".") else ""


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


NO_RAW = (
    "a RAW file without a preview to read; decoding it needs rawpy: "
    "pip install 'clipsearch[raw]', then index again"
)


def is_raw_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in RAW_EXTENSIONS


def skipped_for_raw(error: str | None) -> bool:
    """A file recorded as failed only because rawpy was missing."""
    return error == NO_RAW


@lru_cache(maxsize=1)
def raw_support() -> bool:
    """Whether rawpy (the `raw` extra) is installed to demosaic RAWs without a preview."""
    try:
        import rawpy  # noqa: F401
    except ImportError:
        return False
    return True


def companions(names: list[str]) -> set[str]:
    """The RAW names among a folder's that have a JPEG of the same name (any case) beside
    them: RAW+JPEG pairs, each one photo, indexed by its JPEG."""
    listing = "\n".join(names).lower() + "\n"
    if not any(f"{ext}\n" in listing for ext in RAW_EXTENSIONS):
        return set()  # most folders: a look at the whole listing at once
    raws = [n for n in names if name_extension(n) in RAW_EXTENSIONS]
    jpegs = (n for n in names if name_extension(n) in JPEG_EXTENSIONS)
    stems = {os.path.splitext(n)[0].lower() for n in jpegs}
    return {n for n in raws if os.path.splitext(n)[0].lower() in stems}


def raw_beside(path: str) -> str | None:
    """The RAW file beside a JPEG (the other half of its pair), if there is one. Asked of
    every JPEG a query returns: a few stats of names the pair could have (the extension in
    lower or upper case), never a listing of a folder that may hold thousands."""
    if _ext(path) not in JPEG_EXTENSIONS:
        return None
    stem = os.path.splitext(path)[0]
    for ext in sorted(RAW_EXTENSIONS):
        for name in (stem + ext, stem + ext.upper()):
            if os.path.isfile(name):
                return name
    return None


def _ext(name: str) -> str:
    return os.path.splitext(name)[1].lower()
