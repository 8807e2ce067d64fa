"""Models that only open_clip can build: SigLIP's sigmoid-trained towers with their own
tokenizers, MobileCLIP's hybrid towers, XLM-R text towers, and anything else open_clip
knows. An optional backend (`pip install "clipsearch[open_clip]"`): the model open_clip
builds is used as it is, with the config below attached, so the Encoder, training and the
saved model directory treat it as they treat clipsearch's own CLIP.

Specs: `open_clip:<arch>/<pretrained tag>` (weights fetched by open_clip into the Hugging
Face cache), and `open_clip:<arch>/random[:seed]` (untrained, for tests and benchmarks).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..core.errors import WeightsError
from ..images.pixels import INTERPOLATIONS, RESIZE_MODES, Preprocessing
from ..images.statistics import OPENAI_MEAN, OPENAI_STD
from . import apple_layout, mobileclip
from .configs import config_file
from .hub import HubError, hub_unreachable
from .pretrained import APPLE_CHECKPOINTS
from .state_dicts import read_state_dict

PREFIX = "open_clip:"
BACKEND = "open_clip"
RANDOM_TAG = "random"
INSTALL = 'pip install "clipsearch[open_clip]"'


class BackendMissing(WeightsError):
    """open_clip (or the torchvision it needs) cannot be imported here."""


def is_open_clip_spec(spec: str) -> bool:
    return spec.startswith(PREFIX)


def open_clip_module():
    """open_clip, or one line that says what to install. Its torchvision must be the build
    made for the installed torch: PyPI's CUDA torchvision fails to import beside a CPU
    torch ("operator torchvision::nms does not exist")."""
    try:
        import open_clip
    except ModuleNotFoundError as e:
        raise BackendMissing(
            f"this model is built by open_clip, which is not installed ({e.name} is missing): "
            f"{INSTALL}, with the torchvision made for your torch (docs/models.md)"
        ) from None
    except (ImportError, RuntimeError, OSError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise BackendMissing(
            f"open_clip is installed but does not import beside torch {torch.__version__} "
            f"({first[:120]}); install the torchvision built for this torch: the pairs that "
            "work are in docs/models.md"
        ) from None
    mobileclip.register(open_clip)
    return open_clip


@dataclass(frozen=True)
class OpenClipConfig:
    """What clipsearch keeps of a model open_clip builds: enough to build it again (arch),
    to tell its vectors apart (embed_dim, preprocessing) and to tokenize for it."""

    arch: str
    embed_dim: int
    preprocessing: Preprocessing
    tag: str = RANDOM_TAG  # the pretrained tag; "hub" for a hub repository
    quick_gelu: bool = False  # as the tag was trained, whatever the arch's name says
    apple_vit: bool = False  # MobileCLIP-B from Apple's checkpoint (models/mobileclip.py)

    @property
    def pixels(self) -> Preprocessing:
        return self.preprocessing

    @property
    def architecture(self) -> str:
        return f"{PREFIX}{self.arch}"

    def tokenizer(self) -> OpenClipTokenizer:
        return tokenizer_for(self.arch)

    def to_dict(self) -> dict:
        return {
            "backend": BACKEND,
            "arch": self.arch,
            "tag": self.tag,
            "embed_dim": self.embed_dim,
            "preprocessing": self.preprocessing.to_dict(),
            "quick_gelu": self.quick_gelu,
            "apple_vit": self.apple_vit,
        }

    @classmethod
    def from_dict(cls, d: dict) -> OpenClipConfig:
        prep = Preprocessing.from_dict(d["preprocessing"])
        return cls(
            d["arch"], d["embed_dim"], prep, d["tag"], d.get("quick_gelu", False),
            d.get("apple_vit", False),
        )  # fmt: skip


def is_open_clip_config(config: object) -> bool:
    return isinstance(config, OpenClipConfig)


class OpenClipTokenizer:
    """open_clip's tokenizer for an architecture, called as clipsearch's: texts in, int64
    ids (n, context length) out. Its output is never cut to the longest text: SigLIP pools
    the last position, so padding is part of the input."""

    def __init__(self, arch: str):
        self.arch = arch
        self._tokenize = _quietly(lambda: open_clip_module().get_tokenizer(arch), arch)

    def __call__(self, texts: list[str]) -> np.ndarray:
        return self._tokenize(list(texts)).numpy().astype(np.int64)


@lru_cache(maxsize=4)
def tokenizer_for(arch: str) -> OpenClipTokenizer:
    """One per architecture: a Hugging Face tokenizer is slow to build."""
    return OpenClipTokenizer(arch)


@dataclass
class OpenClipWeights:
    """The `Weights` of a model open_clip built: the model itself, since open_clip builds
    and loads in one step."""

    name: str
    config: OpenClipConfig
    model: nn.Module
    source: Path | None = None
    aligned_to: str | None = None
    complete: bool = True

    def build(self, text_only: bool = False) -> nn.Module:
        if text_only:
            self.model.visual = None
        return self.model


def parse(spec: str) -> tuple[str, str, int]:
    """`open_clip:<arch>/<tag>` -> (arch, tag, seed); the seed is for the random tag only."""
    arch, _, tag = spec[len(PREFIX) :].partition("/")
    tag, _, seed = tag.partition(":")
    if not arch or not tag:
        raise WeightsError(
            f"{spec!r}: give open_clip:<architecture>/<pretrained tag>, e.g. "
            "open_clip:ViT-B-16-SigLIP2/webli (open_clip.list_pretrained() lists them)"
        )
    if seed and not (tag == RANDOM_TAG and seed.isdigit()):
        raise WeightsError(f"{spec!r}: only open_clip:<arch>/random:<seed> takes a seed")
    return arch, tag, int(seed or 0)


def resolve(spec: str) -> OpenClipWeights:
    """An `open_clip:` spec -> the model, built (and its weights fetched) by open_clip."""
    arch, tag, seed = parse(spec)
    oc = open_clip_module()
    if arch not in oc.list_models():
        raise WeightsError(
            f"open_clip knows no architecture {arch!r} (open_clip.list_models() lists them)"
        )
    if tag == RANDOM_TAG:
        torch.manual_seed(seed)
        model = create(arch, pretrained_text=False)
        return _weights(f"{PREFIX}{arch}/{RANDOM_TAG}:{seed}", arch, RANDOM_TAG, model)
    pretrained = oc.get_pretrained_cfg(arch, tag)
    if not pretrained:
        known = ", ".join(oc.list_pretrained_tags_by_model(arch)) or "none"
        raise WeightsError(f"open_clip has no weights {tag!r} for {arch} (it has: {known})")
    quick_gelu = pretrained.get("quick_gelu", False)
    model = create(arch, f"{arch}/{tag}", pretrained=tag, force_quick_gelu=quick_gelu)
    return _weights(f"{PREFIX}{arch}/{tag}", arch, tag, model, quick_gelu)


PLAIN = {  # open_clip config keys that OpenAI's architecture (clipsearch's CLIP) has
    "model_cfg": {"embed_dim", "vision_cfg", "text_cfg", "quick_gelu"},
    "vision_cfg": {"image_size", "layers", "width", "patch_size"},
    "text_cfg": {"context_length", "vocab_size", "width", "heads", "layers"},
}


def needs_open_clip(folder: Path) -> bool:
    """Whether a folder in open_clip's layout holds anything but OpenAI's architecture
    (timm or Hugging Face towers, other tokenizers, pooling or head widths), which only
    open_clip builds right: clipsearch's CLIP would load the tensors and compute otherwise."""
    config = folder / "open_clip_config.json"
    if not config.exists():
        return False
    with config_file(config) as whole:
        cfg = whole.get("model_cfg", {})
    text = cfg.get("text_cfg", {})
    parts = {"model_cfg": cfg, "vision_cfg": cfg.get("vision_cfg", {}), "text_cfg": text}
    other_heads = "heads" in text and text["heads"] != text.get("width", 512) // 64
    return other_heads or any(set(part) - PLAIN[name] for name, part in parts.items())


def resolve_folder(name: str, folder: Path, arch: str) -> OpenClipWeights:
    """A folder in open_clip's layout, built by open_clip from its own config: `arch` is
    `hf-hub:<repo>` for a hub repository (fetched into `folder`), `local-dir:<folder>`."""
    model = create(arch, name)
    with config_file(folder / "open_clip_config.json") as cfg:
        embed_dim = cfg["model_cfg"]["embed_dim"]
    tag = "hub" if arch.startswith("hf-hub:") else "folder"
    model.config = OpenClipConfig(arch, embed_dim, preprocessing_of(model), tag)
    return OpenClipWeights(name, model.config, model.eval())


def apple_checkpoint(folder: Path) -> Path | None:
    """The checkpoint of one of Apple's MobileCLIP repositories, if the folder holds one."""
    return next((folder / n for n in APPLE_CHECKPOINTS if (folder / n).exists()), None)


def load_apple(folder: Path, checkpoint: Path) -> OpenClipWeights:
    """A checkpoint from one of Apple's MobileCLIP repositories: of open_clip's
    architecture that its file name says, read without running code (weights_only), in
    open_clip's names (MobileCLIP2) or Apple's (v1, apple_layout.py), with the
    preprocessing of that architecture's pretrained tag."""
    arch, tag = APPLE_CHECKPOINTS[checkpoint.name]
    state = read_state_dict(checkpoint)
    apples = apple_layout.is_apple_layout(state)  # MobileCLIP v1, as Apple's own code saved it
    model = create(arch, apple_vit=apples, load_weights=False, pretrained_text=False)
    if apples:
        state = apple_layout.to_open_clip(state, model)
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise WeightsError(f"{checkpoint}: weights do not fit open_clip's {arch}: {e}") from None
    oc = open_clip_module()
    trained = oc.get_pretrained_cfg(arch, tag) or mobileclip.TRAINED
    prep = replace(
        preprocessing_of(model),
        mean=tuple(trained.get("mean", OPENAI_MEAN)),
        std=tuple(trained.get("std", OPENAI_STD)),
        interpolation=trained.get("interpolation", "bicubic"),
        resize=trained.get("resize_mode", "shortest"),
    )
    embed_dim = oc.get_model_config(arch)["embed_dim"]
    model.config = OpenClipConfig(arch, embed_dim, prep, tag, apple_vit=apples)
    return OpenClipWeights(str(folder.resolve()), model.config, model.eval(), checkpoint)


def load_saved(folder: Path, config: OpenClipConfig, weights_file: Path) -> OpenClipWeights:
    """clipsearch's model directory holding a model open_clip builds (train's output)."""
    from safetensors.torch import load_file

    model = create(
        config.arch, apple_vit=config.apple_vit, load_weights=False, pretrained_text=False,
        force_quick_gelu=config.quick_gelu,
    )  # fmt: skip
    try:
        model.load_state_dict(load_file(str(weights_file)))
    except RuntimeError as e:
        raise WeightsError(f"{folder}: weights do not fit open_clip's {config.arch}: {e}") from None
    model.config = config
    return OpenClipWeights(str(folder.resolve()), config, model.eval(), weights_file)


def create(arch: str, what: str = "", apple_vit: bool = False, **options) -> nn.Module:
    """open_clip's model for `arch`, with `options` for its create_model; MobileCLIP-S0 and
    Apple's MobileCLIP-B completed as models/mobileclip.py says."""
    model = _quietly(lambda: open_clip_module().create_model(arch, **options), what or arch)
    return mobileclip.as_apple(model, arch, apple_vit)


def _weights(
    name: str, arch: str, tag: str, model: nn.Module, quick_gelu: bool = False
) -> OpenClipWeights:
    embed_dim = open_clip_module().get_model_config(arch)["embed_dim"]
    model.config = OpenClipConfig(arch, embed_dim, preprocessing_of(model), tag, quick_gelu)
    return OpenClipWeights(name, model.config, model.eval())


def preprocessing_of(model: nn.Module) -> Preprocessing:
    """open_clip's preprocess_cfg (the architecture's, merged with the pretrained tag's)
    as a Preprocessing."""
    cfg = model.visual.preprocess_cfg
    size = cfg["size"]
    height, width = (size, size) if isinstance(size, int) else size
    if height != width or cfg["resize_mode"] not in RESIZE_MODES:
        raise WeightsError(
            f"{height}x{width} images resized by {cfg['resize_mode']!r}: clipsearch feeds "
            "square images resized by shortest side, squash or longest side"
        )
    if cfg["interpolation"] not in INTERPOLATIONS:
        raise WeightsError(f"{cfg['interpolation']!r} interpolation is not supported")
    return Preprocessing(
        height, cfg["resize_mode"], cfg["interpolation"], tuple(cfg["mean"]), tuple(cfg["std"])
    )


def _quietly(make, what: str):
    """Run an open_clip call with its log lines kept off the terminal ("No pretrained
    weights loaded" for a random model is expected), its failures as one line."""
    logging.disable(logging.CRITICAL)
    try:
        return make()
    except WeightsError:
        raise
    except Exception as e:  # a download, a tokenizer or a config that open_clip refused
        offline = hub_unreachable()
        said = str(e).strip().splitlines()
        reason = f"{type(e).__name__}: {said[0][:160] if said else ''}"
        raise HubError(
            f"open_clip could not build {what} ({reason})"
            + (
                f"; the Hugging Face hub cannot be reached ({offline}): fetch it on a machine "
                "with internet (it lands in ~/.cache/huggingface), then copy that cache here"
                if offline
                else ""
            )
        ) from None
    finally:
        logging.disable(logging.NOTSET)
