"""Where CLIP weights come from: named pretrained models, files in every public format,
clipsearch's own model directories, and random weights for tests.

Every format is turned into OpenAI's state-dict layout (the names in model.py) and a
CLIPConfig (state_dicts.py reads the tensors, hf_layout.py converts Hugging Face's,
configs.py reads the JSON beside them); nothing else in clipsearch knows formats exist.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from safetensors.torch import save_file

from ..core.errors import WeightsError
from ..core.files import replacing, write_atomic
from ..images.pixels import Preprocessing
from . import hub, open_clip_models
from .configs import apply_hf_config, config_file, open_clip_quick_gelu, preprocessing_beside
from .model import CLIP, CONFIGS, CLIPConfig
from .open_clip_models import OpenClipConfig, OpenClipWeights
from .pretrained import PRETRAINED, Pretrained
from .state_dicts import infer_config, is_vision_key, normalise_keys, read_state_dict

OWN_CONFIG = "clipsearch.json"
OWN_WEIGHTS = "model.safetensors"
RANDOM_PREFIX = "random:"


@dataclass
class Weights:
    """A state dict in OpenAI layout with the config it fits and a display name.

    Read for text only, the image tower's tensors are shape-only placeholders (the meta
    device); `source` is the file the tensors came from, when there is one.
    """

    name: str
    config: CLIPConfig
    state_dict: dict[str, torch.Tensor]
    source: Path | None = None
    aligned_to: str | None = None  # a text tower's: the digest of the image model it serves

    @property
    def complete(self) -> bool:
        return not any(v.is_meta for v in self.state_dict.values())

    def build(self, text_only: bool = False) -> CLIP:
        """A float32 model on these weights (fp32 tensors are taken over, not copied: build
        once). Built on the meta device: random initialisation would cost more than loading.
        text_only leaves out the image tower (`model.visual` is None)."""
        with torch.device("meta"):
            model = CLIP(self.config)
        if text_only:
            model.visual = None
        weights = {
            k: v.to(torch.float32)
            for k, v in self.state_dict.items()
            if not (text_only and is_vision_key(k))
        }
        try:
            missing, unexpected = model.load_state_dict(weights, strict=False, assign=True)
        except RuntimeError as e:  # shapes that contradict each other
            found = [line.strip() for line in str(e).splitlines() if "size mismatch" in line]
            raise WeightsError(
                f"{self.name}: not a consistent CLIP checkpoint: {'; '.join(found[:2]) or e}"
            ) from None
        if missing or unexpected:
            raise WeightsError(
                f"{self.name}: weights do not fit CLIP {self.config.vision.width}-wide ViT: "
                f"missing {missing[:5]}, unexpected {unexpected[:5]}"
            )
        if any(p.is_meta for p in model.parameters()):
            raise ValueError(f"{self.name} was read for text only; build it with text_only")
        return model


def load_file_weights(
    path: Path, quick_gelu: bool | None = None, name: str | None = None, text_only: bool = False
) -> Weights:
    """A single checkpoint file. Activation: argument, else a config beside it, else QuickGELU
    (TorchScript archives are OpenAI's own and always QuickGELU)."""
    sd = normalise_keys(read_state_dict(path, text_only))
    hf_config = path.parent / "config.json"
    if quick_gelu is None and (path.parent / "open_clip_config.json").exists():
        quick_gelu = open_clip_quick_gelu(path.parent / "open_clip_config.json", True)
    config = infer_config(sd, True if quick_gelu is None else quick_gelu)
    if hf_config.exists() and quick_gelu is None:
        config = apply_hf_config(config, hf_config)
    prep = preprocessing_beside(path.parent, config.vision.image_size)
    return Weights(name or str(path.resolve()), replace(config, preprocessing=prep), sd, path)


def load_dir_weights(path: Path, text_only: bool = False) -> Weights | OpenClipWeights:
    if (path / OWN_CONFIG).exists():
        weights = path / OWN_WEIGHTS
        with config_file(path / OWN_CONFIG) as meta:  # only the reading is the config's fault
            saved = meta["config"]
            built_by_open_clip = saved.get("backend") == open_clip_models.BACKEND
            config = (OpenClipConfig if built_by_open_clip else CLIPConfig).from_dict(saved)
        if built_by_open_clip:
            return open_clip_models.load_saved(path, config, weights)
        sd = read_state_dict(weights, text_only)
        return Weights(str(path.resolve()), config, sd, weights, meta.get("aligned_to"))
    if open_clip_models.needs_open_clip(path):
        folder = str(path.resolve())
        return open_clip_models.resolve_folder(folder, path, f"local-dir:{folder}")
    if (checkpoint := open_clip_models.apple_checkpoint(path)) is not None:
        return open_clip_models.load_apple(path, checkpoint)
    for candidates, has_config in (
        (("model.safetensors", "pytorch_model.bin"), "config.json"),
        (("open_clip_model.safetensors", "open_clip_pytorch_model.bin"), "open_clip_config.json"),
    ):
        for filename in candidates:
            if (path / filename).exists() and (path / has_config).exists():
                return load_file_weights(
                    path / filename, name=str(path.resolve()), text_only=text_only
                )
    raise WeightsError(
        f"{path}: no CLIP model here (expected {OWN_CONFIG}, a Hugging Face CLIPModel "
        "with config.json, or open_clip_model.safetensors)"
    )


def save_weights(model: CLIP, directory: str | os.PathLike, name: str, **about) -> Path:
    """clipsearch's model directory: safetensors weights and a small JSON config (with
    `about`'s entries: a text tower's `aligned_to` and `languages`)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().float().contiguous().cpu() for k, v in model.state_dict().items()}
    with replacing(directory / OWN_WEIGHTS, mode=0o666) as tmp:
        save_file(state, str(tmp))
    meta = {"format": "clipsearch", "version": 1, "name": name, "config": model.config.to_dict()}
    write_atomic(
        directory / OWN_CONFIG, (json.dumps({**meta, **about}, indent=2) + "\n").encode(), 0o666
    )
    return directory


def save_text_tower(
    model: CLIP, directory: str | os.PathLike, name: str, aligned_to: str, languages: list[str]
) -> Path:
    """A text tower alone (the model's image tower left out), aligned to the image model
    whose digest is `aligned_to`: it answers text queries against that model's vectors."""
    return save_weights(model, directory, name, aligned_to=aligned_to, languages=languages)


def named_preprocessing(p: Pretrained, size: int) -> Preprocessing:
    return Preprocessing(size, p.resize, p.interpolation, mean=p.mean, std=p.std)


def random_weights(spec: str) -> Weights:
    """`random:<config>[:seed]`: untrained weights, for tests and benchmarks only."""
    parts = spec[len(RANDOM_PREFIX) :].split(":")
    arch, seed = parts[0], parts[1] if len(parts) > 1 and parts[1] else "0"
    if not (seed.isdigit() and int(seed) < 2**63):
        raise WeightsError(f"{spec}: the seed after the config must be a whole number below 2**63")
    seed = int(seed)
    if arch not in CONFIGS:
        raise WeightsError(f"unknown config {arch!r}; known: {', '.join(CONFIGS)}")
    torch.manual_seed(seed)
    model = CLIP(CONFIGS[arch])
    return Weights(f"{RANDOM_PREFIX}{arch}:{seed}", model.config, model.state_dict())


def resolve(spec: str, text_only: bool = False) -> Weights | OpenClipWeights:
    """Any model spec -> Weights. See `load_model` for the forms a spec takes. text_only
    skips reading the image tower's values where the file format allows it."""
    if spec.startswith(RANDOM_PREFIX):
        return random_weights(spec)
    if open_clip_models.is_open_clip_spec(spec):
        return open_clip_models.resolve(spec)
    if spec in PRETRAINED and PRETRAINED[spec].needs_open_clip:
        return replace(resolve(PRETRAINED[spec].spec), name=spec)
    if spec in PRETRAINED:
        p = PRETRAINED[spec]
        w = load_file_weights(
            Path(hub.download(p)), quick_gelu=p.quick_gelu, name=p.name, text_only=text_only
        )
        prep = named_preprocessing(p, w.config.vision.image_size)
        w.config = replace(w.config, preprocessing=prep)
        return w
    path = Path(spec).expanduser()
    if path.is_dir():
        return load_dir_weights(path, text_only)
    if path.is_file():
        return load_file_weights(path, text_only=text_only)
    if hub.is_hub_id(spec):
        folder = hub.fetch(spec)
        if open_clip_models.needs_open_clip(folder):
            if "@" in spec:
                raise WeightsError(f"{spec}: open_clip builds a repository's main revision only")
            return open_clip_models.resolve_folder(spec, folder, f"hf-hub:{spec}")
        return replace(load_dir_weights(folder, text_only), name=spec)
    raise WeightsError(
        f"unknown model {spec!r}: not a file, a directory, a Hugging Face hub id "
        f"(org/name), or a named model ({', '.join(PRETRAINED)}); `random:<config>` is for "
        "tests"
    )


def interpolate(a: Weights, b: Weights, alpha: float) -> Weights:
    """Weight-space ensemble (WiSE-FT, Wortsman et al. 2022): (1 - alpha) a + alpha b."""
    if isinstance(a, OpenClipWeights) or isinstance(b, OpenClipWeights):
        raise WeightsError("merge works on clipsearch's own CLIP models, not open_clip's")
    if a.config != b.config:
        raise WeightsError(f"cannot merge {a.name} and {b.name}: different architectures")
    if not 0.0 <= alpha <= 1.0:
        raise WeightsError("--alpha must be between 0 and 1")
    sa, sb = a.build().state_dict(), b.build().state_dict()
    merged = {k: (1 - alpha) * sa[k].float() + alpha * sb[k].float() for k in sa}
    return Weights(f"merge({a.name}, {b.name}, {alpha:g})", a.config, merged)
