"""MobileCLIP as Apple's code computes it: S0's RepMixer text tower (which no installable
library builds), its fused form, and Apple's own checkpoints of S0 and B read by their
repository ids, giving the vectors Apple's code gave for the same weights.

Those vectors (tests/data/mobileclip_apple_vectors.json) were computed once by Apple's
ml-mobileclip code, which is not on the package registries, from the weights that
`apples_weights` makes: integer arithmetic, so every machine makes the same ones.
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import cached_repo, needs_open_clip

from clipsearch.models.encoder import load_model
from clipsearch.models.mobileclip import RepMixerBlock

DATA = Path(__file__).resolve().parents[1] / "data"
TEXTS = ["a photo of a dog", "a diagram", ""]
APPLE_CONFIGS = {  # Apple's configs/mobileclip_*.json, the config.json of its repositories
    "s0": {"embed_dim": 512, "image_cfg": {"image_size": 256, "model_name": "mci0"},
           "text_cfg": {"context_length": 77, "vocab_size": 49408, "dim": 512,
                        "ffn_multiplier_per_layer": 4.0, "n_heads_per_layer": 8,
                        "n_transformer_layers": 4, "norm_layer": "layer_norm_fp32",
                        "causal_masking": False, "model_name": "mct"}},
    "b": {"embed_dim": 512, "image_cfg": {"image_size": 224, "model_name": "vit_b16"},
          "text_cfg": {"context_length": 77, "vocab_size": 49408, "dim": 512,
                       "ffn_multiplier_per_layer": 4.0, "n_heads_per_layer": 8,
                       "n_transformer_layers": 12, "norm_layer": "layer_norm_fp32",
                       "causal_masking": True, "model_name": "base"}},
}  # fmt: skip


def uniform(name: str, n: int) -> torch.Tensor:
    """n numbers in [0, 1) from the tensor's name by a Lehmer generator: exact integer
    steps, the same on every machine and torch version."""
    modulus = 2_147_483_647
    x = (torch.arange(1, n + 1, dtype=torch.int64) * 48271 + zlib.crc32(name.encode())) % modulus
    x = (x * 48271) % modulus
    return x.double().div(modulus).float()


def apples_weights(keys: list[tuple[str, list[int]]]) -> dict[str, torch.Tensor]:
    """A checkpoint in Apple's names and shapes, with weights that keep every layer's
    output in range: norms near 1, batch-norm statistics spread, scales small."""
    state = {}
    for name, shape in keys:
        n = int(np.prod(shape)) if shape else 1
        u = uniform(name, n).reshape(shape)
        if name.endswith("num_batches_tracked"):
            value = torch.zeros(shape, dtype=torch.int64)
        elif name.endswith("logit_scale"):
            value = torch.full(shape, 4.6)
        elif "layer_scale" in name:
            value = 0.01 + 0.05 * u
        elif name.endswith("running_var"):
            value = 0.5 + u
        elif name.endswith("running_mean"):
            value = 0.2 * u - 0.1
        elif len(shape) == 1 and name.endswith("weight"):  # a norm's gain
            value = 0.9 + 0.2 * u
        elif len(shape) <= 1:  # biases: small, or a constant drowns what the image adds
            value = 0.02 * u - 0.01
        else:
            fan_in = n // shape[0]
            value = (2 * u - 1) * (3 / fan_in) ** 0.5
        state[name] = value
    return state


def pictures(size: int) -> np.ndarray:
    """Two uint8 squares, as decoding sends them: dark stripes and a bright gradient (with
    unnormalised pixels, random weights see mostly an image's mean)."""
    y, x = np.mgrid[0:size, 0:size]
    first = np.stack([(x * 7 + y * 13) % 64, (x * 3) % 48, (y * 5) % 32], axis=-1)
    second = 255 - np.stack([x * 96 // size, y * 64 // size, (x + y) * 32 // size], axis=-1)
    return np.stack([first, second]).astype(np.uint8)


def apples_repository(cache: Path, tmp_path: Path, size: str) -> str:
    """apple/MobileCLIP-<size> as the hub holds it: Apple's config and checkpoint."""
    keys = json.loads((DATA / f"mobileclip_{size}_keys.json").read_text())
    repo = tmp_path / size
    repo.mkdir()
    torch.save(apples_weights(keys), repo / f"mobileclip_{size}.pt")
    (repo / "config.json").write_text(json.dumps(APPLE_CONFIGS[size]))
    repo_id = f"apple/MobileCLIP-{size.upper()}"
    cached_repo(cache, repo_id, repo)
    return repo_id


@pytest.fixture
def hub(tmp_path, monkeypatch):
    cache = tmp_path / "hub"
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(cache))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    return cache


@needs_open_clip
@pytest.mark.parametrize("size", ["s0", "b"])
def test_apples_checkpoint_by_its_id_gives_apples_vectors(size, hub, tmp_path):
    """`--model apple/MobileCLIP-S0` (and -B): Apple's checkpoint (S0's fused for
    inference) gives the vectors Apple's own code gives for the same weights, with Apple's image
    preparation (its size, no normalisation)."""
    expected = json.loads((DATA / "mobileclip_apple_vectors.json").read_text())[size]
    encoder = load_model(apples_repository(hub, tmp_path, size), precision="fp32")
    prep = encoder.preprocessing
    assert (prep.size, prep.mean, prep.std) == (expected["image_size"], (0, 0, 0), (1, 1, 1))
    assert prep.interpolation == "bilinear"
    assert encoder.fused == (size == "s0")  # B's ViT has no branches to fold
    assert not any(isinstance(m, RepMixerBlock) for m in encoder.model.modules())
    np.testing.assert_allclose(encoder.encode_text(TEXTS), expected["texts"], atol=2e-5)
    vectors = encoder.encode_pixels(pictures(prep.size))
    np.testing.assert_allclose(vectors, expected["images"], atol=2e-5)


@needs_open_clip
def test_s0_has_the_parameters_apple_publishes():
    """11.4M in the image tower (with its projection), 42.4M in the text tower."""
    from clipsearch.models.open_clip_models import create

    model = create("MobileCLIP-S0", pretrained_text=False)
    image = sum(p.numel() for p in model.visual.parameters())
    text = sum(p.numel() for p in model.text.parameters())
    assert (round(image / 1e5), round(text / 1e5)) == (114, 424)
    mixers = [type(b).__name__ for b in model.text.transformer.resblocks]
    assert mixers == ["RepMixerBlock", *["ResidualAttentionBlock"] * 4, "RepMixerBlock"]


def trained_block(seed: int) -> RepMixerBlock:
    """A block as training leaves it: batch-norm statistics and scales away from their
    starting values, so that every branch counts."""
    torch.manual_seed(seed)
    block = RepMixerBlock(32).eval()
    with torch.no_grad():
        for bn in (block.norm, block.skip, block.conv_bn, block.ffn_bn):
            bn.running_mean.normal_(0, 0.3)
            bn.running_var.uniform_(0.3, 2.0)
            bn.weight.normal_(1, 0.2)
            bn.bias.normal_(0, 0.2)
        block.mix_scale.uniform_(0.1, 0.5)
        block.ffn_scale.uniform_(0.1, 0.5)
    return block


def test_a_fused_repmixer_block_computes_what_its_branches_compute():
    block = trained_block(0)
    tokens = torch.randn(3, 77, 32)
    with torch.no_grad():
        branches = block(tokens, attn_mask=None)
        fused = block.fuse()(tokens, attn_mask=None)
    assert branches.shape == (3, 77, 32)
    torch.testing.assert_close(fused, branches, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(branches, tokens, atol=1e-2)  # the block did something


def test_a_repmixer_block_mixes_only_neighbouring_tokens():
    """Each token sees the 5 on either side through each of the two convolutions: a
    change at position 40 reaches 30..50 and nothing further."""
    block = trained_block(1)
    tokens = torch.randn(1, 77, 32)
    changed = tokens.clone()
    changed[0, 40] += 1.0
    with torch.no_grad():
        moved = (block(changed) - block(tokens)).abs().amax(dim=-1)[0]
    reached = torch.nonzero(moved > 1e-7).flatten().tolist()
    assert reached[0] >= 30 and reached[-1] <= 50 and 40 in reached


def apples_mobileclip2(cache: Path, tmp_path: Path) -> str:
    """apple/MobileCLIP2-S0 as the hub holds it: open_clip's tensors, bare, in the file
    whose name says the architecture (as -L-14's mobileclip2_l14.pt does)."""
    from clipsearch.models.open_clip_models import create, open_clip_module

    torch.manual_seed(0)
    model = create("MobileCLIP2-S0", pretrained_text=False)
    repo = tmp_path / "mobileclip2"
    repo.mkdir()
    torch.save(model.state_dict(), repo / "mobileclip2_s0.pt")
    config = open_clip_module().get_model_config("MobileCLIP2-S0")
    (repo / "config.json").write_text(json.dumps(config))
    cached_repo(cache, "apple/MobileCLIP2-S0", repo)
    return "apple/MobileCLIP2-S0"


@needs_open_clip
@pytest.mark.parametrize("layout", ["apple v1", "apple v2"])
def test_apples_ids_index_answer_serve_and_fine_tune(layout, hub, tmp_path):
    """apple/MobileCLIP-S0 (Apple's code's names) and apple/MobileCLIP2-S0 (open_clip's,
    as every MobileCLIP2 repository up to -L-14) from the cache, offline, through every
    command that takes a model; the trained S0 loads back unfused, its blocks trained."""
    from helpers import through_every_command

    if layout == "apple v1":
        repo_id = apples_repository(hub, tmp_path, "s0")
        assert load_model("MobileCLIP-S0/datacompdr").digest == load_model(repo_id).digest
    else:
        repo_id = apples_mobileclip2(hub, tmp_path)
    start, tuned = through_every_command(repo_id, tmp_path)
    assert tuned.architecture == start.architecture == f"open_clip:{repo_id[6:]}"


@needs_open_clip
def test_every_apple_checkpoint_name_says_an_architecture_open_clip_knows():
    """The table from the file in Apple's repositories (mobileclip2_l14.pt...) to the
    architecture and pretrained tag: each is in open_clip's lists (S0's tag is Apple's
    own, open_clip having no S0), and each architecture builds with the vector size its
    named entry says."""
    from clipsearch.models.open_clip_models import open_clip_module
    from clipsearch.models.pretrained import APPLE_CHECKPOINTS, PRETRAINED

    open_clip = open_clip_module()
    named = {p.open_clip: p for p in PRETRAINED.values()}
    for checkpoint, (arch, tag) in APPLE_CHECKPOINTS.items():
        assert arch in open_clip.list_models(), checkpoint
        if arch != "MobileCLIP-S0":
            assert tag in open_clip.list_pretrained_tags_by_model(arch), checkpoint
        if (arch, tag) in named:
            assert open_clip.get_model_config(arch)["embed_dim"] == named[arch, tag].embed_dim
    assert {"MobileCLIP2-L-14", "MobileCLIP-S0", "MobileCLIP-B"} <= {
        arch for arch, _ in APPLE_CHECKPOINTS.values()
    }
