"""MobileCLIP as Apple's own code (ml-mobileclip) computes it, where open_clip does not.

- MobileCLIP-S0, which open_clip lacks: timm's fastvit_mci0 image tower (open_clip builds
  it from clipsearch's config, data/MobileCLIP-S0.json) and Apple's "mct" text tower, a
  4-layer transformer between two RepMixer blocks. The blocks are the first and last of
  the transformer's `resblocks`, so the layers are numbered as in Apple's checkpoint.
- MobileCLIP-B from Apple's checkpoint: Apple's ViT pads its first stem convolution by 1
  and its LayerNorms use eps 1e-5; timm's vit_base_mci_224 pads by 0 with eps 1e-6, which
  moves the vectors (cosine 0.998 to Apple's for the same random weights).

Both are trained as branches (batch norms beside convolutions): `fuse` folds them into
single convolutions for inference, equal to the trained form to float rounding.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

S0 = "MobileCLIP-S0"
B = "MobileCLIP-B"
CONFIG = Path(__file__).resolve().parent.parent / "data" / f"{S0}.json"
KERNEL = 11  # tokens each RepMixer convolution sees
# How Apple's code prepares an image for S0 (open_clip has no pretrained tag to say it):
# shortest side to 256 px, bilinear, centre crop, no normalisation.
TRAINED = {"mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0), "interpolation": "bilinear"}


def register(open_clip) -> None:
    """Teach open_clip the MobileCLIP-S0 architecture (its model config), once."""
    if S0 not in open_clip.list_models():
        open_clip.add_model_config(CONFIG)


def as_apple(model: nn.Module, arch: str, apple_vit: bool = False) -> nn.Module:
    """open_clip's model for `arch` made to compute as Apple's: S0's text tower always,
    MobileCLIP-B's stem and norms where its weights are Apple's (`apple_vit`)."""
    if arch == S0:
        _add_repmixers(model.text)
    if arch == B and apple_vit and model.visual is not None:
        model.visual.trunk.patch_embed.backbone[0].conv.padding = (1, 1)
        for module in model.visual.modules():
            if isinstance(module, nn.LayerNorm):
                module.eps = 1e-5
    return model


def _add_repmixers(text: nn.Module) -> None:
    blocks = text.transformer.resblocks  # batch-first (open_clip >= 3.0, as pyproject asks)
    width = text.transformer.width
    text.transformer.resblocks = nn.ModuleList([RepMixerBlock(width), *blocks])
    text.transformer.resblocks.append(RepMixerBlock(width))


def fusable(model: nn.Module) -> bool:
    """Whether the model has train-time branches to fold (MobileCLIP's towers)."""
    return any(
        isinstance(m, RepMixerBlock) or hasattr(m, "reparameterize") for m in model.modules()
    )


def fuse(model: nn.Module) -> nn.Module:
    """The model with every train-time branch folded, in place (timm's walk: `fuse()` or
    `reparameterize()` on each module that has one). For inference only: the fused model's
    tensors are no longer the checkpoint's."""
    from timm.models import reparameterize_model

    return reparameterize_model(model, inplace=True)


class _InTransformer(nn.Module):
    """A block in place of a transformer layer: open_clip asks the first layer the dtype
    that the text's embeddings are cast to."""

    def get_weight_dtype(self) -> torch.dtype:
        return self.ffn_conv.weight.dtype


class RepMixerBlock(_InTransformer):
    """Apple's RepMixer block over a token sequence (n, length, d): a depthwise convolution
    along the sequence mixes each token with its neighbours (a branch beside an identity
    and a norm that a fused kernel absorbs), then a convolutional MLP; each scaled per
    channel. It takes and ignores an attention mask, as a transformer layer's place asks."""

    def __init__(self, dim: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.norm = nn.BatchNorm1d(dim)  # subtracted: a fused kernel starts from identity
        self.skip = nn.BatchNorm1d(dim)
        self.conv = _depthwise(dim, bias=False)
        self.conv_bn = nn.BatchNorm1d(dim)
        self.mix_scale = nn.Parameter(torch.full((dim,), 1e-5))
        self.ffn_conv = _depthwise(dim, bias=False)
        self.ffn_bn = nn.BatchNorm1d(dim)
        self.fc1 = nn.Linear(dim, int(dim * mlp_ratio))
        self.fc2 = nn.Linear(int(dim * mlp_ratio), dim)
        self.ffn_scale = nn.Parameter(torch.full((dim,), 1e-5))

    def forward(self, x: torch.Tensor, *_, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        x = x.transpose(1, 2)  # (n, d, length): channels first, as the convolutions take
        branches = self.conv_bn(self.conv(x)) + self.skip(x) - self.norm(x)
        x = x + self.mix_scale[:, None] * branches
        hidden = self.ffn_bn(self.ffn_conv(x)).transpose(1, 2)
        mlp = self.fc2(F.gelu(self.fc1(hidden)))
        return x.transpose(1, 2) + self.ffn_scale * mlp

    @torch.no_grad()
    def fuse(self) -> FusedRepMixerBlock:
        """One convolution for the mixer, the MLP's norm inside its convolution, its scale
        inside its last layer."""
        dim = self.mix_scale.numel()
        centre = torch.zeros(dim, 1, KERNEL)
        centre[:, 0, KERNEL // 2] = 1.0
        conv_w, conv_b = _folded(self.conv.weight, self.conv_bn)
        skip_w, skip_b = _folded(centre, self.skip)
        norm_w, norm_b = _folded(centre, self.norm)
        scale = self.mix_scale[:, None, None]
        fused = FusedRepMixerBlock(dim, self.fc1.out_features)
        fused.mixer.weight.copy_(centre + scale * (conv_w + skip_w - norm_w))
        fused.mixer.bias.copy_(self.mix_scale * (conv_b + skip_b - norm_b))
        ffn_w, ffn_b = _folded(self.ffn_conv.weight, self.ffn_bn)
        fused.ffn_conv.weight.copy_(ffn_w)
        fused.ffn_conv.bias.copy_(ffn_b)
        fused.fc1.load_state_dict(self.fc1.state_dict())
        fused.fc2.weight.copy_(self.fc2.weight * self.ffn_scale[:, None])
        fused.fc2.bias.copy_(self.fc2.bias * self.ffn_scale)
        return fused


class FusedRepMixerBlock(_InTransformer):
    """A RepMixerBlock for inference: what the trained branches compute, in one
    convolution per step."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.mixer = _depthwise(dim, bias=True)
        self.ffn_conv = _depthwise(dim, bias=True)
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor, *_, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        x = self.mixer(x.transpose(1, 2))
        hidden = self.ffn_conv(x).transpose(1, 2)
        return x.transpose(1, 2) + self.fc2(F.gelu(self.fc1(hidden)))


def _depthwise(dim: int, bias: bool) -> nn.Conv1d:
    return nn.Conv1d(dim, dim, KERNEL, padding=KERNEL // 2, groups=dim, bias=bias)


def _folded(weight: torch.Tensor, bn: nn.BatchNorm1d) -> tuple[torch.Tensor, torch.Tensor]:
    """A bias-free convolution followed by an eval-mode batch norm, as one convolution."""
    gain = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return weight * gain[:, None, None], bn.bias - bn.running_mean * gain
