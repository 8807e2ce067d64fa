"""oneDNN, the second matrix library inside torch's CPU build, where it beats the first.

torch's fp32 `F.linear` on a CPU calls MKL's sgemm, and MKL keeps its fastest kernels for
Intel's processors: on an AMD EPYC with AVX-512, ViT-B/32's MLP product runs at 179 GFLOPS
in MKL and at 411 in oneDNN, which picks its kernels from the instructions the CPU has;
the whole fp32 image tower takes 23 ms an image instead of 44 there, about ONNX Runtime's
cost (bench/model_throughput.py --onnx prints all three). On Intel's CPUs MKL stays: it
is what torch measured and tuned there, and where clipsearch's fp32 tower was measured to
cost no more than ONNX Runtime's. The same sums in another order: unit vectors agree to
1e-6.

Inference only: oneDNN's op has no gradient, so anything that trains keeps torch's own.
"""

from __future__ import annotations

import functools
import platform
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn


def available() -> bool:
    """oneDNN is in the torch build and exposes the two ops inductor uses for linears."""
    ops = torch.ops.mkldnn
    return (
        torch.backends.mkldnn.is_available()
        and hasattr(ops, "_reorder_linear_weight")
        and hasattr(ops, "_linear_pointwise")
    )


def vendor() -> str:
    """The CPU's vendor as it names itself (GenuineIntel, AuthenticAMD, ...), or ""."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:  # Windows ends with it: "AMD64 Family 25 Model 1 ..., AuthenticAMD"
        last = platform.processor().rpartition(",")[2].strip()
        return last if len(last) == 12 else ""  # CPUID's vendor strings are 12 letters
    return next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("vendor_id")), "")


@functools.cache
def for_fp32() -> bool:
    """Whether fp32 linears go to oneDNN here: an x86 CPU whose vendor is known and is not
    Intel (elsewhere MKL is not torch's fp32 library, or is at its best)."""
    x86 = platform.machine().lower() in ("x86_64", "amd64")
    return x86 and vendor() not in ("", "GenuineIntel") and available()


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """F.linear, on oneDNN for fp32 inference on a CPU where for_fp32() says so (not while
    tracing: the op is not one TorchScript or ONNX export should record)."""
    if (
        x.dtype == torch.float32
        and x.device.type == "cpu"
        and not torch.is_grad_enabled()
        and not torch.jit.is_tracing()
        and for_fp32()
    ):
        return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")
    return F.linear(x, weight, bias)


def run(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """layer(x), a plain nn.Linear through `linear`. The layer stays an nn.Linear, which
    quantize_dynamic converts and cpu_text packs (those run as they are)."""
    if type(layer) is nn.Linear:
        return linear(x, layer.weight, layer.bias)
    return layer(x)
