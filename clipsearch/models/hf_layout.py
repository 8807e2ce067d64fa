"""Hugging Face's CLIPModel in OpenAI's layout: its keys renamed, its q/k/v projections
joined into one, its projections transposed (they are Linear weights there)."""

from __future__ import annotations

import re

import torch

from ..core.errors import WeightsError

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
