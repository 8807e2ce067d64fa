"""Image-caption data for training and evaluation: CSV/TSV, JSONL, folders of images with
sidecar .txt captions, and WebDataset tar shards.

Rows are (image, caption) where image is a path or, inside a tar shard, (shard, member).
Paths are relative to the data file. Rows whose image is missing are counted and skipped;
a load fails only when they pass a threshold (default 1%).
"""

from __future__ import annotations

import glob
import hashlib
import math
import os
import random
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

from ..images.decode import ImageError, item_source, open_image
from ..images.formats import IMAGE_EXTENSIONS
from ..images.pixels import Preprocessing, as_preprocessing, normalize, resize_and_crop
from ..images.records import (
    CAPTION_KEYS,
    IMAGE_KEYS,
    DataError,
    pick_column,
    read_records,
    read_text,
)
from ..images.shards import caption_unreadable, shard_items


@dataclass(frozen=True)
class Pair:
    image: str  # a path, or "shard.tar::member" for tar shards
    caption: str


@dataclass
class Pairs:
    """Loaded rows and what was skipped."""

    rows: list[Pair]
    source: str
    skipped: int = 0
    reasons: list[str] = field(default_factory=list)


def _table_rows(
    path: Path, image_col: str | None, caption_col: str | None
) -> list[tuple[str, str]]:
    records, keys = read_records(path)
    ic = pick_column(keys, image_col, IMAGE_KEYS, "image", str(path))
    cc = pick_column(keys, caption_col, CAPTION_KEYS, "caption", str(path))
    return [(str(r.get(ic) or ""), str(r.get(cc) or "")) for r in records]


def _folder_rows(folder: Path) -> list[tuple[str, str]]:
    rows = []
    for img in sorted(folder.rglob("*")):
        if img.suffix.lower() in IMAGE_EXTENSIONS:
            txt = img.with_suffix(".txt")
            if txt.exists():
                rows.append((str(img), read_text(txt).strip()))
    if not rows:
        raise DataError(f"{folder}: no images with sidecar .txt captions")
    return rows


def _shard_pairs(shards: list[str], source: str) -> Pairs:
    """The captioned images of the shards (as folders, the formats decoded without an
    extra); an image whose caption is empty or not UTF-8 is an unusable row, an image
    without a caption is no row at all."""
    out = Pairs([], source)
    for shard in shards:
        for item in shard_items(shard):
            caption = item.meta.get("caption")
            if os.path.splitext(item.key)[1].lower() not in IMAGE_EXTENSIONS:
                continue
            if isinstance(caption, str) and caption:
                out.rows.append(Pair(item.key, caption))
            elif caption is not None or caption_unreadable(item):
                out.skipped += 1
                why = "empty caption" if caption is not None else "caption not UTF-8"
                out.reasons.append(f"{item.key}: {why}")
    if not out.rows:
        raise DataError(f"{', '.join(shards)}: no image with a .txt or .caption in the shards")
    return out


def _expand_shards(spec: str) -> list[str]:
    """`shards/{000..009}.tar`, a glob, a folder of .tar files, or one .tar."""
    if "{" in spec and ".." in spec:
        try:
            head, rest = spec.split("{", 1)
            rng, tail = rest.split("}", 1)
            a, b = rng.split("..")
            return [f"{head}{i:0{len(a)}d}{tail}" for i in range(int(a), int(b) + 1)]
        except ValueError:
            raise DataError(
                f"{spec}: name a range of shards as {{000..009}}, first and last number"
            ) from None
    if os.path.isdir(spec):
        return sorted(glob.glob(os.path.join(spec, "*.tar")))
    return sorted(glob.glob(spec)) or [spec]


def load_pairs(
    source: str,
    image_column: str | None = None,
    caption_column: str | None = None,
    max_bad_fraction: float = 0.01,
) -> Pairs:
    """Rows from any supported source, missing images skipped and counted."""
    path = Path(source)
    if source.endswith(".tar") or "{" in source or (path.is_dir() and list(path.glob("*.tar"))):
        pairs = _shard_pairs(_expand_shards(source), source)
        check_bad_fraction(pairs, max_bad_fraction)
        return pairs
    if path.is_dir():
        raw = _folder_rows(path)
    elif path.is_file():
        if path.stat().st_size == 0:
            raise DataError(f"{path}: empty file")
        raw = _table_rows(path, image_column, caption_column)
    else:
        raise DataError(f"{source}: no such file or folder")
    base = path if path.is_dir() else path.parent
    out = Pairs([], source)
    for image, caption in raw:
        full = image if os.path.isabs(image) else str(base / image)
        if not image or not caption.strip():
            out.skipped += 1
            out.reasons.append(f"{image or '(no image)'}: empty image or caption")
        elif not os.path.isfile(full):
            out.skipped += 1
            out.reasons.append(f"{full}: image not found")
        else:
            out.rows.append(Pair(full, caption.strip()))
    check_bad_fraction(out, max_bad_fraction)
    return out


def check_bad_fraction(pairs: Pairs, max_bad_fraction: float) -> None:
    total = len(pairs.rows) + pairs.skipped
    if total == 0:
        raise DataError(f"{pairs.source}: no rows")
    if pairs.skipped > max_bad_fraction * total:
        raise DataError(
            f"{pairs.source}: {pairs.skipped} of {total} rows are unusable "
            f"(more than {max_bad_fraction:.0%}), e.g. {'; '.join(pairs.reasons[:3])}"
        )


def in_validation(image: str, fraction: float) -> bool:
    """A stable split: the same image is always on the same side, whatever the row order."""
    h = int.from_bytes(hashlib.sha1(image.encode("utf-8", "surrogateescape")).digest()[:8], "big")
    return h / 2**64 < fraction


def split(pairs: Sequence[Pair], fraction: float) -> tuple[list[Pair], list[Pair]]:
    train = [p for p in pairs if not in_validation(p.image, fraction)]
    val = [p for p in pairs if in_validation(p.image, fraction)]
    return train, val


def read_image(image: str) -> Image.Image:
    """A path, or a member of a tar shard, decoded to RGB."""
    return open_image(item_source(image))[0]


def random_resized_crop(
    img: Image.Image, size: int, rng: random.Random, scale=(0.9, 1.0), ratio=(3 / 4, 4 / 3)
) -> Image.Image:
    """open_clip's training crop: a random area (90-100%) and aspect, resized to size."""
    w, h = img.size
    area = w * h
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1])))
        cw, ch = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
        if 0 < cw <= w and 0 < ch <= h:
            left, top = rng.randint(0, w - cw), rng.randint(0, h - ch)
            return img.resize(
                (size, size), Image.Resampling.BICUBIC, box=(left, top, left + cw, top + ch)
            )
    return resize_and_crop(img, size)


AUGMENTATIONS = ("none", "crop", "strong")


def color_jitter(img: Image.Image, rng: random.Random, strength: float = 0.4) -> Image.Image:
    """Brightness, contrast and saturation jitter, and greyscale one time in five: makes a
    model lean on shape rather than palette, which helps it move between art styles."""
    for enhance in (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color):
        img = enhance(img).enhance(rng.uniform(1 - strength, 1 + strength))
    if rng.random() < 0.2:
        img = img.convert("L").convert("RGB")
    return img


class PairDataset:
    """(pixels, tokens) for a row; augmentation seeded by (seed, epoch, row) so that a
    resumed run sees exactly the pixels an uninterrupted one would have.

    augment: "crop" (open_clip's random resized crop, the default), "strong" (crop and
    colour jitter) or "none"."""

    def __init__(
        self,
        pairs: Sequence[Pair],
        preprocessing: Preprocessing | int,
        tokenizer,
        augment: str = "crop",
        seed: int = 0,
    ):
        if augment not in AUGMENTATIONS:
            raise DataError(f"augmentation must be one of {', '.join(AUGMENTATIONS)}")
        self.pairs = list(pairs)
        self.preprocessing = as_preprocessing(preprocessing)  # the model's: mean, std, crop
        self.image_size = self.preprocessing.size
        self.tokenizer = tokenizer
        self.augment = augment
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray, bool]:
        pair = self.pairs[i]
        tokens = self.tokenizer([pair.caption])[0]
        try:
            img = read_image(pair.image)
        except (ImageError, OSError, KeyError, tarfile.TarError):
            return np.zeros((3, self.image_size, self.image_size), np.float32), tokens, False
        if self.augment != "none":
            rng = random.Random(hash((self.seed, self.epoch, i)))
            img = random_resized_crop(img, self.image_size, rng)
            if self.augment == "strong":
                img = color_jitter(img, rng)
        else:
            img = resize_and_crop(img, self.preprocessing)
        return normalize(img, self.preprocessing), tokens, True
