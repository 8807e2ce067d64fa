"""Checkpoints saved by Apple's own MobileCLIP code (ml-mobileclip), in open_clip's names.

Apple's repositories for MobileCLIP v1 (apple/MobileCLIP-S0, -S1, -S2, -B) hold the state dict of
Apple's model as trained: the image tower (FastViT-MCi, unfused: MobileOne and RepMixer
branches as separate convolutions with their batch-norm statistics) under
`image_encoder.model.`, the text transformer under `text_encoder.`. open_clip's
MobileCLIP-S1/S2/B build the same towers (timm's fastvit_mci1/2 or vit_base_mci_224, also
unfused, and open_clip's text transformer; S0 and B as models/mobileclip.py completes them),
so the tensors move over by name: the image tower's names by timm's own converters for these
checkpoints, the text tower's by TEXT below, each reshaped to the place it goes to. Nothing
is fused or refitted; q, k and v are in the same order on both sides.
"""

from __future__ import annotations

import re

import torch
from torch import nn

from ..core.errors import WeightsError

IMAGE_PREFIX = "image_encoder.model."
TEXT = [  # Apple's text tower -> open_clip's (its positional embedding is (1, 1, 77, d))
    (r"text_encoder\.embedding_layer\.weight", "text.token_embedding.weight"),
    (r"text_encoder\.positional_embedding\.pos_embed\.pos_embed", "text.positional_embedding"),
    (
        r"text_encoder\.transformer\.(\d+)\.pre_norm_mha\.0\.",
        r"text.transformer.resblocks.\1.ln_1.",
    ),
    (
        r"text_encoder\.transformer\.(\d+)\.pre_norm_mha\.1\.qkv_proj\.(weight|bias)",
        r"text.transformer.resblocks.\1.attn.in_proj_\2",
    ),
    (
        r"text_encoder\.transformer\.(\d+)\.pre_norm_mha\.1\.out_proj\.",
        r"text.transformer.resblocks.\1.attn.out_proj.",
    ),
    (
        r"text_encoder\.transformer\.(\d+)\.pre_norm_ffn\.0\.",
        r"text.transformer.resblocks.\1.ln_2.",
    ),
    (
        r"text_encoder\.transformer\.(\d+)\.pre_norm_ffn\.1\.",
        r"text.transformer.resblocks.\1.mlp.c_fc.",
    ),
    (
        r"text_encoder\.transformer\.(\d+)\.pre_norm_ffn\.4\.",
        r"text.transformer.resblocks.\1.mlp.c_proj.",
    ),
    (r"text_encoder\.final_layer_norm\.", "text.ln_final."),
    *[  # MobileCLIP-S0's RepMixer blocks (models/mobileclip.py), first and last of the layers
        (rf"text_encoder\.transformer\.(\d+)\.{apple}", rf"text.transformer.resblocks.\1.{ours}")
        for apple, ours in [
            (r"token_mixer\.norm\.rbr_skip\.", "norm."),
            (r"token_mixer\.mixer\.rbr_skip\.", "skip."),
            (r"token_mixer\.mixer\.rbr_conv\.0\.conv\.", "conv."),
            (r"token_mixer\.mixer\.rbr_conv\.0\.bn\.", "conv_bn."),
            (r"token_mixer\.layer_scale", "mix_scale"),
            (r"convffn\.conv\.conv\.", "ffn_conv."),
            (r"convffn\.conv\.bn\.", "ffn_bn."),
            (r"convffn\.fc", "fc"),
            (r"layer_scale", "ffn_scale"),
        ]
    ],
    (r"text_encoder\.projection_layer", "text.text_projection"),
    (r"logit_scale", "logit_scale"),
]


def is_apple_layout(state: dict) -> bool:
    return any(k.startswith(IMAGE_PREFIX) for k in state)


def to_open_clip(state: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """Apple's state dict as open_clip's MobileCLIP names it (for `model`, its built form)."""
    image = {k: v for k, v in state.items() if k.startswith(IMAGE_PREFIX)}
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    converted = _image_converter(image)(image, model.visual.trunk)
    out = {f"visual.trunk.{k}": v for k, v in converted.items()}
    for key, value in state.items():
        if key in image:
            continue
        for pattern, name in TEXT:
            renamed, found = re.subn(f"^{pattern}", name, key)
            if found:  # Apple's 2-d convolutions over a sequence are our 1-d ones
                fits = renamed in shapes and shapes[renamed].numel() == value.numel()
                out[renamed] = value.reshape(shapes[renamed]) if fits else value
                break
        else:
            raise WeightsError(
                f"a MobileCLIP checkpoint with a tensor clipsearch cannot place: {key}"
            )
    return out


def _image_converter(image: dict[str, torch.Tensor]):
    """timm's converter from Apple's image tower: the ViT's (B, with a convolutional stem)
    or FastViT's (S0, S1, S2)."""
    if f"{IMAGE_PREFIX}patch_emb.0.block.conv.weight" in image:
        from timm.models.vision_transformer_hybrid import checkpoint_filter_fn
    else:
        from timm.models.fastvit import checkpoint_filter_fn
    return checkpoint_filter_fn
