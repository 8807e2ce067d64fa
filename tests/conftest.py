"""Shared fixtures: tiny random models, generated images, the shared emoji data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
EMOJI = SHARED_DATA / "emoji"


@pytest.fixture(scope="session")
def tiny():
    from clipsearch import load_model

    return load_model("random:tiny")


def make_image(path: Path, size=(48, 40), seed: int = 0, mode: str = "RGB", **save) -> Path:
    """A real image file with random smooth content, so distinct seeds embed distinctly."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
    img = Image.fromarray(small).resize(size, Image.Resampling.BILINEAR)
    if mode != "RGB":
        img = img.convert(mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, **save)
    return path


@pytest.fixture
def emoji_dir() -> Path:
    if not (EMOJI / "captions.jsonl").exists():
        pytest.skip(f"shared emoji data not found at {EMOJI}")
    return EMOJI
