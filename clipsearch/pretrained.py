"""The named pretrained models clipsearch knows, and where the hub keeps them.

No torch here: `clipsearch models` and the command line's help read this module.
"""

from __future__ import annotations

from dataclasses import dataclass

from .preprocess import INCEPTION_MEAN, INCEPTION_STD, OPENAI_MEAN, OPENAI_STD


@dataclass(frozen=True)
class Pretrained:
    """A named model on the Hugging Face hub, in open_clip's file layout, with the
    preprocessing it was trained with (open_clip's pretrained.py says which)."""

    name: str
    repo: str
    quick_gelu: bool
    filename: str = "open_clip_model.safetensors"
    mean: tuple[float, float, float] = OPENAI_MEAN
    std: tuple[float, float, float] = OPENAI_STD
    resize: str = "shortest"
    interpolation: str = "bicubic"
    open_clip: tuple[str, str] = ("", "")  # (architecture, pretrained tag) in open_clip

    @property
    def arch(self) -> str:
        return self.name.split("/")[0]

    @property
    def url(self) -> str:
        return f"https://huggingface.co/{self.repo}/blob/main/{self.filename}"


PRETRAINED: dict[str, Pretrained] = {
    p.name: p
    for p in [
        Pretrained(
            "ViT-B-32/openai",
            "timm/vit_base_patch32_clip_224.openai",
            True,
            open_clip=("ViT-B-32", "openai"),
        ),
        Pretrained(
            "ViT-B-16/openai",
            "timm/vit_base_patch16_clip_224.openai",
            True,
            open_clip=("ViT-B-16", "openai"),
        ),
        Pretrained(
            "ViT-L-14/openai",
            "timm/vit_large_patch14_clip_224.openai",
            True,
            open_clip=("ViT-L-14", "openai"),
        ),
        Pretrained(
            "ViT-L-14-336/openai",
            "timm/vit_large_patch14_clip_336.openai",
            True,
            open_clip=("ViT-L-14-336", "openai"),
        ),
        Pretrained(
            "ViT-B-32/laion2b",
            "laion/CLIP-ViT-B-32-laion2B-s34B-b79K",
            False,
            open_clip=("ViT-B-32", "laion2b_s34b_b79k"),
        ),
        Pretrained(
            "ViT-B-16/laion2b",
            "laion/CLIP-ViT-B-16-laion2B-s34B-b88K",
            False,
            open_clip=("ViT-B-16", "laion2b_s34b_b88k"),
        ),
        Pretrained(  # open_clip's laion2b_s32b_b82k: Inception's statistics
            "ViT-L-14/laion2b",
            "laion/CLIP-ViT-L-14-laion2B-s32B-b82K",
            False,
            mean=INCEPTION_MEAN,
            std=INCEPTION_STD,
            open_clip=("ViT-L-14", "laion2b_s32b_b82k"),
        ),
    ]
}
DEFAULT_MODEL = "ViT-B-32/openai"


def cached_file(p: Pretrained) -> str | None:
    """The local path of a named model's weights if the hub cache already has them."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(p.repo, p.filename)
    return found if isinstance(found, str) else None
