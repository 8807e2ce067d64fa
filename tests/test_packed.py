"""The packed text tower computes what the plain one does and changes nothing else."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from clipsearch import packed
from clipsearch.encoder import Encoder, load_model, weights_digest
from clipsearch.model import CLIP, CONFIGS, Attention
from clipsearch.tokenizer import default_tokenizer

pytestmark = pytest.mark.skipif(not packed.available(), reason="torch built without oneDNN")

TEXTS = ["a dog", "a photo of a beach at sunset with two people walking", "🐶 " * 40, ""]


def test_packed_text_tower_equals_plain():
    torch.manual_seed(0)
    model = CLIP(CONFIGS["mini"]).eval()
    for p in model.parameters():  # biases start at zero; make every tensor count
        p.data += 0.02 * torch.randn_like(p)
    tokens = torch.from_numpy(default_tokenizer()(TEXTS))
    with torch.no_grad():
        plain = model.encode_text(tokens)
        packed.pack_text_tower(model)
        fast = model.encode_text(tokens)
    assert isinstance(model.transformer.resblocks[0].attn, packed.PackedAttention)
    assert torch.allclose(plain, fast, atol=1e-5, rtol=1e-5)


def test_packing_keeps_state_dict_digest_and_saving(tmp_path):
    encoder = load_model("random:tiny")
    before = {k: v.clone() for k, v in encoder.model.state_dict().items()}
    encoder.encode_text(["packs the text tower"])
    assert isinstance(encoder.model.transformer.resblocks[0].mlp.c_fc, packed.PackedLinear)
    after = encoder.model.state_dict()
    assert list(after) == list(before)
    assert all(torch.equal(after[k], before[k]) for k in before)
    assert weights_digest(encoder.model) == encoder.digest
    encoder.save(str(tmp_path / "saved"))
    again = load_model(str(tmp_path / "saved"))
    assert again.digest == encoder.digest
    a, b = encoder.encode_text(TEXTS), again.encode_text(TEXTS)
    assert np.allclose(a, b, atol=1e-6)


def test_encoder_over_a_model_in_training_leaves_it_unpacked():
    """Validation wraps the live training model; a packed copy would freeze its weights."""
    model = CLIP(CONFIGS["tiny"])
    Encoder(model, "in training").encode_text(["validation caption"])
    assert type(model.transformer.resblocks[0].attn) is Attention


def test_int8_text_tower_quantises_the_in_projection_too():
    """quantize_dynamic sees only nn.Linear; the in-projection is two bare parameters."""
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    fp32, int8 = load_model("random:mini"), load_model("random:mini", precision="int8")
    a, b = fp32.encode_text(TEXTS), int8.encode_text(TEXTS)
    attn = int8.model.transformer.resblocks[0].attn
    assert isinstance(attn, packed.PackedAttention) and isinstance(attn.in_proj, DynamicLinear)
    assert float((a * b).sum(axis=1).min()) > 0.999
