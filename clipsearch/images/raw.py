"""Camera RAW files: the largest JPEG the camera embedded as a preview, else a demosaic.

Nearly every RAW format carries a full-size or large JPEG preview (what the camera shows
on its screen); reading it costs what a JPEG costs and finds what the photo shows. A RAW
without one is demosaiced through rawpy (LibRaw), the `raw` extra; without rawpy it is
recorded as skipped, with the extra to install, and retried once it is there. A RAW with
a JPEG of the same name beside it (RAW+JPEG shooting) is one photo: the JPEG is indexed,
and results name the RAW with it.
"""

from __future__ import annotations

import io

from PIL import Image

from .formats import NO_RAW, raw_support

CANDIDATES = 16  # JPEG starts looked at in one file: a thumbnail, a preview or two, more
TIFF_MAGIC = (b"II*\x00", b"MM\x00*")
TURNS = {  # EXIF orientation -> the transposition that shows the picture upright
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


class NoPreview(Exception):
    """A RAW file that cannot be read here (no preview, no rawpy)."""


def container_exif(data: bytes) -> Image.Exif | None:
    """The EXIF of a TIFF-based RAW (DNG, CR2, NEF, ARW, PEF, SRW), read from its first
    directory; None for the others (their previews carry it)."""
    if data[:4] not in TIFF_MAGIC:
        return None
    exif = Image.Exif()
    try:
        exif.load(data)
    except Exception:  # a damaged directory: the preview's EXIF, if any, stands in
        return None
    return exif


def open_raw(data: bytes, draft_size: int | None = None) -> Image.Image:
    """The picture in a RAW file's bytes, loaded: its largest embedded JPEG, else
    demosaiced (rawpy). Raises NoPreview where neither can be had."""
    limit = Image.MAX_IMAGE_PIXELS
    for at in _previews(data):
        try:
            preview = Image.open(io.BytesIO(data[at:]), formats=["JPEG"])
            if draft_size:
                preview.draft("RGB", (draft_size, draft_size))
            if limit and preview.width * preview.height > limit:
                continue  # as a JPEG of that size would be refused: too many pixels
            preview.load()
            return preview
        except (OSError, ValueError, SyntaxError, EOFError):
            continue  # a preview cut short: the next largest
    if not raw_support():
        raise NoPreview(NO_RAW)
    return _demosaic(data)


def _previews(data: bytes) -> list[int]:
    """Where the JPEGs embedded in the bytes start, largest first (a RAW's own data,
    lossless JPEG in some formats, is one Pillow cannot open, and is left out)."""
    found, start = [], 0
    for _ in range(CANDIDATES):
        at = data.find(b"\xff\xd8\xff", start)
        if at < 0:
            break
        start = at + 3
        try:
            with Image.open(io.BytesIO(data[at:]), formats=["JPEG"]) as img:
                found.append((img.width * img.height, at))
        except Exception:
            continue
    return [at for _, at in sorted(found, key=lambda f: -f[0])]


def _demosaic(data: bytes) -> Image.Image:
    """LibRaw's picture, at half size (fast), turned upright by LibRaw itself."""
    import rawpy

    try:
        with rawpy.imread(io.BytesIO(data)) as raw:
            rgb = raw.postprocess(use_camera_wb=True, half_size=True, output_bps=8)
    except (rawpy.LibRawError, ValueError) as e:
        raise OSError(f"rawpy cannot read it: {e}") from None
    img = Image.fromarray(rgb)
    img.getexif()[0x0112] = 1  # upright already: not to be turned again
    return img


def upright(img: Image.Image, exif: Image.Exif | None) -> Image.Image:
    """A preview turned as the RAW's own orientation says, unless it carries its own."""
    if exif is None or img.getexif().get(0x0112):
        return img
    turn = TURNS.get(exif.get(0x0112))
    return img.transpose(turn) if turn is not None else img
