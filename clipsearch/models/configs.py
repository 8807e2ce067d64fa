"""What the JSON configs beside a weights file say that its tensors cannot: Hugging Face's
config.json (heads, activation) and preprocessor_config.json, open_clip's
open_clip_config.json (activation, preprocessing)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from ..core.errors import WeightsError
from ..images.pixels import Preprocessing
from ..images.statistics import OPENAI_MEAN, OPENAI_STD

if TYPE_CHECKING:
    from .model import CLIPConfig


@contextlib.contextmanager
def config_file(path: Path) -> Iterator[dict]:
    """A config file's JSON object; anything amiss in reading or using it is one error."""
    try:
        yield json.loads(path.read_text())
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError) as e:
        raise WeightsError(f"{path}: not a config clipsearch can read ({e})") from None


def apply_hf_config(config: CLIPConfig, config_path: Path) -> CLIPConfig:
    """Hugging Face's config.json knows what shapes cannot tell: heads and activation."""
    with config_file(config_path) as cfg:
        text, vision = cfg.get("text_config", {}), cfg.get("vision_config", {})
        return replace(
            config,
            quick_gelu=text.get("hidden_act", "quick_gelu") == "quick_gelu",
            text=replace(config.text, heads=text.get("num_attention_heads", config.text.heads)),
            vision=replace(
                config.vision, heads=vision.get("num_attention_heads", config.vision.heads)
            ),
        )


def open_clip_quick_gelu(config_path: Path, default: bool) -> bool:
    with config_file(config_path) as cfg:
        return bool(cfg.get("model_cfg", {}).get("quick_gelu", default))


RESAMPLE = {2: "bilinear", 3: "bicubic"}  # PIL's numbers, as Hugging Face configs give them


def hf_preprocessing(path: Path, size: int) -> Preprocessing:
    """A Hugging Face CLIPImageProcessor's preprocessor_config.json as a Preprocessing."""
    with config_file(path) as cfg:
        crop = cfg.get("crop_size", size)
        crop = crop.get("height", size) if isinstance(crop, dict) else int(crop)
        resize = cfg.get("size", crop)
        squash = isinstance(resize, dict) and "height" in resize
        shortest = resize.get("shortest_edge", crop) if isinstance(resize, dict) else int(resize)
        return Preprocessing(
            size=crop,
            scale_to=None if squash or shortest == crop else shortest,
            resize="squash" if squash or not cfg.get("do_center_crop", True) else "shortest",
            interpolation=RESAMPLE.get(cfg.get("resample", 3), "bicubic"),
            mean=tuple(cfg.get("image_mean", OPENAI_MEAN)),
            std=tuple(cfg.get("image_std", OPENAI_STD)),
        )


def open_clip_preprocessing(path: Path, size: int) -> Preprocessing:
    """open_clip_config.json's preprocess_cfg as a Preprocessing."""
    with config_file(path) as cfg:
        cfg = cfg.get("preprocess_cfg", {})
        return Preprocessing(
            size=size,
            resize=cfg.get("resize_mode", "shortest"),
            interpolation=cfg.get("interpolation", "bicubic"),
            mean=tuple(cfg.get("mean", OPENAI_MEAN)),
            std=tuple(cfg.get("std", OPENAI_STD)),
        )


def preprocessing_beside(folder: Path, size: int) -> Preprocessing | None:
    """What the configs next to a weights file say of its preprocessing, if anything."""
    if (folder / "preprocessor_config.json").exists():
        return hf_preprocessing(folder / "preprocessor_config.json", size)
    if (folder / "open_clip_config.json").exists():
        return open_clip_preprocessing(folder / "open_clip_config.json", size)
    return None
