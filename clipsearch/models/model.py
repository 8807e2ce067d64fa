"""CLIP (Radford et al., 2021) as released: a ViT image tower and a causal text transformer.

Parameter names follow OpenAI's `clip/model.py`, so OpenAI and open_clip state dicts load
as they are; `weights.py` converts the other formats into this layout.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..images.pixels import Preprocessing
from .onednn import linear, run


@dataclass(frozen=True)
class VisionConfig:
    image_size: int = 224
    patch_size: int = 32
    width: int = 768
    layers: int = 12
    heads: int = 12


@dataclass(frozen=True)
class TextConfig:
    context_length: int = 77
    vocab_size: int = 49408
    width: int = 512
    layers: int = 12
    heads: int = 8


@dataclass(frozen=True)
class CLIPConfig:
    embed_dim: int = 512
    vision: VisionConfig = field(default_factory=VisionConfig)
    text: TextConfig = field(default_factory=TextConfig)
    quick_gelu: bool = True  # OpenAI's weights use QuickGELU; most LAION weights use GELU
    preprocessing: Preprocessing | None = None  # None: OpenAI's, at vision.image_size

    @property
    def pixels(self) -> Preprocessing:
        """How images become this model's input: part of the model, as its weights are."""
        return self.preprocessing or Preprocessing(self.vision.image_size)

    @property
    def architecture(self) -> str:
        v = self.vision
        return f"ViT-{v.width}w{v.layers}l/{v.patch_size}@{v.image_size}"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> CLIPConfig:
        prep = d.get("preprocessing")
        return cls(
            embed_dim=d["embed_dim"],
            vision=VisionConfig(**d["vision"]),
            text=TextConfig(**d["text"]),
            quick_gelu=d["quick_gelu"],
            preprocessing=Preprocessing.from_dict(prep) if prep else None,
        )


def _config(embed, image, patch, v_width, v_layers, t_width, t_layers) -> CLIPConfig:
    return CLIPConfig(
        embed_dim=embed,
        vision=VisionConfig(image, patch, v_width, v_layers, v_width // 64),
        text=TextConfig(width=t_width, layers=t_layers, heads=t_width // 64),
    )


CONFIGS: dict[str, CLIPConfig] = {
    "ViT-B-32": _config(512, 224, 32, 768, 12, 512, 12),
    "ViT-B-16": _config(512, 224, 16, 768, 12, 512, 12),
    "ViT-L-14": _config(768, 224, 14, 1024, 24, 768, 12),
    "ViT-L-14-336": _config(768, 336, 14, 1024, 24, 768, 12),
    # Small configs for tests, benchmarks and training from scratch on small data.
    "tiny": CLIPConfig(
        64, VisionConfig(32, 8, 128, 2, 2), TextConfig(width=128, layers=2, heads=2)
    ),
    "mini": CLIPConfig(
        128, VisionConfig(64, 8, 128, 3, 2), TextConfig(width=128, layers=3, heads=2)
    ),
    "small": CLIPConfig(
        256, VisionConfig(64, 8, 256, 6, 4), TextConfig(width=256, layers=4, heads=4)
    ),
}


class LayerNorm(nn.LayerNorm):
    """LayerNorm computed in fp32, as OpenAI's, so fp16/bf16 towers stay stable."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(
            x.float(), self.normalized_shape, self.weight.float(), self.bias.float(), self.eps
        ).to(x.dtype)


class QuickGELU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled():
            return x * torch.sigmoid(1.702 * x)
        return x.mul(1.702).sigmoid_().mul_(x)  # the same values, one temporary instead of two


class Attention(nn.Module):
    """Multi-head self-attention with nn.MultiheadAttention's parameter names."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * width, width))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * width))
        self.out_proj = nn.Linear(width, width)
        nn.init.xavier_uniform_(self.in_proj_weight)

    def forward(self, x: torch.Tensor, causal: bool, first_only: bool = False) -> torch.Tensor:
        """first_only: attention for the first position's query alone, (n, 1, width)."""
        w, b = self.in_proj_weight, self.in_proj_bias
        if first_only:
            width = x.shape[-1]
            q = linear(x[:, :1], w[:width], b[:width])
            k, v = linear(x, w[width:], b[width:]).chunk(2, dim=-1)
        else:
            q, k, v = linear(x, w, b).chunk(3, dim=-1)
        return run(self.out_proj, attend(q, k, v, self.heads, causal))


def attend(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int, causal: bool
) -> torch.Tensor:
    """(n, queries, width) queries, (n, length, width) keys and values -> (n, queries, width)."""
    n, queries, width = q.shape
    q, k, v = (t.unflatten(-1, (heads, width // heads)).transpose(1, 2) for t in (q, k, v))
    y = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    return y.transpose(1, 2).reshape(n, queries, width)


class MLP(nn.Module):
    def __init__(self, width: int, quick_gelu: bool):
        super().__init__()
        self.c_fc = nn.Linear(width, 4 * width)
        self.gelu = QuickGELU() if quick_gelu else nn.GELU()
        self.c_proj = nn.Linear(4 * width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return run(self.c_proj, self.gelu(run(self.c_fc, x)))


class ResidualAttentionBlock(nn.Module):
    def __init__(self, width: int, heads: int, quick_gelu: bool):
        super().__init__()
        self.ln_1 = LayerNorm(width)
        self.attn = Attention(width, heads)
        self.ln_2 = LayerNorm(width)
        self.mlp = MLP(width, quick_gelu)

    def forward(self, x: torch.Tensor, causal: bool, first_only: bool = False) -> torch.Tensor:
        """first_only: the output at the first position alone, (n, 1, width)."""
        y = self.ln_1(x)
        if first_only:
            x = x[:, :1] + self.attn(y, causal, first_only=True)
        else:
            x = x + self.attn(y, causal)
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    def __init__(self, width: int, layers: int, heads: int, quick_gelu: bool, causal: bool):
        super().__init__()
        self.causal = causal
        self.grad_checkpointing = False
        self.resblocks = nn.ModuleList(
            ResidualAttentionBlock(width, heads, quick_gelu) for _ in range(layers)
        )

    def forward(self, x: torch.Tensor, first_only: bool = False) -> torch.Tensor:
        """first_only: the last block computes the first position alone, (n, 1, width),
        all that a tower pooled there reads, for a fifth of that block's work (ViT-B/32)."""
        last = len(self.resblocks) - 1
        for i, block in enumerate(self.resblocks):
            args = (x, self.causal, True) if first_only and i == last else (x, self.causal)
            if self.grad_checkpointing and self.training:
                x = checkpoint(block, *args, use_reentrant=False)
            else:
                x = block(*args)
        return x


def normal(*shape: int, std: float) -> torch.Tensor:
    """N(0, std) values, or only the shape on the meta device: a model built there is about
    to receive loaded weights, and drawing on it would import torch's compiler (seconds)."""
    t = torch.empty(*shape)
    return t if t.is_meta else t.normal_(std=std)


class VisionTransformer(nn.Module):
    def __init__(self, cfg: VisionConfig, embed_dim: int, quick_gelu: bool):
        super().__init__()
        grid = cfg.image_size // cfg.patch_size
        scale = cfg.width**-0.5
        self.conv1 = nn.Conv2d(3, cfg.width, cfg.patch_size, cfg.patch_size, bias=False)
        self.class_embedding = nn.Parameter(normal(cfg.width, std=scale))
        self.positional_embedding = nn.Parameter(normal(grid * grid + 1, cfg.width, std=scale))
        self.ln_pre = LayerNorm(cfg.width)
        self.transformer = Transformer(cfg.width, cfg.layers, cfg.heads, quick_gelu, causal=False)
        self.ln_post = LayerNorm(cfg.width)
        self.proj = nn.Parameter(normal(cfg.width, embed_dim, std=scale))

    def tokens(self, pixels: torch.Tensor) -> torch.Tensor:
        """(n, 3, size, size) -> (n, 1 + grid*grid, width): the class token, then patches.
        conv1 (stride = kernel) is one matrix product over the patches: the same sums,
        and a fifth less time than the convolution on a CPU."""
        n, c, height, width = pixels.shape
        p = self.conv1.stride[0]
        rows, cols = height // p, width // p  # the convolution leaves any remainder out
        patches = pixels[:, :, : rows * p, : cols * p].reshape(n, c, rows, p, cols, p)
        patches = patches.permute(0, 2, 4, 1, 3, 5).reshape(n, rows * cols, c * p * p)
        x = linear(patches, self.conv1.weight.flatten(1), None)  # (n, grid*grid, width)
        cls = self.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        return torch.cat([cls, x], dim=1) + self.positional_embedding.to(x.dtype)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = self.transformer(self.ln_pre(self.tokens(pixels)), first_only=True)
        return self.ln_post(x[:, 0]) @ self.proj


class CLIP(nn.Module):
    def __init__(self, cfg: CLIPConfig):
        super().__init__()
        self.config = cfg
        t = cfg.text
        self.visual = VisionTransformer(cfg.vision, cfg.embed_dim, cfg.quick_gelu)
        self.token_embedding = nn.Embedding(
            t.vocab_size, t.width, _weight=normal(t.vocab_size, t.width, std=1.0)
        )
        self.positional_embedding = nn.Parameter(torch.empty(t.context_length, t.width))
        self.transformer = Transformer(t.width, t.layers, t.heads, cfg.quick_gelu, causal=True)
        self.ln_final = LayerNorm(t.width)
        self.text_projection = nn.Parameter(torch.empty(t.width, cfg.embed_dim))
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
        self._init_text()

    def _init_text(self) -> None:
        """OpenAI's initialisation, so training from scratch starts where the paper did."""
        if self.text_projection.is_meta:
            return
        t = self.config.text
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.positional_embedding, std=0.01)
        proj_std = (t.width**-0.5) * ((2 * t.layers) ** -0.5)
        for block in self.transformer.resblocks:
            nn.init.normal_(block.attn.in_proj_weight, std=t.width**-0.5)
            nn.init.normal_(block.attn.out_proj.weight, std=proj_std)
            nn.init.normal_(block.mlp.c_fc.weight, std=(2 * t.width) ** -0.5)
            nn.init.normal_(block.mlp.c_proj.weight, std=proj_std)
        nn.init.normal_(self.text_projection, std=t.width**-0.5)

    @property
    def dtype(self) -> torch.dtype:
        return self.token_embedding.weight.dtype

    def set_grad_checkpointing(self, enabled: bool = True) -> None:
        self.visual.transformer.grad_checkpointing = enabled
        self.transformer.grad_checkpointing = enabled

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        """(n, 3, size, size) normalised pixels -> (n, embed_dim), not normalised."""
        return self.visual(pixels.to(self.dtype))

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        """(n, length <= context) token ids -> (n, embed_dim), not normalised.

        The mask is causal and pooling is at end-of-text (the largest id), so a batch may
        be cut to its longest member: positions after end-of-text never reach the output.
        """
        length = tokens.shape[1]
        x = self.token_embedding(tokens) + self.positional_embedding[:length]
        x = self.ln_final(self.transformer(x.to(self.dtype)))
        eot = tokens.argmax(dim=-1)
        return x[torch.arange(x.shape[0], device=x.device), eot] @ self.text_projection

    def forward(
        self, pixels: torch.Tensor, tokens: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Unit image and text features, as open_clip; logits are
        `logit_scale.exp() * image @ text.T`. Training calls this through DDP."""
        image = F.normalize(self.encode_image(pixels), dim=-1)
        text = F.normalize(self.encode_text(tokens), dim=-1)
        return image, text
