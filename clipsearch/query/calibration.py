"""Where `near` and `similar` duplicates begin for a model, measured on the store's photos.

No threshold is fixed, because they move with the model: a random-weight tower puts any
two pictures at 0.9 or more, a trained one puts different photos far below its copies.
So the first duplicate search with a model measures it. PHOTOS photos of the store,
spread over it, are altered as copies are in archives (re-encoded, resized, cropped,
darkened, brightened, framed) and embedded: `copies` is the similarity 95% of the copies
keep to their original. The stored vectors of up to PAIRED files give the similarities of
different photos (pairs as alike as the median copy are left out: those are copies the
store already holds); `different` is their 99.9th percentile. near is `copies`, raised to
`different` where the model tells them apart that poorly (a false group costs more than a
missed one); similar lies halfway between near and `different`. The store keeps the
answer (duplicate-thresholds.json) by model digest.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

from ..core.memo import MemoFile
from ..images.decode import ImageError, item_source, open_image
from ..storage.catalog import Catalog
from ..storage.schema import Model

if TYPE_CHECKING:
    from ..models.encoder import Encoder

PHOTOS = 32  # photos of the store altered and embedded
PAIRED = 2000  # stored vectors whose pairs are the different photos
TOP = 0.9999  # near never above this: identical pictures always group


@dataclass(frozen=True)
class Thresholds:
    """A model's measured thresholds, and what they were measured from."""

    near: float
    similar: float
    copies: float  # 5th percentile: a copy to its original
    different: float  # 99.9th percentile: one photo to another
    photos: int

    def of(self, kind: str) -> float:
        return self.similar if kind == "similar" else self.near

    @property
    def separated(self) -> bool:
        """Whether the model puts nearly every copy above nearly every other photo."""
        return self.copies > self.different


def copies_of(img: Image.Image) -> list[Image.Image]:
    """A photo as archives hold its copies: re-saved as JPEG at quality 50 and 85, resized
    to 25% and 50%, cropped by 5% and 15%, 15% darker and brighter, in a 6% white frame."""
    w, h = img.size
    out = [_jpeg(img, q) for q in (50, 85)]
    for f in (0.25, 0.5):
        out.append(img.resize((max(1, int(w * f)), max(1, int(h * f))), Image.BICUBIC))
    for cut in (0.05, 0.15):
        dx, dy = int(w * cut / 2), int(h * cut / 2)
        out.append(img.crop((dx, dy, w - dx, h - dy)))
    out += [ImageEnhance.Brightness(img).enhance(f) for f in (0.85, 1.15)]
    out.append(ImageOps.expand(img, border=max(1, int(0.06 * max(w, h))), fill="white"))
    return out


def _jpeg(img: Image.Image, quality: int) -> Image.Image:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    buf.seek(0)
    return Image.open(buf).convert("RGB")


def measure(encoder: Encoder, photos: list[Image.Image], stored: np.ndarray) -> Thresholds:
    """Thresholds from photos and the stored vectors of different files (two at least)."""
    originals = encoder.encode_images(photos)
    alike = np.concatenate(
        [encoder.encode_images(copies_of(photo)) @ v for v, photo in zip(originals, photos)]
    )
    pairs = (stored @ stored.T)[np.triu_indices(len(stored), k=1)]
    unlike = pairs[pairs < np.median(alike)]
    low = float(np.quantile(alike, 0.05))
    high = float(np.quantile(unlike, 0.999)) if len(unlike) else float(np.median(alike))
    near = min(TOP, max(low, high))
    similar = (near + high) / 2 if near > high else near
    return Thresholds(near, similar, low, high, len(photos))


def spread(ids: np.ndarray, n: int) -> list[int]:
    """n of the ids, evenly spread over them."""
    ids = np.sort(ids)
    return sorted(set(ids[np.linspace(0, len(ids) - 1, min(len(ids), n)).astype(int)].tolist()))


def sample_photos(catalog: Catalog, ids: np.ndarray, size: int) -> list[Image.Image]:
    """Up to PHOTOS of these files' photos, evenly spread over their ids, decoded at about
    4x the model's input (so that a copy at 25% is what a real one would be)."""
    rows = catalog.files.rows(spread(ids, 2 * PHOTOS))
    photos = []
    for row in rows.values():
        try:
            img, _ = open_image(item_source(row.path), draft_size=4 * size)
        except (ImageError, OSError):
            continue
        img.thumbnail((4 * size, 4 * size), Image.BICUBIC)
        photos.append(img)
        if len(photos) == PHOTOS:
            break
    return photos


class CalibrationMemo(MemoFile):
    """Each model's thresholds by digest. One measured on fewer than PHOTOS photos is
    measured again once the model has more."""

    def get(self, digest: str, vectors: int) -> Thresholds | None:
        try:
            found = Thresholds(**self.read().get(digest))
            return found if found.photos >= min(PHOTOS, vectors) else None
        except TypeError:  # none yet, or not one this code wrote
            return None

    def put(self, digest: str, thresholds: Thresholds) -> None:
        self.write({**self.read(), digest: asdict(thresholds)})


def thresholds_for(
    memo: CalibrationMemo, catalog: Catalog, model: Model, encoder: Callable[[], Encoder]
) -> Thresholds | None:
    """The model's thresholds, measured now (loading the model) unless known; None where
    fewer than two of its photos can be read."""
    vectors = dict((m.id, n) for m, n in catalog.models.counted()).get(model.id, 0)
    known = memo.get(model.digest, vectors)
    if known is not None:
        return known
    loaded = encoder()
    ids = catalog.vectors.ids(model.id)
    photos = sample_photos(catalog, ids, loaded.preprocessing.size)
    if len(photos) < 2:
        return None
    _, stored = catalog.vectors.get(model.id, spread(ids, PAIRED))
    found = measure(loaded, photos, stored)
    memo.put(model.digest, found)
    return found
