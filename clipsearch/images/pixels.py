"""Image decoding and CLIP preprocessing.

For RGB images the pixels equal OpenAI's pipeline (torchvision Resize(bicubic) on the
short side, CenterCrop with rounded offset, ToTensor, Normalize). Other modes are
converted to RGB *before* resizing, where OpenAI resizes first: resizing a palette
image is nearest-neighbour in PIL, and converting RGBA drops alpha to black; compositing
on white first is what a person sees in a viewer.
"""

from __future__ import annotations

import io
import os
import warnings
from dataclasses import asdict, dataclass, replace
from functools import lru_cache

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..core import faults
from ..core.errors import ClipsearchError
from ..indexing.content import content_hash, fingerprint_of
from .items import is_plain_file, read_bytes, source_stat

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
INCEPTION_MEAN = INCEPTION_STD = (0.5, 0.5, 0.5)
RESIZE_MODES = ("shortest", "squash", "longest")
INTERPOLATIONS = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR}


@dataclass(frozen=True)
class Preprocessing:
    """How a model wants its images: part of the model, as its weights are. Models trained
    with other statistics or crops make other vectors from the same pixels.

    resize: "shortest" side to `size` (or to `scale_to`, where a model resizes larger than
    it crops) then the centred square (OpenAI's), "squash" both sides to `size`, or
    "longest" side to `size` then padded to a square with black."""

    size: int = 224
    resize: str = "shortest"
    interpolation: str = "bicubic"
    mean: tuple[float, float, float] = OPENAI_MEAN
    std: tuple[float, float, float] = OPENAI_STD
    scale_to: int | None = None

    def __post_init__(self) -> None:
        if self.resize not in RESIZE_MODES or self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"unknown preprocessing: {self.resize} resize, {self.interpolation}")
        object.__setattr__(self, "mean", tuple(float(x) for x in self.mean))
        object.__setattr__(self, "std", tuple(float(x) for x in self.std))

    @property
    def is_openai(self) -> bool:
        """OpenAI's preprocessing at this size: what models say nothing else about."""
        return self == Preprocessing(self.size)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Preprocessing:
        fields = ("size", "resize", "interpolation", "mean", "std", "scale_to")
        return cls(**{k: data[k] for k in fields if k in data})


def as_preprocessing(spec: Preprocessing | int) -> Preprocessing:
    """A Preprocessing, or OpenAI's at a size given as a number."""
    return spec if isinstance(spec, Preprocessing) else Preprocessing(int(spec))


@dataclass(frozen=True)
class BytesSource:
    """An image file's bytes, already read, and the name to report it by."""

    path: str
    data: bytes


ImageSource = str | os.PathLike | Image.Image | BytesSource


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
    fingerprint: str | None = None  # of the bytes decoded (scan.fingerprint)
    content: str | None = None  # hash of every byte decoded (scan.content_hash)


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


MAX_RESIZED_PIXELS = 4096 * 4096  # 50 MB as RGB


def resize_and_crop(img: Image.Image, prep: Preprocessing | int) -> Image.Image:
    """The model's square: resized as its preprocessing says (see Preprocessing)."""
    prep = as_preprocessing(prep)
    method = INTERPOLATIONS[prep.interpolation]
    if prep.resize == "squash":
        return img.resize((prep.size, prep.size), method)
    if prep.resize == "longest":
        return _fit_and_pad(img, prep.size, method)
    return _shortest_and_crop(img, prep.size, method, prep.scale_to or prep.size)


def _fit_and_pad(img: Image.Image, size: int, method) -> Image.Image:
    """Longest side to `size`, aspect kept, centred on a black square (open_clip's
    ResizeKeepRatio then CenterCropOrPad)."""
    w, h = img.size
    scale = size / max(w, h)
    fitted = img.resize((max(1, round(w * scale)), max(1, round(h * scale))), method)
    square = Image.new("RGB", (size, size))
    square.paste(fitted, ((size - fitted.width) // 2, (size - fitted.height) // 2))
    return square


def _shortest_and_crop(img: Image.Image, size: int, method, scale_to: int) -> Image.Image:
    """Short side to `scale_to`, then the centred `size` square, as torchvision.

    An image of extreme aspect ratio would be enormous once its short side is scaled up
    (1 x 200,000 pixels: 224 x 44.8 million, 30 GB), so there only the square the crop
    keeps is resampled, from the same source area (PIL's resize box): the same pixels to
    within 1/255 in a few places, in bounded memory."""
    w, h = img.size
    if w <= h:
        new_w, new_h = scale_to, int(scale_to * h / w)
    else:
        new_w, new_h = int(scale_to * w / h), scale_to
    left = int(round((new_w - size) / 2.0))
    top = int(round((new_h - size) / 2.0))
    if new_w * new_h > MAX_RESIZED_PIXELS:
        sx, sy = w / new_w, h / new_h
        box = (left * sx, top * sy, (left + size) * sx, (top + size) * sy)
        return img.resize((size, size), method, box=box)
    if (new_w, new_h) != (w, h):
        img = img.resize((new_w, new_h), method)
    return img.crop((left, top, left + size, top + size))


def normalize(img: Image.Image | np.ndarray, prep: Preprocessing | int = 224) -> np.ndarray:
    """RGB PIL image or uint8 (h, w, 3) -> float32 (3, h, w) with the model's mean and std."""
    prep = as_preprocessing(prep)
    mean, std = np.array(prep.mean, np.float32), np.array(prep.std, np.float32)
    arr = np.asarray(img, dtype=np.float32) / 255.0
    return ((arr - mean) / std).transpose(2, 0, 1).copy()


def _exif_info(img: Image.Image) -> tuple[str | None, str | None, str | None]:
    try:
        exif = img.getexif()
    except Exception:  # a broken EXIF block is not a broken image
        return None, None, None
    taken = exif.get_ifd(0x8769).get(0x9003) or exif.get(0x0132)  # DateTimeOriginal, DateTime

    def text(value) -> str | None:
        return (str(value).strip("\x00 ") or None) if value else None

    return text(taken), text(exif.get(0x010F)), text(exif.get(0x0110))


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
        empty = os.path.getsize(path) == 0 if os.path.isfile(path) else False
    try:
        if empty:
            raise ImageError(path, "empty file (0 bytes)")
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(file) as img:
                info = ImageInfo(img.width, img.height, img.format, *_exif_info(img))
                if draft_size and img.format == "JPEG":
                    img.draft("RGB", (draft_size, draft_size))
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


def square(
    source: ImageSource, prep: Preprocessing | int, draft: bool = False
) -> tuple[np.ndarray, ImageInfo]:
    """The model's square of an image as uint8 (size, size, 3), before normalisation: a
    quarter of the float pixels' bytes to send from a decoding process, normalised on the
    model's side in one step (Encoder.encode_pixels)."""
    prep = as_preprocessing(prep)
    img, info = open_image(source, draft_size=prep.size if draft else None)
    return np.asarray(resize_and_crop(img, prep), dtype=np.uint8), info


def preprocess(
    source: ImageSource, prep: Preprocessing | int, draft: bool = False
) -> tuple[np.ndarray, ImageInfo]:
    """A file or PIL image -> the model's input (3, size, size) float32, and what was
    learned of it. prep: the model's Preprocessing, or a size for OpenAI's."""
    prep = as_preprocessing(prep)
    pixels, info = square(source, prep, draft)
    return normalize(pixels, prep), info


IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jpe", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"}
)
HEIF_EXTENSIONS = frozenset({".heic", ".heif", ".avif"})


def is_image_name(name: str) -> bool:
    """An image file by its extension; HEIF ones too (without pillow-heif they are
    recorded as skipped, so that installing it later picks them up)."""
    ext = os.path.splitext(name)[1].lower()
    return ext in IMAGE_EXTENSIONS or ext in HEIF_EXTENSIONS


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
    faults.hit("decode", path)
    if os.path.splitext(path)[1].lower() in HEIF_EXTENSIONS and not heif_support():
        return None, None, NO_HEIF
    try:
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
