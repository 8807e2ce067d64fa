"""What the benchmarks say about the machine they ran on: figures differ by CPU kind."""

from __future__ import annotations

from pathlib import Path


def cpu_name() -> str:
    """The CPU model, and whether it computes bf16 natively (AVX512-BF16 or AMX)."""
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    name = next(
        (line.split(":", 1)[1].strip() for line in text.splitlines() if "model name" in line),
        "unknown CPU",
    )
    flags = next((line for line in text.splitlines() if line.startswith("flags")), "")
    kind = "AVX512-BF16" if "avx512_bf16" in flags or "amx_bf16" in flags else "no native bf16"
    return f"{name} ({kind})"
