"""The tensors of a weights file, in OpenAI's layout, and the architecture their shapes
imply. Nothing is run: safetensors, pickles through torch's weights-only loader, OpenAI's
TorchScript archives through torchscript.py."""

from __future__ import annotations

import os
import re
import zipfile
from pathlib import Path

import torch
from safetensors import safe_open

from ..core.errors import WeightsError
from ..core.files import check_regular
from . import torchscript
from .hf_layout import hf_to_openai, is_hf_layout
from .model import CLIPConfig, TextConfig, VisionConfig

VISION_PREFIXES = ("visual.", "vision_model.", "visual_projection.")  # every layout's


def is_vision_key(key: str) -> bool:
    return key.removeprefix("module.").startswith(VISION_PREFIXES)


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


def normalise_keys(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Strip DDP's 'module.' prefix and drop TorchScript's scalar attributes."""
    sd = {k.removeprefix("module."): v for k, v in sd.items()}
    for extra in ("input_resolution", "context_length", "vocab_size"):
        sd.pop(extra, None)
    return hf_to_openai(sd) if is_hf_layout(sd) else sd


def _read_safetensors(path: Path, text_only: bool) -> dict[str, torch.Tensor]:
    out = {}
    with safe_open(str(path), framework="pt") as f:
        for key in f.keys():  # noqa: SIM118 (safe_open is not iterable)
            if text_only and is_vision_key(key):  # its shape (for the config), not its values
                out[key] = torch.empty(f.get_slice(key).get_shape(), device="meta")
            else:
                out[key] = f.get_tensor(key)
    return out


def unreadable(path: Path, e: Exception) -> str:
    """Why a weights file was not read: code it carries (torch's weights_only refused one of
    its classes), or no weights at all (an image, a safetensors file with a broken header). Never
    torch's own advice, which is to load it unsafely."""
    if "Unsupported global" in str(e) or "Unsupported class" in str(e):
        return (
            f"{path}: not a weights file clipsearch can read safely: it holds more than "
            "tensors, and reading it would run code it carries; save the weights as a state "
            "dict (.safetensors) instead"
        )
    return (
        f"{path}: not a weights file (a .safetensors file, a PyTorch state dict or an "
        f"OpenAI TorchScript archive): {type(e).__name__}"
    )


def read_state_dict(path: Path, text_only: bool = False) -> dict[str, torch.Tensor]:
    """Tensors from .safetensors, a pickle (weights only) or an OpenAI TorchScript archive.
    text_only reads the image tower's shapes but not its values, where the format allows."""
    try:
        check_regular(os.stat(path).st_mode)  # a FIFO would wait for a writer for ever
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
        raise WeightsError(unreadable(path, e)) from None
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]  # open_clip training checkpoints
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"{path}: does not contain a state dict of tensors")
    if text_only:
        obj = {
            k: torch.empty_like(v, device="meta") if is_vision_key(k) else v for k, v in obj.items()
        }
    return obj
