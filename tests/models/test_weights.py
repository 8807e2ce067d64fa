"""Every weights format loads to the same model; failures say what to do."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from helpers import make_image
from safetensors.torch import save_file

from clipsearch.core.memo import DigestCache
from clipsearch.models import encoder as encoder_module
from clipsearch.models.encoder import load_model
from clipsearch.models.model import CLIP, CONFIGS
from clipsearch.models.weights import PRETRAINED, Pretrained, WeightsError, resolve


@pytest.fixture(scope="module")
def reference():
    return load_model("random:tiny:3")


def same_model(encoder, reference):
    assert encoder.digest == reference.digest
    assert encoder.config == reference.config
    pixels = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    np.testing.assert_allclose(
        encoder.encode_pixels(pixels), reference.encode_pixels(pixels), atol=1e-6
    )
    np.testing.assert_allclose(
        encoder.encode_text(["a red square"]), reference.encode_text(["a red square"]), atol=1e-6
    )


def state(reference):
    return {k: v.clone() for k, v in reference.model.state_dict().items()}


def test_own_directory_round_trip(tmp_path, reference):
    reference.save(str(tmp_path / "m"))
    loaded = load_model(str(tmp_path / "m"))
    same_model(loaded, reference)
    assert loaded.name == str((tmp_path / "m").resolve())  # the spec that loads it again


def test_openai_safetensors(tmp_path, reference):
    save_file(state(reference), str(tmp_path / "w.safetensors"))
    same_model(load_model(str(tmp_path / "w.safetensors")), reference)


def test_open_clip_training_checkpoint_with_ddp_prefix(tmp_path, reference):
    sd = {f"module.{k}": v for k, v in state(reference).items()}
    torch.save({"epoch": 3, "state_dict": sd}, tmp_path / "epoch_3.pt")
    same_model(load_model(str(tmp_path / "epoch_3.pt")), reference)


def test_fp16_file_has_fp16_digest(tmp_path, reference):
    sd = {k: v.half() for k, v in state(reference).items()}
    torch.save(sd, tmp_path / "half.bin")
    loaded = load_model(str(tmp_path / "half.bin"))
    assert loaded.digest != reference.digest  # rounded weights are other weights


def test_openai_torchscript_archive(tmp_path, reference):
    model = CLIP(CONFIGS["tiny"]).eval()
    model.load_state_dict(reference.model.state_dict())
    pixels, tokens = torch.randn(1, 3, 32, 32), torch.zeros(1, 77, dtype=torch.long)
    tokens[0, :2] = torch.tensor([49406, 49407])
    traced = torch.jit.trace(model, (pixels, tokens), check_trace=False)
    traced.save(str(tmp_path / "ViT-tiny.pt"))
    same_model(load_model(str(tmp_path / "ViT-tiny.pt")), reference)


def test_hf_weights_file_without_config(tmp_path):
    transformers = pytest.importorskip("transformers")
    config = transformers.CLIPConfig(
        text_config=dict(
            hidden_size=128, intermediate_size=512, num_attention_heads=2, num_hidden_layers=1
        ),
        vision_config=dict(
            hidden_size=128,
            intermediate_size=512,
            num_attention_heads=2,
            num_hidden_layers=1,
            image_size=32,
            patch_size=16,
        ),
        projection_dim=32,
    )
    hf = transformers.CLIPModel(config)
    save_file(
        {k: v.contiguous() for k, v in hf.state_dict().items()}, str(tmp_path / "m.safetensors")
    )
    loaded = load_model(str(tmp_path / "m.safetensors"))
    assert (loaded.dim, loaded.config.vision.patch_size, loaded.config.text.layers) == (32, 16, 1)


def test_pickle_with_code_is_refused(tmp_path):
    torch.save({"weights": torch.zeros(2), "evil": object()}, tmp_path / "bad.pt")
    with pytest.raises(WeightsError, match="safely"):
        load_model(str(tmp_path / "bad.pt"))


def test_not_clip_weights(tmp_path):
    save_file({"fc.weight": torch.zeros(2, 2)}, str(tmp_path / "resnet.safetensors"))
    with pytest.raises(WeightsError, match="not a CLIP"):
        load_model(str(tmp_path / "resnet.safetensors"))


def test_unknown_spec_lists_named_models():
    with pytest.raises(WeightsError, match="ViT-B-32/openai"):
        load_model("no/such/model.pt")


def test_unknown_random_config():
    with pytest.raises(WeightsError, match="unknown config"):
        load_model("random:huge")


def test_named_model_offline_says_what_to_download(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(WeightsError) as err:
        load_model("ViT-B-32/openai")
    message = str(err.value)
    assert "timm/vit_base_patch32_clip_224.openai" in message
    assert "open_clip_model.safetensors" in message and "--model" in message


@pytest.mark.parametrize("filename", ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"])
def test_named_model_loads_from_hub_cache(tmp_path, monkeypatch, reference, filename):
    """A named model already in huggingface_hub's cache loads offline, without a download,
    from open_clip's older .bin where a repository has no safetensors."""
    cache = tmp_path / "hub"
    snapshot = cache / "models--test-org--tiny-clip" / "snapshots" / ("a" * 40)
    snapshot.mkdir(parents=True)
    (cache / "models--test-org--tiny-clip" / "refs").mkdir()
    (cache / "models--test-org--tiny-clip" / "refs" / "main").write_text("a" * 40)
    if filename.endswith(".bin"):
        torch.save(state(reference), snapshot / filename)
    else:
        save_file(state(reference), str(snapshot / filename))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(cache))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    named = Pretrained("tiny/test", "test-org/tiny-clip", True, "test", 0, 64)
    monkeypatch.setitem(PRETRAINED, "tiny/test", named)
    loaded = load_model("tiny/test")
    assert loaded.name == "tiny/test"
    assert loaded.digest == reference.digest


@pytest.mark.parametrize("layout", ["own directory", "openai .pt", "safetensors file"])
def test_text_only_load_equals_full_and_remembers_the_digest(tmp_path, reference, layout):
    source = {
        "own directory": tmp_path / "m" / "model.safetensors",
        "openai .pt": tmp_path / "m.pt",
        "safetensors file": tmp_path / "m.safetensors",
    }[layout]
    if layout == "own directory":
        reference.save(str(tmp_path / "m"))
    elif layout == "openai .pt":
        torch.save(state(reference), source)
    else:
        save_file(state(reference), str(source))
    spec = str(tmp_path / "m") if layout == "own directory" else str(source)
    digests = DigestCache(tmp_path / "digests.json")
    texts = ["a red square", "🐶 on a beach"]
    for _ in range(2):  # first the digest is computed from every tensor, then remembered
        text = load_model(spec, text_only=True, digests=digests)
        assert text.text_only and text.model.visual is None
        assert text.digest == reference.digest
        np.testing.assert_allclose(text.encode_text(texts), reference.encode_text(texts), atol=1e-6)
    assert digests.get(source) == reference.digest
    with pytest.raises(ValueError, match="text only"):
        text.encode_pixels(np.zeros((1, 3, 32, 32), np.float32))
    with pytest.raises(ValueError, match="whole"):
        text.save(str(tmp_path / "again"))


def test_text_only_read_leaves_image_tensors_unread(tmp_path, reference):
    save_file(state(reference), str(tmp_path / "m.safetensors"))
    weights = resolve(str(tmp_path / "m.safetensors"), text_only=True)
    assert weights.state_dict["visual.conv1.weight"].is_meta
    assert not weights.state_dict["token_embedding.weight"].is_meta
    assert weights.config == reference.config  # shapes are still read
    with pytest.raises(ValueError, match="text only"):
        weights.build()


def test_changed_weights_file_is_hashed_again(tmp_path):
    digests = DigestCache(tmp_path / "digests.json")
    first, second = load_model("random:tiny:1"), load_model("random:tiny:2")
    first.save(str(tmp_path / "m"))
    assert load_model(str(tmp_path / "m"), digests=digests).digest == first.digest
    second.save(str(tmp_path / "m"))  # same path, new weights
    assert load_model(str(tmp_path / "m"), text_only=True, digests=digests).digest == second.digest


def test_a_model_is_hashed_once_per_user_for_every_store_and_command(tmp_path, monkeypatch):
    """The user's cache (CLIPSEARCH_CACHE, the test's own here) answers for a store
    that has not seen the model, and for commands without a store (embed, eval)."""
    load_model("random:tiny:4").save(str(tmp_path / "m"))
    hashed = []
    real = encoder_module.weights_digest
    monkeypatch.setattr(encoder_module, "weights_digest", lambda m: hashed.append(1) or real(m))
    first = load_model(str(tmp_path / "m"))  # no store: the user's cache learns it
    again = load_model(str(tmp_path / "m"), text_only=True)
    store = DigestCache(tmp_path / "store" / "digests.json", shared=DigestCache.of_user())
    in_a_store = load_model(str(tmp_path / "m"), text_only=True, digests=store)
    assert len(hashed) == 1 and again.model.visual is None
    assert first.digest == again.digest == in_a_store.digest
    assert (tmp_path / "store").exists() is False  # a store's folder is its first write's
    assert DigestCache.of_user().get(first.source) == first.digest


def test_digest_cache_survives_garbage_and_read_only_folders(tmp_path):
    weights = tmp_path / "w.bin"
    weights.write_bytes(b"weights")
    (tmp_path / "digests.json").write_text("[not json")
    digests = DigestCache(tmp_path / "digests.json")
    assert digests.get(weights) is None
    digests.put(weights, "abc")
    assert digests.get(weights) == "abc"
    locked = DigestCache(tmp_path / "missing-folder" / "digests.json")
    locked.put(weights, "abc")  # cannot write: computed again next time, no error
    assert locked.get(weights) is None


def test_loading_weights_does_not_import_the_compiler(tmp_path, reference):
    """Building on the meta device must not draw random numbers there: that imports
    torch._dynamo and sympy, two seconds of every cold query."""
    reference.save(str(tmp_path / "m"))
    code = (
        "import sys; from clipsearch.models.encoder import load_model; "
        f"load_model({str(tmp_path / 'm')!r}).encode_text(['a dog']); "
        "print('torch._dynamo' in sys.modules, 'sympy' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


@pytest.mark.parametrize("config", ["{not json", '{"config": {"embed_dim": 64}}', "[]"])
def test_a_damaged_model_directory_config_is_a_weights_error(tmp_path, config):
    """A clipsearch.json that is not JSON, lacks fields or is no object: one line naming the
    file (a user's file, not a bug in clipsearch)."""
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "clipsearch.json").write_text(config)
    with pytest.raises(WeightsError, match="clipsearch.json: not a config clipsearch can read"):
        resolve(str(tmp_path / "m"))


def test_a_code_carrying_pickle_is_never_advised_to_be_loaded_unsafely(tmp_path):
    torch.save({"weights": torch.zeros(2), "evil": object()}, tmp_path / "bad.pt")
    with pytest.raises(WeightsError) as caught:
        load_model(str(tmp_path / "bad.pt"))
    assert "weights_only" not in str(caught.value) and "run code" in str(caught.value)


@pytest.mark.parametrize("name", ["photo.pt", "photo.safetensors", "photo.bin"])
def test_an_image_given_as_weights_is_called_what_it_is(tmp_path, name):
    make_image(tmp_path / "photo.png")
    (tmp_path / name).write_bytes((tmp_path / "photo.png").read_bytes())
    with pytest.raises(WeightsError, match="not a weights file") as caught:
        load_model(str(tmp_path / name))
    assert "run code" not in str(caught.value)


def test_a_fifo_as_the_weights_file_is_refused_at_once(tmp_path, tiny):
    folder = tmp_path / "model"
    tiny.save(str(folder))
    weights = next(folder.glob("*.safetensors"))
    weights.unlink()
    os.mkfifo(weights)
    with pytest.raises(WeightsError, match="not a regular file"):
        load_model(str(folder))
