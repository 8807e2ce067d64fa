"""The named pretrained models clipsearch knows, and where the hub keeps them.

No torch here: `clipsearch models` and the command line's help read this module alone.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Pretrained:
    """A named model on the Hugging Face hub, in open_clip's file layout."""

    name: str
    repo: str
    quick_gelu: bool
    filename: str = "open_clip_model.safetensors"

    @property
    def arch(self) -> str:
        return self.name.split("/")[0]

    @property
    def url(self) -> str:
        return f"https://huggingface.co/{self.repo}/blob/main/{self.filename}"


PRETRAINED: dict[str, Pretrained] = {
    p.name: p
    for p in [
        Pretrained("ViT-B-32/openai", "timm/vit_base_patch32_clip_224.openai", True),
        Pretrained("ViT-B-16/openai", "timm/vit_base_patch16_clip_224.openai", True),
        Pretrained("ViT-L-14/openai", "timm/vit_large_patch14_clip_224.openai", True),
        Pretrained("ViT-L-14-336/openai", "timm/vit_large_patch14_clip_336.openai", True),
        Pretrained("ViT-B-32/laion2b", "laion/CLIP-ViT-B-32-laion2B-s34B-b79K", False),
        Pretrained("ViT-B-16/laion2b", "laion/CLIP-ViT-B-16-laion2B-s34B-b88K", False),
        Pretrained("ViT-L-14/laion2b", "laion/CLIP-ViT-L-14-laion2B-s32B-b82K", False),
    ]
}
DEFAULT_MODEL = "ViT-B-32/openai"


def cached_file(p: Pretrained) -> str | None:
    """The local path of a named model's weights if the hub cache already has them."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(p.repo, p.filename)
    return found if isinstance(found, str) else None
