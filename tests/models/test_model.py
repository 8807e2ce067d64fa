"""The network computes what transformers' CLIPModel computes, loaded from its weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers")

from clipsearch.models.encoder import Encoder, load_model  # noqa: E402
from clipsearch.models.hf_layout import hf_to_openai  # noqa: E402
from clipsearch.models.model import CLIP, CONFIGS, QuickGELU  # noqa: E402

TOL = 1e-5


def hf_clip(width, layers, t_width, t_layers, image, patch, embed, act="quick_gelu", seed=0):
    torch.manual_seed(seed)
    config = transformers.CLIPConfig(
        text_config=dict(
            hidden_size=t_width,
            intermediate_size=4 * t_width,
            num_attention_heads=t_width // 64,
            num_hidden_layers=t_layers,
            hidden_act=act,
        ),
        vision_config=dict(
            hidden_size=width,
            intermediate_size=4 * width,
            num_attention_heads=width // 64,
            num_hidden_layers=layers,
            image_size=image,
            patch_size=patch,
            hidden_act=act,
        ),
        projection_dim=embed,
    )
    model = transformers.CLIPModel(config).eval()
    # Random init leaves LayerNorms at identity and biases at zero; perturb every tensor
    # so that a swapped or transposed weight cannot go unnoticed.
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    return model


SIZES = {
    "tiny": dict(width=128, layers=2, t_width=128, t_layers=2, image=32, patch=8, embed=64),
    "ViT-B-32": dict(
        width=768, layers=12, t_width=512, t_layers=12, image=224, patch=32, embed=512
    ),
}


def inputs(image_size, n=3, seed=1):
    g = torch.Generator().manual_seed(seed)
    pixels = torch.randn(n, 3, image_size, image_size, generator=g)
    tokens = torch.zeros(n, 77, dtype=torch.long)
    for i, length in enumerate([5, 17, 77][:n]):
        tokens[i, 0] = 49406
        tokens[i, 1 : length - 1] = torch.randint(1, 49405, (length - 2,), generator=g)
        tokens[i, length - 1] = 49407
    return pixels, tokens


def reference(hf, pixels, tokens):
    with torch.no_grad():
        out = hf(input_ids=tokens, pixel_values=pixels)
    return out.image_embeds, out.text_embeds, out.logits_per_image


def ours(encoder: Encoder, pixels, tokens):
    image = torch.from_numpy(encoder.encode_pixels(pixels.numpy()))
    text = torch.from_numpy(encoder.encode_tokens(tokens.numpy()))
    scale = encoder.model.logit_scale.exp()
    return image, text, scale * image @ text.t()


def assert_same(a, b):
    for x, y in zip(a, b):
        assert (x - y).abs().max().item() <= TOL * max(1.0, y.abs().max().item())


@pytest.mark.parametrize("size", ["tiny", "ViT-B-32"])
def test_hf_directory_matches_transformers(tmp_path, size):
    hf = hf_clip(**SIZES[size])
    hf.save_pretrained(tmp_path / "hf")
    pixels, tokens = inputs(SIZES[size]["image"])
    encoder = load_model(str(tmp_path / "hf"))
    assert_same(ours(encoder, pixels, tokens), reference(hf, pixels, tokens))


def test_text_only_hf_directory_matches_transformers(tmp_path):
    hf = hf_clip(**SIZES["tiny"])
    hf.save_pretrained(tmp_path / "hf")
    pixels, tokens = inputs(SIZES["tiny"]["image"])
    encoder = load_model(str(tmp_path / "hf"), text_only=True)
    assert encoder.model.visual is None
    text = torch.from_numpy(encoder.encode_tokens(tokens.numpy()))
    assert_same([text], [reference(hf, pixels, tokens)[1]])


@pytest.mark.parametrize("size", ["tiny", "ViT-B-32"])
def test_openai_layout_file_matches_transformers(tmp_path, size):
    hf = hf_clip(**SIZES[size])
    path = tmp_path / "openai.pt"
    torch.save(hf_to_openai(hf.state_dict()), path)
    encoder = load_model(str(path))
    pixels, tokens = inputs(SIZES[size]["image"])
    assert encoder.config.vision.layers == SIZES[size]["layers"]
    assert_same(ours(encoder, pixels, tokens), reference(hf, pixels, tokens))


def test_gelu_activation_read_from_hf_config(tmp_path):
    hf = hf_clip(**SIZES["tiny"], act="gelu")
    hf.save_pretrained(tmp_path / "hf")
    encoder = load_model(str(tmp_path / "hf"))
    assert encoder.config.quick_gelu is False
    pixels, tokens = inputs(32)
    assert_same(ours(encoder, pixels, tokens), reference(hf, pixels, tokens))


def test_text_cut_to_longest_member_changes_nothing():
    model = CLIP(CONFIGS["tiny"]).eval()
    _, tokens = inputs(32, n=2)  # longest has 17 tokens
    with torch.no_grad():
        full = model.encode_text(tokens)
        cut = model.encode_text(tokens[:, :17])
    assert torch.allclose(full, cut, atol=1e-6)


@pytest.mark.parametrize("precision", ["bf16", "int8", "fp16"])
def test_reduced_precision_stays_close_to_fp32(precision):
    fp32 = load_model("random:tiny")
    low = load_model("random:tiny", precision=precision)
    pixels, tokens = inputs(32)
    a, b = fp32.encode_pixels(pixels.numpy()), low.encode_pixels(pixels.numpy())
    assert low.digest == fp32.digest
    assert np.min(np.sum(a * b, axis=1)) > 0.99


def test_fp16_on_a_cpu_keeps_fp16_weights_and_computes_in_fp32():
    """FBGEMM's fp16 linear: half the bytes of fp32 and nearly its numbers, where torch's
    own half-precision arithmetic on a CPU would round every product."""
    from clipsearch.models.encoder import cpu_fp16_weights

    if not cpu_fp16_weights():
        pytest.skip("this torch has no FBGEMM (x86) quantised engine")
    fp32, fp16 = load_model("random:tiny"), load_model("random:tiny", precision="fp16")
    assert fp16.model.token_embedding.weight.dtype == torch.float32
    assert fp16.model.visual.transformer.resblocks[0].mlp.c_fc._packed_params.dtype == torch.float16
    pixels, _ = inputs(32)
    a, b = fp32.encode_pixels(pixels.numpy()), fp16.encode_pixels(pixels.numpy())
    assert float(1 - np.min(np.sum(a * b, axis=1))) < 1e-5


def test_gradient_checkpointing_gives_same_gradients():
    torch.manual_seed(0)
    model = CLIP(CONFIGS["tiny"]).train()
    pixels, tokens = inputs(32, n=2)

    def grads():
        model.zero_grad()
        image, text = model(pixels, tokens)
        (model.logit_scale.exp() * image @ text.t()).sum().backward()
        return [p.grad.clone() for p in model.parameters()]

    plain = grads()
    model.set_grad_checkpointing(True)
    checkpointed = grads()
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(plain, checkpointed))


def test_the_image_tower_computes_its_last_block_at_the_class_token_alone_to_the_same_end():
    """The pooled output, and every gradient, as when the last block computes all tokens."""
    torch.manual_seed(0)
    visual = CLIP(CONFIGS["tiny"]).train().visual
    pixels, _ = inputs(32, n=4)

    def run(full: bool):
        visual.zero_grad()
        if full:
            x = visual.transformer(visual.ln_pre(visual.tokens(pixels)))
            out = visual.ln_post(x[:, 0]) @ visual.proj
        else:
            out = visual(pixels)
        (out * torch.arange(out.shape[1])).sum().backward()
        return [out.detach(), *(p.grad.clone() for p in visual.parameters())]

    full, first = run(full=True), run(full=False)
    for a, b in zip(full, first):
        assert (a - b).abs().max() <= 1e-6 * max(1.0, b.abs().max().item())
    assert full[0].abs().max() > 0.1  # a real output, not zeros on both sides


@pytest.mark.parametrize("size", [32, 35])  # 35: a remainder the convolution leaves out
def test_the_patch_embedding_is_the_convolution_it_replaces(size):
    torch.manual_seed(0)
    visual = CLIP(CONFIGS["tiny"]).eval().visual
    pixels = torch.randn(2, 3, size, size)
    with torch.no_grad():
        convolved = visual.conv1(pixels).flatten(2).transpose(1, 2)
        tokens = visual.tokens(pixels)
    assert torch.allclose(tokens[:, 1:] - visual.positional_embedding[1:], convolved, atol=1e-5)
    assert torch.allclose(tokens[:, 0], visual.class_embedding + visual.positional_embedding[0])


def test_quick_gelu_without_gradients_gives_the_very_same_numbers():
    x = torch.randn(64, 96)
    with torch.no_grad():
        fast = QuickGELU()(x)
    assert torch.equal(fast, QuickGELU()(x)) and not torch.equal(fast, x)


def test_a_hf_directory_brings_its_own_preprocessing(tmp_path):
    """A Hugging Face directory whose processor resizes larger than it crops and normalises
    with other statistics: clipsearch feeds the model exactly what transformers would."""
    from PIL import Image

    from clipsearch.images.pixels import Preprocessing

    hf = hf_clip(**SIZES["tiny"])
    hf.save_pretrained(tmp_path / "hf")
    plain = load_model(str(tmp_path / "hf"))
    processor = transformers.CLIPImageProcessor(
        size={"shortest_edge": 40},
        crop_size={"height": 32, "width": 32},
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
        resample=2,
    )
    processor.save_pretrained(tmp_path / "hf")
    encoder = load_model(str(tmp_path / "hf"))
    assert encoder.preprocessing == Preprocessing(
        32, "shortest", "bilinear", (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), scale_to=40
    )
    assert encoder.digest != plain.digest and encoder.digest.startswith(plain.digest)
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 256, (60, 80, 3), dtype=np.uint8))
    expected = processor(img, return_tensors="np")["pixel_values"]
    np.testing.assert_allclose(
        encoder.encode_images([img]), encoder.encode_pixels(expected), atol=1e-5
    )
