"""CLIP's pixels: an RGB image resized and cropped as a model wants it, then normalised.

For RGB images the pixels equal OpenAI's pipeline (torchvision Resize(bicubic) on the
short side, CenterCrop with rounded offset, ToTensor, Normalize). Other modes are
converted to RGB *before* resizing (decode.to_rgb), where OpenAI resizes first: resizing
a palette image is nearest-neighbour in PIL, and converting RGBA drops alpha to black;
compositing on white first is what a person sees in a viewer.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image

from .decode import ImageInfo, ImageSource, open_image
from .statistics import OPENAI_MEAN, OPENAI_STD

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
