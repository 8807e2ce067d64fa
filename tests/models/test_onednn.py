"""fp32 linears on oneDNN compute what torch's F.linear does, only where they may: inference
on a CPU, not while tracing, not on Intel's CPUs."""

from __future__ import annotations

import platform
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from clipsearch.models import onednn
from clipsearch.models.encoder import load_model

pytestmark = pytest.mark.skipif(not onednn.available(), reason="torch built without oneDNN")


@pytest.fixture
def chosen(monkeypatch):
    """oneDNN for fp32 whatever this CPU's vendor, so both CPU kinds test its path."""
    monkeypatch.setattr(onednn, "for_fp32", lambda: True)


def test_linear_equals_torchs_for_every_shape_the_towers_give_it(chosen):
    g = torch.Generator().manual_seed(0)
    w, b = torch.randn(96, 64, generator=g), torch.randn(96, generator=g)
    tokens = torch.randn(4, 50, 64, generator=g)
    with torch.inference_mode():
        for x in (tokens, tokens[:, :1], tokens.reshape(200, 64)):  # the class token: a view
            for bias in (b, None):
                want = F.linear(x, w, bias)
                got = onednn.linear(x, w, bias)
                assert got.shape == want.shape
                torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_the_fp32_towers_give_the_vectors_they_give_on_torchs_own_linears(monkeypatch):
    encoder = load_model("random:small", precision="fp32")
    pixels = np.random.default_rng(1).standard_normal((3, 3, 64, 64)).astype(np.float32)
    tokens = torch.from_numpy(encoder.tokenizer(["a dog on a beach", "x"]))
    vectors = {}
    for on in (False, True):
        monkeypatch.setattr(onednn, "for_fp32", lambda on=on: on)
        with torch.inference_mode():  # the model's own text tower, not cpu_text's packing
            text = F.normalize(encoder.model.encode_text(tokens), dim=-1).numpy()
        vectors[on] = (encoder.encode_pixels(pixels), text)
    for mkl, dnn in zip(vectors[False], vectors[True], strict=True):
        np.testing.assert_allclose(dnn, mkl, atol=1e-6)


def test_training_and_tracing_keep_torchs_own_linear(chosen):
    layer = nn.Linear(8, 4)
    x = torch.randn(2, 8)
    y = onednn.run(layer, x)
    assert y.grad_fn is not None  # autograd saw it: the gradient is torch's
    y.sum().backward()
    assert layer.weight.grad is not None
    with torch.no_grad():
        traced = torch.jit.trace(Through(layer), x)
    ops = {node.kind() for node in traced.graph.nodes()}
    assert "aten::linear" in ops and not any("mkldnn" in op for op in ops)


class Through(nn.Module):
    def __init__(self, layer: nn.Module):
        super().__init__()
        self.layer = layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return onednn.run(self.layer, x)


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")
def test_a_layer_other_than_a_plain_linear_runs_as_it_is(chosen):
    quantised = torch.ao.quantization.quantize_dynamic(nn.Sequential(nn.Linear(8, 4)), {nn.Linear})
    x = torch.randn(2, 8)
    with torch.inference_mode():
        assert torch.equal(onednn.run(quantised[0], x), quantised[0](x))


def test_intel_cpus_keep_mkl_and_others_on_x86_take_onednn(monkeypatch):
    monkeypatch.setattr(onednn.platform, "machine", lambda: "x86_64")
    for vendor, chosen in (("GenuineIntel", False), ("AuthenticAMD", True), ("", False)):
        monkeypatch.setattr(onednn, "vendor", lambda vendor=vendor: vendor)
        assert onednn.for_fp32.__wrapped__() is chosen
    monkeypatch.setattr(onednn.platform, "machine", lambda: "aarch64")
    assert onednn.for_fp32.__wrapped__() is False


def test_the_vendor_is_cpuids_name_as_the_system_reports_it(monkeypatch, tmp_path):
    if platform.machine() == "x86_64" and Path("/proc/cpuinfo").exists():
        assert len(onednn.vendor()) == 12  # GenuineIntel, AuthenticAMD, HygonGenuine...
    monkeypatch.setattr(onednn, "Path", lambda _: tmp_path / "no-cpuinfo")  # not Linux
    windows = "AMD64 Family 25 Model 1 Stepping 1, AuthenticAMD"
    monkeypatch.setattr(onednn.platform, "processor", lambda: windows)
    assert onednn.vendor() == "AuthenticAMD"
    monkeypatch.setattr(onednn.platform, "processor", lambda: "i386")  # macOS says no more
    assert onednn.vendor() == ""
