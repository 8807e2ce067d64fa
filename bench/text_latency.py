"""What a text query costs before the vector search: loading and one short text.

    python bench/text_latency.py [--model random:ViT-B-32] [--runs 60]

Load: a model saved to disk like a download, whole vs text tower only, with and without
the weights digest remembered (import time excluded; medians of 3), and until the first
text is encoded in fp32 and int8. Encode: one query
text of about ten tokens, p50 over distinct texts, for the text tower as `F.linear`
computes it (MKL), pre-packed for oneDNN (what clipsearch uses on CPU), and dynamic int8,
with the largest difference from the plain fp32 vectors.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from clipsearch.digests import DigestCache
from clipsearch.encoder import Encoder, load_model
from clipsearch.weights import resolve

TEXTS = [f"a photo of {w} {{}}" for w in ("a dog", "a beach at sunset", "two cats on a sofa")]


def load_seconds(spec: str, first_text: bool = False, **kwargs) -> float:
    """Median of 3 loads; first_text adds the first encoding (packing, int8 in-projection)."""
    times = []
    for _ in range(3):
        start = time.perf_counter()
        encoder = load_model(spec, **kwargs)
        if first_text:
            encoder.encode_text(["a dog"])
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def encode_ms(encoder: Encoder, runs: int) -> tuple[float, np.ndarray]:
    encoder.encode_text(["warm up the kernels"])
    times, vectors = [], []
    for i in range(runs):
        text = TEXTS[i % len(TEXTS)].format(i)
        start = time.perf_counter()
        vectors.append(encoder.encode_text([text])[0])
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000, np.stack(vectors)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="random:ViT-B-32")
    parser.add_argument("--runs", type=int, default=60)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")

    with tempfile.TemporaryDirectory() as tmp:
        spec = str(Path(tmp) / "model")
        load_model(args.model).save(spec)
        digests = DigestCache(Path(tmp) / "digests.json")
        whole = load_seconds(spec)
        text = load_seconds(spec, text_only=True)
        load_model(spec, digests=digests)  # remembers the digest, as indexing does
        whole_known = load_seconds(spec, digests=digests)
        text_known = load_seconds(spec, text_only=True, digests=digests)
        print(
            f"load: whole {whole:.2f} s, text only {text:.2f} s; digest remembered: "
            f"whole {whole_known:.2f} s, text only {text_known:.2f} s"
        )
        ready = {
            precision: load_seconds(
                spec, first_text=True, text_only=True, digests=digests, precision=precision
            )
            for precision in ("fp32", "int8")
        }
        print(
            f"text tower ready, first text encoded (digest remembered): fp32 {ready['fp32']:.2f} s"
            f", int8 {ready['int8']:.2f} s (quantised at load)"
        )

        weights = resolve(spec)
        plain_ms, plain = encode_ms(Encoder(weights.build(), spec), args.runs)
        print(f"encode one text, fp32 F.linear (MKL):   p50 {plain_ms:5.1f} ms")
        for label, encoder in (
            ("fp32 packed (oneDNN)", load_model(spec)),
            ("int8 dynamic", load_model(spec, precision="int8")),
        ):
            ms, vectors = encode_ms(encoder, args.runs)
            cosine = float(np.min(np.sum(vectors * plain, axis=1)))
            print(
                f"encode one text, {label + ':':<24} p50 {ms:5.1f} ms = "
                f"{plain_ms / ms:.2f}x, min cosine to fp32 {cosine:.6f}"
            )


if __name__ == "__main__":
    main()
