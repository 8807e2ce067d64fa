"""The numeric precisions a model runs in. No torch: `status` names them too."""

from __future__ import annotations

PRECISIONS = ("auto", "fp32", "bf16", "fp16", "int8")

# Faster than fp32 for a CPU text query where the CPU and torch have the kernels, fastest
# first as measured on x86 CPUs (BENCHMARKS.md): dynamic int8, fp16 weights with fp32
# arithmetic, bf16 where the CPU computes it natively.
CANDIDATES = ("int8", "fp16", "bf16")
