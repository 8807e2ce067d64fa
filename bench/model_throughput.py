"""Image-tower throughput per precision and batch size, against this machine's matmul peak.

    python bench/model_throughput.py [--arch ViT-B-32] [--seconds 6]
    python bench/model_throughput.py --models random:ViT-B-32,open_clip:MobileCLIP-S1/random
    python bench/model_throughput.py --unfused --models random:ViT-B-32,apple/MobileCLIP-S0
    python bench/model_throughput.py --onnx [--arch ViT-B-32] [--rounds 5]

The second form compares models (open_clip's need the extra): images/s of each image
tower at batch 32 in fp32 and in the precision `auto` picks here, as a ratio to the first;
with --unfused, each MobileCLIP also as trained (its branches not fused, as load_model does).
The third compares the fp32 image tower in torch, as indexing runs it, with the same tower
exported to ONNX Runtime (torch.onnx.export; needs `onnx` and `onnxruntime`): per-image
milliseconds at batch 1, 8 and 32, interleaved rounds, and the largest difference between
their unit vectors; torch twice, its fp32 linears on MKL and on oneDNN (models/onednn.py
chooses by the CPU's vendor; the ratios are each to ONNX Runtime's).
ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 approximate an AVX2-only CPU on the torch
side (ONNX Runtime picks its kernels from the CPU itself).

Prints images/s, achieved GFLOP/s, the fraction of the peak of a large matmul measured in
the same run (fp32 peak for fp32/int8, bf16 peak for bf16), and each mode's cosine
similarity to the fp32 embeddings. Also tokenizer throughput (captions/s). Random weights:
speed and agreement do not depend on what the weights learned.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from clipsearch.core.heap import reusing_freed_memory
from clipsearch.models import onednn
from clipsearch.models.encoder import Encoder, load_model
from clipsearch.models.model import CONFIGS, CLIPConfig
from clipsearch.models.tokenizer import default_tokenizer
from clipsearch.models.weights import resolve


def image_tower_flops(cfg: CLIPConfig) -> float:
    """Multiply-adds x 2 for one image through the vision tower, as it computes: its last
    block makes keys and values of every token, the rest for the class token alone."""
    v = cfg.vision
    patches = (v.image_size // v.patch_size) ** 2
    tokens, d = patches + 1, v.width
    per_layer = 2 * (tokens * 12 * d * d + 2 * tokens * tokens * d)
    last_layer = 2 * (tokens * 2 * d * d + 10 * d * d + 2 * tokens * d)
    patch_embedding = 2 * patches * 3 * v.patch_size**2 * d
    return (v.layers - 1) * per_layer + last_layer + patch_embedding + 2 * d * cfg.embed_dim


def matmul_peak(dtype: torch.dtype, n: int = 2048, seconds: float = 2.0) -> float:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        count += 1
    return 2 * n**3 * count / (time.perf_counter() - start) / 1e9


def throughput(encoder, pixels: np.ndarray, seconds: float) -> float:
    """Images/s, with the heap as indexing keeps it (core/heap.py)."""
    with reusing_freed_memory():
        encoder.encode_pixels(pixels)  # warm-up
        count, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            encoder.encode_pixels(pixels)
            count += len(pixels)
        return count / (time.perf_counter() - start)


def encoders(spec: str, precision: str, unfused: bool):
    """The model as load_model gives it and, with `unfused`, a MobileCLIP's train-time
    branches left as they are (what load_model's fusing buys)."""
    encoder = load_model(spec, precision=precision)
    yield spec, encoder
    if unfused and encoder.fused:
        yield f"{spec} unfused", Encoder(resolve(spec).build(), spec, precision=precision)


def compare(specs: list[str], seconds: float, unfused: bool = False) -> None:
    """Image throughput of several models, each as a ratio to the first, one run."""
    rng = np.random.default_rng(0)
    rates: dict[str, dict[str, float]] = {}
    for spec in specs:
        for precision in ("fp32", "auto"):
            for name, encoder in encoders(spec, precision, unfused):
                size = encoder.image_size
                pixels = rng.integers(0, 256, (32, size, size, 3), dtype=np.uint8)
                rates.setdefault(name, {})[precision] = throughput(encoder, pixels, seconds)
                chosen = encoder.precision
    print(f"threads={torch.get_num_threads()}  auto = {chosen} here;  batch 32, images/s")
    print(f"{'model':>44} {'fp32':>7} {'auto':>7} {'fp32 ratio':>10} {'auto ratio':>10}")
    base = rates[specs[0]]
    for spec, r in rates.items():
        print(
            f"{spec:>44} {r['fp32']:7.1f} {r['auto']:7.1f} "
            f"{r['fp32'] / base['fp32']:10.2f} {r['auto'] / base['auto']:10.2f}"
        )


def against_onnx_runtime(arch: str, batches: list[int], rounds: int) -> None:
    """fp32 image tower: torch (Encoder.encode_pixels), its linears on MKL and on oneDNN
    (models/onednn.py picks one by the CPU's vendor), beside ONNX Runtime."""
    import io

    import onnxruntime as ort

    encoder = load_model(f"random:{arch}", precision="fp32")
    visual = encoder.model.visual.eval()
    size = encoder.image_size
    pixels = np.random.default_rng(0).standard_normal((max(batches), 3, size, size))
    pixels = pixels.astype(np.float32)
    graph = io.BytesIO()
    torch.onnx.export(
        visual, (torch.from_numpy(pixels[:2]),), graph, input_names=["pixels"],
        output_names=["vectors"], dynamic_axes={"pixels": {0: "n"}, "vectors": {0: "n"}},
        opset_version=18, dynamo=False,
    )  # fmt: skip
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    session = ort.InferenceSession(graph.getvalue(), options, providers=["CPUExecutionProvider"])
    sides = {
        "torch, MKL": lambda x: with_onednn(False, encoder.encode_pixels, x),
        "torch, oneDNN": lambda x: with_onednn(True, encoder.encode_pixels, x),
        "onnxruntime": lambda x: unit(session.run(None, {"pixels": x})[0]),
    }
    worst = max(
        float(np.abs(sides[name](pixels[:8]) - sides["onnxruntime"](pixels[:8])).max())
        for name in ("torch, MKL", "torch, oneDNN")
    )
    print(f"threads={torch.get_num_threads()}  {arch} fp32; unit vectors differ by {worst:.1e}")
    print(f"fp32 linears here: {'oneDNN' if onednn.for_fp32() else 'MKL'} ({onednn.vendor()})")
    print(f"{'batch':>5}" + "".join(f"{name + ' ms/img':>24}" for name in sides) + "  ratios")
    for batch in batches:
        spent: dict[str, list[float]] = {name: [] for name in sides}
        for _ in range(rounds):
            for name, run in sides.items():
                with reusing_freed_memory():  # as indexing runs (ONNX Runtime has its arena)
                    run(pixels[:batch])  # warm
                    start = time.perf_counter()
                    run(pixels[:batch])
                    spent[name].append((time.perf_counter() - start) * 1000 / batch)
        shown = "".join(f"{spread(v):>24}" for v in spent.values())
        ort_median = statistics.median(spent["onnxruntime"])
        ratios = [statistics.median(spent[n]) / ort_median for n in ("torch, MKL", "torch, oneDNN")]
        print(f"{batch:>5}{shown}  {ratios[0]:.2f} {ratios[1]:.2f}")


def with_onednn(on: bool, encode, x: np.ndarray) -> np.ndarray:
    """encode(x) with fp32 linears on oneDNN or on MKL, whatever this CPU's vendor."""
    chosen = onednn.for_fp32
    onednn.for_fp32 = lambda: on
    try:
        return encode(x)
    finally:
        onednn.for_fp32 = chosen


def spread(values: list[float]) -> str:
    return f"{min(values):.1f} / {statistics.median(values):.1f} / {max(values):.1f}"


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arch", default="ViT-B-32")
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--batches", default="1,8,32")
    parser.add_argument("--models", help="comma-separated model specs to compare")
    parser.add_argument("--unfused", action="store_true", help="also MobileCLIP unfused")
    parser.add_argument("--onnx", action="store_true", help="fp32 torch beside ONNX Runtime")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    if args.onnx:
        against_onnx_runtime(args.arch, [int(b) for b in args.batches.split(",")], args.rounds)
        return
    if args.models:
        compare(args.models.split(","), args.seconds, args.unfused)
        return

    cfg = CONFIGS[args.arch]
    flops = image_tower_flops(cfg)
    peaks = {"fp32": matmul_peak(torch.float32), "bf16": matmul_peak(torch.bfloat16)}
    print(f"threads={torch.get_num_threads()}  {args.arch}: {flops / 1e9:.2f} GFLOP/image")
    print(f"matmul peak: fp32 {peaks['fp32']:.1f} GFLOP/s, bf16 {peaks['bf16']:.1f} GFLOP/s")

    rng = np.random.default_rng(0)
    size = cfg.vision.image_size
    probe = rng.standard_normal((32, 3, size, size)).astype(np.float32)
    encoders = {p: load_model(f"random:{args.arch}", precision=p) for p in ("fp32", "bf16", "int8")}
    reference = encoders["fp32"].encode_pixels(probe)

    print(
        f"{'precision':>9} {'batch':>5} {'img/s':>8} {'GFLOP/s':>8} {'of peak':>8} {'cos→fp32':>9}"
    )
    for precision, encoder in encoders.items():
        cos = float(np.min(np.sum(encoder.encode_pixels(probe) * reference, axis=1)))
        peak = peaks["bf16" if precision == "bf16" else "fp32"]
        for batch in map(int, args.batches.split(",")):
            rate = throughput(encoder, probe[:batch], args.seconds)
            achieved = rate * flops / 1e9
            print(
                f"{precision:>9} {batch:>5} {rate:8.1f} {achieved:8.1f} "
                f"{achieved / peak:8.0%} {cos:9.5f}"
            )

    tok = default_tokenizer()
    captions = [
        f"a photo of a {w} number {i} on the beach"
        for i, w in enumerate(["dog", "cat", "red car", "mountain lake", "city at night"] * 400)
    ]
    tok._bpe.cache_clear()
    start = time.perf_counter()
    tok(captions)
    print(f"tokenizer: {len(captions) / (time.perf_counter() - start):,.0f} captions/s")


if __name__ == "__main__":
    main()
