"""The text tower exported for ONNX Runtime reads what the model reads, from every layout
the weights come in; an export that disagrees is not kept, and none is made where it
could not be the same."""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from clipsearch.core.errors import TruncationWarning
from clipsearch.models import onnx_text
from clipsearch.models.encoder import Encoder, load_model
from clipsearch.models.model import CLIP, CONFIGS
from clipsearch.models.weights import PRETRAINED, Pretrained

pytest.importorskip("onnxruntime", reason="the fast extra (onnxruntime) is not installed")
pytest.importorskip("onnx", reason="onnx (in the dev extra) is not installed")

TEXTS = [
    "",
    "a",
    "a dog on a beach",
    "🐶 café naïve 東京 &amp; <b>bold</b>",
    "A Photo Of   Two Cats, sleeping!",
    "the quick brown fox jumps over the lazy dog " * 3,
    "word " * 100,  # truncated to the context
]


@pytest.fixture(scope="module")
def reference():
    return load_model("random:tiny:5")


def weights(reference) -> dict[str, torch.Tensor]:
    return {k: v.clone().contiguous() for k, v in reference.model.state_dict().items()}


def saved_model(tmp_path, reference, monkeypatch) -> str:
    reference.save(str(tmp_path / "m"))
    return str(tmp_path / "m")


def named_model(tmp_path, reference, monkeypatch) -> str:
    """A named model, as open_clip's file in huggingface_hub's cache (offline)."""
    cache = tmp_path / "hub"
    snapshot = cache / "models--test-org--tiny-clip" / "snapshots" / ("b" * 40)
    snapshot.mkdir(parents=True)
    (cache / "models--test-org--tiny-clip" / "refs").mkdir()
    (cache / "models--test-org--tiny-clip" / "refs" / "main").write_text("b" * 40)
    save_file(weights(reference), str(snapshot / "open_clip_model.safetensors"))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(cache))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    named = Pretrained("tiny/test", "test-org/tiny-clip", True, "test", 0, 64)
    monkeypatch.setitem(PRETRAINED, "tiny/test", named)
    return "tiny/test"


def open_clip_checkpoint(tmp_path, reference, monkeypatch) -> str:
    """What open_clip's trainer writes: a DDP-prefixed state dict in a checkpoint."""
    state = {f"module.{k}": v for k, v in weights(reference).items()}
    torch.save({"epoch": 2, "state_dict": state}, tmp_path / "epoch_2.pt")
    return str(tmp_path / "epoch_2.pt")


def vectors(reader, texts: list[str]) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TruncationWarning)
        return reader.encode_text(texts)


@pytest.mark.parametrize("layout", [saved_model, named_model, open_clip_checkpoint])
def test_the_exported_tower_reads_what_the_model_reads(tmp_path, reference, monkeypatch, layout):
    encoder = load_model(layout(tmp_path, reference, monkeypatch), text_only=True)
    assert encoder.digest == reference.digest and onnx_text.exportable(encoder)
    folder = tmp_path / "store" / onnx_text.FOLDER / encoder.digest
    assert onnx_text.export(encoder, folder)
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [onnx_text.GRAPH, onnx_text.WEIGHTS, onnx_text.ABOUT]
    )
    assert not list(folder.parent.glob(".export-*"))
    tower = onnx_text.OnnxTextTower(folder, encoder.name, encoder.digest)
    assert (tower.name, tower.dim) == (encoder.name, encoder.dim)
    assert tower.digest == tower.text_key == encoder.digest
    want = vectors(encoder, TEXTS)  # together: the batch cut to its longest text
    np.testing.assert_allclose(vectors(tower, TEXTS), want, atol=1e-5)
    for text, row in zip(TEXTS, want):  # alone: each cut to its own length
        np.testing.assert_allclose(vectors(tower, [text])[0], row, atol=1e-5)
    assert vectors(tower, []).shape == (0, encoder.dim)


def test_a_tower_with_gelu_exports_too(tmp_path):
    """LAION's and DataComp's towers use the exact GELU where OpenAI's use QuickGELU."""
    torch.manual_seed(0)
    config = dataclasses.replace(CONFIGS["tiny"], quick_gelu=False)
    Encoder(CLIP(config), "gelu").save(str(tmp_path / "gelu"))
    encoder = load_model(str(tmp_path / "gelu"), text_only=True)
    assert not encoder.config.quick_gelu
    folder = tmp_path / "store" / onnx_text.FOLDER / encoder.digest
    assert onnx_text.export(encoder, folder)
    tower = onnx_text.OnnxTextTower(folder, encoder.name, encoder.digest)
    np.testing.assert_allclose(vectors(tower, TEXTS), vectors(encoder, TEXTS), atol=1e-5)


def test_the_graph_is_valid_onnx(tmp_path, reference, monkeypatch):
    """Written by hand (onnx_graph.py), checked by onnx's own checker, weights included."""
    import onnx

    encoder = load_model(saved_model(tmp_path, reference, monkeypatch), text_only=True)
    folder = tmp_path / "store" / onnx_text.FOLDER / encoder.digest
    assert onnx_text.export(encoder, folder)
    onnx.checker.check_model(str(folder / onnx_text.GRAPH), full_check=True)


def test_an_export_that_disagrees_with_the_model_is_not_kept(tmp_path, reference, monkeypatch):
    encoder = load_model(saved_model(tmp_path, reference, monkeypatch), text_only=True)
    monkeypatch.setattr(onnx_text, "TOLERANCE", -1.0)  # no export can pass
    folder = tmp_path / "store" / onnx_text.FOLDER / encoder.digest
    assert not onnx_text.export(encoder, folder)
    assert not folder.exists() and list(folder.parent.iterdir()) == []


@pytest.mark.parametrize(
    ("tensor", "rows"),
    [
        ("positional_embedding", slice(40, None)),  # read only by the truncated text
        ("token_embedding.weight", slice(onnx_text.END_OF_TEXT - 2, -2)),  # the last merge
        ("token_embedding.weight", slice(255, 257)),  # the last byte, the first word-ending one
    ],
)
def test_the_check_catches_a_tower_wrong_at_the_ends(
    tmp_path, reference, monkeypatch, tensor, rows
):
    """Wrong where only long texts or rare tokens reach: the check still sees it."""
    from clipsearch.models import onnx_graph

    encoder = load_model(saved_model(tmp_path, reference, monkeypatch), text_only=True)
    written = onnx_graph.text_tower

    def damaged(state, *args):
        state = dict(state)
        state[tensor] = state[tensor].copy()
        state[tensor][rows] *= -1  # not a constant shift, which every LayerNorm undoes
        return written(state, *args)

    monkeypatch.setattr(onnx_graph, "text_tower", damaged)
    folder = tmp_path / "store" / onnx_text.FOLDER / encoder.digest
    assert not onnx_text.export(encoder, folder)
    assert not folder.exists()


def test_no_export_where_it_could_not_read_the_same(tmp_path, reference, monkeypatch):
    """Random weights (rebuilt from their spec), reduced precision, a tower already
    packed for oneDNN: none is exportable."""
    assert not onnx_text.exportable(load_model("random:tiny:5", text_only=True))
    spec = saved_model(tmp_path, reference, monkeypatch)
    assert not onnx_text.exportable(load_model(spec, text_only=True, precision="int8"))
    packed = load_model(spec, text_only=True)
    for _ in range(3):  # as built, then packed, then traced (encoder.TextPath)
        packed.encode_text(["a dog"])
    assert not onnx_text.exportable(packed)


@pytest.mark.parametrize("digest", ["../../etc", "ec5492caf1c0d409/..", "EC5492CAF1C0D409", ""])
def test_only_a_digest_names_a_tower_folder(tmp_path, digest):
    assert onnx_text.folder_for(tmp_path, digest) is None
    assert onnx_text.folder_for(tmp_path, "ec5492caf1c0d409-0a1b2c3d") is not None
