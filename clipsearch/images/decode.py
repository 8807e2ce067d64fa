"""Image files decoded to RGB as a person sees them: EXIF orientation applied, the first
frame of an animation, any mode converted (transparency on white), with what the file
says of itself (size, format, capture time, camera). Every failure is an ImageError
naming the file.
"""

from __future__ import annotations

import io
import math
import os
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..core.errors import ClipsearchError
from ..core.files import check_regular, open_regular
from .formats import is_raw_name
from .items import is_plain_file, is_url, read_bytes
from .raw import NoPreview, container_exif, open_raw, upright


@dataclass(frozen=True)
class BytesSource:
    """An image file's bytes, already read, and the name to report it by."""

    path: str
    data: bytes


ImageSource = str | os.PathLike | Image.Image | BytesSource


def item_source(key: str) -> str | BytesSource:
    """What `open_image` takes for an item: a file's path, or the bytes of anything else
    (a shard's member, a URL)."""
    return key if is_plain_file(key) else BytesSource(key, read_bytes(key))


class ImageError(ClipsearchError):
    """An image that cannot be used, with the file and the reason."""

    def __init__(self, path: str, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


@dataclass(frozen=True)
class ImageInfo:
    """What decoding learns about a file, kept in the catalog."""

    width: int
    height: int
    format: str | None
    taken_at: str | None = None  # EXIF DateTimeOriginal, "YYYY:MM:DD HH:MM:SS"
    camera_make: str | None = None
    camera_model: str | None = None
    lens: str | None = None
    latitude: float | None = None  # degrees north, WGS 84
    longitude: float | None = None  # degrees east
    fingerprint: str | None = None  # of the bytes decoded (indexing/content.py)
    content: str | None = None  # hash of every byte decoded (indexing/content.py)


def to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL mode to RGB; transparency is composited on white."""
    if img.mode == "RGB":
        return img
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode.startswith("I;16") or arr.max() > 255 else 255.0
        img = Image.fromarray((arr * (255.0 / top)).round().clip(0, 255).astype(np.uint8), "L")
    if img.mode == "F":
        img = Image.fromarray(np.asarray(img).clip(0, 255).astype(np.uint8), "L")
    has_alpha = img.mode in ("RGBA", "LA", "PA", "La", "RGBa") or (
        img.mode == "P" and "transparency" in img.info
    )
    if has_alpha:
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def exif_details(img: Image.Image) -> dict:
    """What a photo's EXIF says of it: capture time, camera, lens, place. A broken EXIF
    block, or a value that is no time or position, is unknown, not an error."""
    try:
        exif = img.getexif()
    except Exception:  # a broken EXIF block is not a broken image
        return {}
    return exif_fields(exif)


def exif_fields(exif: Image.Exif) -> dict:
    """exif_details of an EXIF block already read."""
    try:
        photo = exif.get_ifd(0x8769)
        gps = exif.get_ifd(0x8825)
    except Exception:  # a broken EXIF block is not a broken image
        return {}
    taken = photo.get(0x9003) or exif.get(0x0132)  # DateTimeOriginal, DateTime
    lens = _text(photo.get(0xA434)) or _text(photo.get(0xA433))  # LensModel, LensMake
    latitude = _degrees(gps.get(2), gps.get(1), "S", 90)
    longitude = _degrees(gps.get(4), gps.get(3), "W", 180)
    placed = latitude is not None and longitude is not None
    return dict(
        taken_at=_text(taken),
        camera_make=_text(exif.get(0x010F)),
        camera_model=_text(exif.get(0x0110)),
        lens=lens,
        latitude=latitude if placed else None,
        longitude=longitude if placed else None,
    )


def _open_raw(
    file: str | io.BytesIO, path: str, draft_size: int | None
) -> tuple[Image.Image, ImageInfo]:
    """A camera RAW file (raw.py): its preview or its demosaiced picture, with the EXIF
    of the RAW itself where its container has it (else the preview's)."""
    data = file.getvalue() if isinstance(file, io.BytesIO) else read_bytes(file)
    exif = container_exif(data)
    try:
        img = open_raw(data, draft_size)
    except NoPreview as e:
        raise ImageError(path, str(e)) from None
    check_pixels(img.size)
    details = exif_fields(exif) if exif is not None else exif_details(img)
    kind = os.path.splitext(path)[1][1:].upper()
    info = ImageInfo(img.width, img.height, kind, **details)
    return to_rgb(ImageOps.exif_transpose(upright(img, exif))), info


def read_exif(key: str) -> dict:
    """A catalogued item's EXIF details from its header, no pixel decoded; {} where it
    cannot be read (gone, not a regular file, a URL: never fetched for this)."""
    if is_url(key):
        return {}
    try:
        if is_plain_file(key):
            with open_regular(key) as f, Image.open(f) as img:
                return exif_details(img)
        with Image.open(io.BytesIO(read_bytes(key))) as img:
            return exif_details(img)
    except Exception:  # unreadable now: the next full read of the file will say why
        return {}


def _text(value) -> str | None:
    return (str(value).strip("\x00 ") or None) if value else None


def _degrees(dms, ref, negative: str, limit: float) -> float | None:
    """EXIF's (degrees, minutes, seconds) and N/S or E/W as signed degrees."""
    try:
        d, m, s = (float(x) for x in dms)
        value = d + m / 60 + s / 3600
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    if not math.isfinite(value) or abs(value) > limit:
        return None
    return -abs(value) if str(ref).strip("\x00 ").upper() == negative else value


def check_pixels(size: tuple[int, int]) -> None:
    """Refuse to decode more pixels than Pillow's limit (Image.MAX_IMAGE_PIXELS)."""
    limit = Image.MAX_IMAGE_PIXELS
    if limit and size[0] * size[1] > limit:
        raise Image.DecompressionBombError(
            f"{size[0]} x {size[1]} pixels to decode, more than {limit:,}"
        )


def open_image(source: ImageSource, draft_size: int | None = None) -> tuple[Image.Image, ImageInfo]:
    """Decode fully, EXIF orientation applied, first frame of an animation, RGB.

    draft_size lets a JPEG decode at a reduced DCT scale (1/2 to 1/8) whose short side
    stays at least that size: several times cheaper for camera photos, with embeddings
    equal to a full decode's to four decimals (BENCHMARKS.md).
    Every failure becomes an ImageError naming the file.
    """
    if isinstance(source, Image.Image):
        img = source
        info = ImageInfo(img.width, img.height, img.format)
        return to_rgb(ImageOps.exif_transpose(img)), info
    if isinstance(source, BytesSource):
        path, file, empty = source.path, io.BytesIO(source.data), not source.data
    else:
        path = file = str(source)
        empty = False
    try:
        if isinstance(file, str):
            st = os.stat(file)
            check_regular(st.st_mode)  # a FIFO would hang the open below
            empty = st.st_size == 0
        if empty:
            raise ImageError(path, "empty file (0 bytes)")
        with warnings.catch_warnings():
            # Pillow's limit is for what is decoded: a 100-MP JPEG drafted to 1/8 is fine
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            if is_raw_name(path):
                return _open_raw(file, path, draft_size)
            with Image.open(file) as img:
                info = ImageInfo(img.width, img.height, img.format, **exif_details(img))
                if draft_size and img.format == "JPEG":
                    img.draft("RGB", (draft_size, draft_size))
                check_pixels(img.size)
                img.seek(0)
                img.load()
                return to_rgb(ImageOps.exif_transpose(img)), info
    except ImageError:
        raise
    except FileNotFoundError:
        raise ImageError(path, "file not found") from None
    except PermissionError:
        raise ImageError(path, "permission denied") from None
    except IsADirectoryError:
        raise ImageError(path, "is a directory") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageError(path, f"too many pixels (decompression bomb limit): {e}") from None
    except UnidentifiedImageError:
        raise ImageError(path, "not an image, or a format Pillow cannot read") from None
    except OSError as e:  # truncated data, broken streams, I/O errors
        raise ImageError(path, f"cannot decode: {e}") from None
    except (ValueError, SyntaxError, EOFError, MemoryError) as e:
        raise ImageError(path, f"cannot decode: {type(e).__name__}: {e}") from None
