"""Where CLIP weights come from: named pretrained models, files in every public format,
clipsearch's own model directories, and random weights for tests.

Every format is turned into OpenAI's state-dict layout (the names in model.py) and a
CLIPConfig; nothing else in clipsearch knows formats exist.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ..core.errors import WeightsError
from ..core.files import replacing, write_atomic
from ..images.pixels import OPENAI_MEAN, OPENAI_STD, Preprocessing
from . import hub, open_clip_models, torchscript
from .model import CLIP, CONFIGS, CLIPConfig, TextConfig, VisionConfig
from .open_clip_models import OpenClipWeights
from .pretrained import PRETRAINED, Pretrained

OWN_CONFIG = "clipsearch.json"
OWN_WEIGHTS = "model.safetensors"
RANDOM_PREFIX = "random:"
VISION_PREFIXES = ("visual.", "vision_model.", "visual_projection.")  # every layout's


def is_vision_key(key: str) -> bool:
    return key.removeprefix("module.").startswith(VISION_PREFIXES)


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


# ---- Hugging Face CLIPModel layout -> OpenAI layout ----------------------------------

_HF_RENAMES = {
    "text_model.embeddings.token_embedding.weight": "token_embedding.weight",
    "text_model.embeddings.position_embedding.weight": "positional_embedding",
    "text_model.final_layer_norm.": "ln_final.",
    "vision_model.embeddings.class_embedding": "visual.class_embedding",
    "vision_model.embeddings.patch_embedding.weight": "visual.conv1.weight",
    "vision_model.embeddings.position_embedding.weight": "visual.positional_embedding",
    "vision_model.pre_layrnorm.": "visual.ln_pre.",
    "vision_model.post_layernorm.": "visual.ln_post.",
}
_HF_LAYER = re.compile(r"^(text|vision)_model\.encoder\.layers\.(\d+)\.(.+)$")
_HF_BLOCK_RENAMES = {
    "self_attn.out_proj.": "attn.out_proj.",
    "layer_norm1.": "ln_1.",
    "layer_norm2.": "ln_2.",
    "mlp.fc1.": "mlp.c_fc.",
    "mlp.fc2.": "mlp.c_proj.",
}


def is_hf_layout(sd: dict[str, torch.Tensor]) -> bool:
    return any(k.startswith(("text_model.", "vision_model.")) for k in sd)


def hf_to_openai(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Hugging Face splits q/k/v and stores projections as Linear weights (transposed)."""
    out: dict[str, torch.Tensor] = {}
    qkv: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
    for key, value in sd.items():
        if key.endswith("position_ids"):
            continue
        if key == "text_projection.weight":
            out["text_projection"] = value.t().contiguous()
        elif key == "visual_projection.weight":
            out["visual.proj"] = value.t().contiguous()
        elif key == "logit_scale":
            out[key] = value
        elif m := _HF_LAYER.match(key):
            tower, index, rest = m.groups()
            prefix = f"{'visual.' if tower == 'vision' else ''}transformer.resblocks.{index}."
            if rest.startswith(("self_attn.q_proj.", "self_attn.k_proj.", "self_attn.v_proj.")):
                kind = rest.split(".")[-1]  # weight | bias
                qkv.setdefault((prefix, kind), {})[rest[10]] = value
                continue
            for old, new in _HF_BLOCK_RENAMES.items():
                if rest.startswith(old):
                    out[prefix + new + rest[len(old) :]] = value
                    break
            else:
                raise WeightsError(f"unknown Hugging Face CLIP key: {key}")
        else:
            for old, new in _HF_RENAMES.items():
                if key.startswith(old):
                    out[new + key[len(old) :]] = value
                    break
            else:
                raise WeightsError(f"unknown Hugging Face CLIP key: {key}")
    for (prefix, kind), parts in qkv.items():
        out[f"{prefix}attn.in_proj_{kind}"] = torch.cat([parts["q"], parts["k"], parts["v"]])
    return out


# ---- config from tensor shapes ---------------------------------------------------------


def _count_blocks(sd: dict[str, torch.Tensor], prefix: str) -> int:
    pattern = re.compile(rf"^{re.escape(prefix)}transformer\.resblocks\.(\d+)\.")
    return len({m.group(1) for k in sd if (m := pattern.match(k))})


def infer_config(sd: dict[str, torch.Tensor], quick_gelu: bool) -> CLIPConfig:
    """The architecture implied by an OpenAI-layout state dict (heads: width / 64, as released)."""
    try:
        conv = sd["visual.conv1.weight"]
        v_width, patch = conv.shape[0], conv.shape[-1]
        grid = round((sd["visual.positional_embedding"].shape[0] - 1) ** 0.5)
        t_width = sd["ln_final.weight"].shape[0]
        return CLIPConfig(
            embed_dim=sd["text_projection"].shape[1],
            vision=VisionConfig(
                image_size=patch * grid,
                patch_size=patch,
                width=v_width,
                layers=_count_blocks(sd, "visual."),
                heads=max(1, v_width // 64),
            ),
            text=TextConfig(
                context_length=sd["positional_embedding"].shape[0],
                vocab_size=sd["token_embedding.weight"].shape[0],
                width=t_width,
                layers=_count_blocks(sd, ""),
                heads=max(1, t_width // 64),
            ),
            quick_gelu=quick_gelu,
        )
    except KeyError as e:
        raise WeightsError(f"not a CLIP ViT checkpoint (no tensor {e})") from None


def _normalise_keys(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Strip DDP's 'module.' prefix and drop TorchScript's scalar attributes."""
    sd = {k.removeprefix("module."): v for k, v in sd.items()}
    for extra in ("input_resolution", "context_length", "vocab_size"):
        sd.pop(extra, None)
    return hf_to_openai(sd) if is_hf_layout(sd) else sd


# ---- files ---------------------------------------------------------------------------------


def _read_safetensors(path: Path, text_only: bool) -> dict[str, torch.Tensor]:
    out = {}
    with safe_open(str(path), framework="pt") as f:
        for key in f.keys():  # noqa: SIM118 (safe_open is not iterable)
            if text_only and is_vision_key(key):  # its shape (for the config), not its values
                out[key] = torch.empty(f.get_slice(key).get_shape(), device="meta")
            else:
                out[key] = f.get_tensor(key)
    return out


def read_state_dict(path: Path, text_only: bool = False) -> dict[str, torch.Tensor]:
    """Tensors from .safetensors, a pickle (weights only) or an OpenAI TorchScript archive.
    text_only reads the image tower's shapes but not its values, where the format allows."""
    try:
        if path.suffix == ".safetensors":
            return _read_safetensors(path, text_only)
        if torchscript.is_torchscript(path):
            return torchscript.read_tensors(path)
        mmap = text_only and zipfile.is_zipfile(path)  # pages of unread tensors stay on disk
        obj = torch.load(str(path), map_location="cpu", weights_only=True, mmap=mmap)
    except torchscript.ArchiveError as e:
        raise WeightsError(
            f"{path}: a TorchScript archive clipsearch will not load: {e}. Weights files are "
            "read without running any code they carry; save the weights as a state dict "
            "(.safetensors) instead"
        ) from None
    except (OSError, RuntimeError, ValueError, zipfile.BadZipFile) as e:
        raise WeightsError(f"{path}: cannot read weights: {e}") from None
    except Exception as e:  # unpickling refused by weights_only, or a foreign format
        raise WeightsError(
            f"{path}: not a weights file clipsearch can read safely: it holds more than "
            f"tensors, and reading it would run code it carries ({type(e).__name__})"
        ) from None
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]  # open_clip training checkpoints
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"{path}: does not contain a state dict of tensors")
    if text_only:
        obj = {
            k: torch.empty_like(v, device="meta") if is_vision_key(k) else v for k, v in obj.items()
        }
    return obj


def _apply_hf_config(config: CLIPConfig, config_path: Path) -> CLIPConfig:
    """Hugging Face's config.json knows what shapes cannot tell: heads and activation."""
    cfg = json.loads(config_path.read_text())
    text, vision = cfg.get("text_config", {}), cfg.get("vision_config", {})
    return replace(
        config,
        quick_gelu=text.get("hidden_act", "quick_gelu") == "quick_gelu",
        text=replace(config.text, heads=text.get("num_attention_heads", config.text.heads)),
        vision=replace(config.vision, heads=vision.get("num_attention_heads", config.vision.heads)),
    )


def _open_clip_quick_gelu(config_path: Path, default: bool) -> bool:
    cfg = json.loads(config_path.read_text()).get("model_cfg", {})
    return bool(cfg.get("quick_gelu", default))


RESAMPLE = {2: "bilinear", 3: "bicubic"}  # PIL's numbers, as Hugging Face configs give them


def hf_preprocessing(path: Path, size: int) -> Preprocessing:
    """A Hugging Face CLIPImageProcessor's preprocessor_config.json as a Preprocessing."""
    with _config_file(path) as cfg:
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
    with _config_file(path) as cfg:
        cfg = cfg.get("preprocess_cfg", {})
        return Preprocessing(
            size=size,
            resize=cfg.get("resize_mode", "shortest"),
            interpolation=cfg.get("interpolation", "bicubic"),
            mean=tuple(cfg.get("mean", OPENAI_MEAN)),
            std=tuple(cfg.get("std", OPENAI_STD)),
        )


@contextlib.contextmanager
def _config_file(path: Path) -> Iterator[dict]:
    """A config file's JSON object; anything amiss in reading or using it is one error."""
    try:
        yield json.loads(path.read_text())
    except (ValueError, TypeError, KeyError, AttributeError) as e:
        raise WeightsError(f"{path}: not a config clipsearch can read ({e})") from None


def _preprocessing_beside(folder: Path, size: int) -> Preprocessing | None:
    """What the configs next to a weights file say of its preprocessing, if anything."""
    if (folder / "preprocessor_config.json").exists():
        return hf_preprocessing(folder / "preprocessor_config.json", size)
    if (folder / "open_clip_config.json").exists():
        return open_clip_preprocessing(folder / "open_clip_config.json", size)
    return None


def load_file_weights(
    path: Path, quick_gelu: bool | None = None, name: str | None = None, text_only: bool = False
) -> Weights:
    """A single checkpoint file. Activation: argument, else a config beside it, else QuickGELU
    (TorchScript archives are OpenAI's own and always QuickGELU)."""
    sd = _normalise_keys(read_state_dict(path, text_only))
    hf_config = path.parent / "config.json"
    if quick_gelu is None and (path.parent / "open_clip_config.json").exists():
        quick_gelu = _open_clip_quick_gelu(path.parent / "open_clip_config.json", True)
    config = infer_config(sd, True if quick_gelu is None else quick_gelu)
    if hf_config.exists() and quick_gelu is None:
        config = _apply_hf_config(config, hf_config)
    prep = _preprocessing_beside(path.parent, config.vision.image_size)
    return Weights(name or str(path.resolve()), replace(config, preprocessing=prep), sd, path)


def load_dir_weights(path: Path, text_only: bool = False) -> Weights | OpenClipWeights:
    if (path / OWN_CONFIG).exists():
        meta = json.loads((path / OWN_CONFIG).read_text())
        weights = path / OWN_WEIGHTS
        if meta["config"].get("backend") == open_clip_models.BACKEND:
            return open_clip_models.load_saved(path, meta, weights)
        config = CLIPConfig.from_dict(meta["config"])
        sd = read_state_dict(weights, text_only)
        return Weights(str(path.resolve()), config, sd, weights, meta.get("aligned_to"))
    if open_clip_models.needs_open_clip(path):
        folder = str(path.resolve())
        return open_clip_models.resolve_folder(folder, path, f"local-dir:{folder}")
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


# ---- named models and the hub ----------------------------------------------------------


def named_preprocessing(p: Pretrained, size: int) -> Preprocessing:
    return Preprocessing(size, p.resize, p.interpolation, mean=p.mean, std=p.std)


def random_weights(spec: str) -> Weights:
    """`random:<config>[:seed]`: untrained weights, for tests and benchmarks only."""
    parts = spec[len(RANDOM_PREFIX) :].split(":")
    arch, seed = parts[0], int(parts[1]) if len(parts) > 1 and parts[1] else 0
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
        return replace(open_clip_models.resolve(PRETRAINED[spec].spec), name=spec)
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
