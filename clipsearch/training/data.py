"""Image-caption data for training and evaluation: CSV/TSV, JSONL, folders of images with
sidecar .txt captions, and WebDataset tar shards.

Rows are (image, caption) where image is a path or, inside a tar shard, (shard, member).
Paths are relative to the data file. Rows whose image is missing are counted and skipped;
a load fails only when they pass a threshold (default 1%).
"""

from __future__ import annotations

import csv
import glob
import hashlib
import io
import json
import math
import os
import random
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

from ..core.errors import ClipsearchError
from ..images.pixels import (
    IMAGE_EXTENSIONS,
    ImageError,
    Preprocessing,
    as_preprocessing,
    normalize,
    open_image,
    resize_and_crop,
)

IMAGE_KEYS = ("image", "filepath", "file", "path", "img", "image_path")
CAPTION_KEYS = ("caption", "text", "title", "label", "description")


class DataError(ClipsearchError, ValueError):
    """Training data that cannot be used; the message names the file and the problem."""


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


def pick_column(
    keys: Sequence[str], wanted: str | None, candidates: Sequence[str], what: str, source: str
) -> str:
    if wanted:
        if wanted not in keys:
            raise DataError(f"{source}: no {what} column {wanted!r}; columns are {', '.join(keys)}")
        return wanted
    for c in candidates:
        if c in keys:
            return c
    raise DataError(
        f"{source}: cannot tell which column holds the {what} (columns: {', '.join(keys)}); "
        f"name it with --{what}-column"
    )


def read_text(path: Path) -> str:
    """A text file as UTF-8 (a BOM allowed); anything else is an error naming the file."""
    try:
        return path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataError(
            f"{path}: not UTF-8 text (byte 0x{e.object[e.start]:02x} at offset {e.start}); "
            "save it as UTF-8"
        ) from None


def read_records(path: Path) -> tuple[list[dict], list[str]]:
    """The rows of a CSV/TSV, JSONL or Parquet file as dicts, and its column names."""
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        records = _parquet_records(path)
    elif suffix in (".jsonl", ".json"):
        records = _jsonl_records(path)
    else:
        records = _csv_records(path, "\t" if suffix == ".tsv" else ",")
    if not records:
        raise DataError(f"{path}: no rows")
    return records, list(records[0])


def _jsonl_records(path: Path) -> list[dict]:
    records = []
    for n, line in enumerate(read_text(path).splitlines(), 1):
        if line.strip():
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{n}: not valid JSON ({e.msg})") from None
            if not isinstance(record, dict):
                raise DataError(
                    f"{path}:{n}: each line must be a JSON object like "
                    '{"image": "a.jpg", "caption": "a dog"}'
                )
            records.append(record)
    return records


def _csv_records(path: Path, delimiter: str) -> list[dict]:
    try:
        return list(csv.DictReader(io.StringIO(read_text(path)), delimiter=delimiter))
    except csv.Error as e:
        kind = "TSV" if delimiter == "\t" else "CSV"
        raise DataError(f"{path}: cannot parse as {kind}: {e}") from None


def _parquet_records(path: Path) -> list[dict]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise DataError(f"{path}: reading Parquet needs pyarrow: pip install pyarrow") from None
    try:
        return pq.read_table(path).to_pylist()
    except Exception as e:  # pyarrow's errors on a damaged file have no common base
        raise DataError(f"{path}: cannot read as Parquet: {e}") from None


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


def _shard_rows(shards: list[str]) -> list[tuple[str, str]]:
    rows = []
    for shard in shards:
        try:
            with tarfile.open(shard) as tar:
                members = {m.name: m for m in tar.getmembers() if m.isfile()}
                for name in sorted(members):
                    stem, ext = os.path.splitext(name)
                    if ext.lower() in IMAGE_EXTENSIONS and stem + ".txt" in members:
                        data = tar.extractfile(members[stem + ".txt"]).read()
                        try:
                            caption = data.decode("utf-8").strip()
                        except UnicodeDecodeError:
                            raise DataError(
                                f"{shard}::{stem}.txt: not UTF-8 text; save captions as UTF-8"
                            ) from None
                        rows.append((f"{shard}::{name}", caption))
        except (tarfile.TarError, OSError) as e:
            raise DataError(f"{shard}: cannot read tar shard: {e}") from None
    if not rows:
        raise DataError(f"{', '.join(shards)}: no image + .txt pairs in the shards")
    return rows


def _expand_shards(spec: str) -> list[str]:
    """`shards/{000..009}.tar`, a glob, a folder of .tar files, or one .tar."""
    if "{" in spec and ".." in spec:
        head, rest = spec.split("{", 1)
        rng, tail = rest.split("}", 1)
        a, b = rng.split("..")
        return [f"{head}{i:0{len(a)}d}{tail}" for i in range(int(a), int(b) + 1)]
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
        return Pairs([Pair(i, c) for i, c in _shard_rows(_expand_shards(source))], source)
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
    if "::" in image and image.split("::", 1)[0].endswith(".tar"):
        shard, member = image.split("::", 1)
        with tarfile.open(shard) as tar:
            data = tar.extractfile(member).read()
        return open_image(Image.open(io.BytesIO(data)))[0]
    return open_image(image)[0]


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
