"""The CPU text tower, packed, quantised and traced, computes what the plain one does and
changes nothing else."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from clipsearch.models import cpu_text, onednn
from clipsearch.models.encoder import Encoder, TextPath, dynamic_dtype, load_model, weights_digest
from clipsearch.models.model import CLIP, CONFIGS, Attention
from clipsearch.models.tokenizer import default_tokenizer

pytestmark = pytest.mark.skipif(not onednn.available(), reason="torch built without oneDNN")

TEXTS = ["a dog", "a photo of a beach at sunset with two people walking", "🐶 " * 40, ""]


def test_packed_text_tower_equals_plain():
    torch.manual_seed(0)
    model = CLIP(CONFIGS["mini"]).eval()
    for p in model.parameters():  # biases start at zero; make every tensor count
        p.data += 0.02 * torch.randn_like(p)
    tokens = torch.from_numpy(default_tokenizer()(TEXTS))
    with torch.no_grad():
        plain = model.encode_text(tokens)
        cpu_text.pack_text_tower(model)
        fast = model.encode_text(tokens)
    assert isinstance(model.transformer.resblocks[0].attn, cpu_text.PackedAttention)
    assert torch.allclose(plain, fast, atol=1e-5, rtol=1e-5)


def test_packing_keeps_state_dict_digest_and_saving(tmp_path):
    encoder = load_model("random:tiny")
    before = {k: v.clone() for k, v in encoder.model.state_dict().items()}
    encoder.encode_text(["runs as built"])
    encoder.encode_text(["packs the text tower"])
    assert isinstance(encoder.model.transformer.resblocks[0].mlp.c_fc, cpu_text.PackedLinear)
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
    encoder = Encoder(model, "in training")
    for _ in range(3):
        encoder.encode_text(["validation caption"])
    assert type(model.transformer.resblocks[0].attn) is Attention
    assert encoder.text_path is TextPath.PLAIN


@pytest.mark.parametrize("precision", ["int8", "fp16"])
def test_quantised_text_tower_converts_the_in_projection_too(precision):
    """quantize_dynamic sees only nn.Linear; the in-projection is two bare parameters."""
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    fp32, other = load_model("random:mini"), load_model("random:mini", precision=precision)
    a, b = fp32.encode_text(TEXTS), other.encode_text(TEXTS)
    attn = other.model.transformer.resblocks[0].attn
    assert isinstance(attn, cpu_text.PackedAttention) and isinstance(attn.in_proj, DynamicLinear)
    assert attn.in_proj._packed_params.dtype == dynamic_dtype(precision, other.device)
    closeness = 1e-3 if precision == "int8" else 1e-6  # 1 - cosine
    assert float(1 - (a * b).sum(axis=1).min()) < closeness


@pytest.mark.parametrize("precision", ["fp32", "int8", "fp16"])
def test_traced_text_tower_equals_eager_for_every_length_and_batch(precision):
    """Traced once on a short text, the tower must hold for 1 to 77 tokens and any batch."""
    encoder = load_model("random:mini", precision=precision)
    encoder.encode_text(["a first query"])  # a one-query process pays for neither
    assert encoder.text_path is (TextPath.TO_PACK if precision == "fp32" else TextPath.TO_TRACE)
    while encoder.text_path is not TextPath.TRACED:
        encoder.encode_text(["packs, then traces on this"])
    texts = ["", "a dog", *("word " * n for n in range(3, 76, 8)), "🐶 " * 40]

    def eager(batch: list[str]) -> np.ndarray:
        tokens = default_tokenizer()(batch)
        tokens = torch.from_numpy(tokens[:, : tokens.argmax(axis=1).max() + 1])
        with torch.inference_mode():
            return F.normalize(encoder.model.encode_text(tokens), dim=-1).numpy()

    # int8 scales activations per call, so a batch and its texts one by one differ a little
    assert np.allclose(encoder.encode_text(texts), eager(texts), atol=1e-6)
    for text in texts:
        assert np.allclose(encoder.encode_text([text]), eager([text]), atol=1e-6)


def test_a_trace_that_disagrees_or_fails_leaves_the_tower_eager(monkeypatch):
    encoder = load_model("random:mini")
    tokens = torch.from_numpy(default_tokenizer()(["a dog"]))
    with torch.inference_mode():
        right = encoder.model.encode_text(tokens)
        assert cpu_text.trace_text_tower(encoder.model, tokens, right) is not None
        assert cpu_text.trace_text_tower(encoder.model, tokens, right + 1e-2) is None

    def unsupported(*args, **kwargs):
        raise RuntimeError("an op the tracer cannot record")

    monkeypatch.setattr(torch.jit, "trace_module", unsupported)
    fresh = load_model("random:mini")
    first, second, third, fourth = (fresh.encode_text(TEXTS) for _ in range(4))
    assert fresh.text_path is TextPath.PACKED
    assert all(np.allclose(v, fourth, atol=1e-6) for v in (first, second, third))
