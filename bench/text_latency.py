"""What a text query costs before the vector search: loading and one short text.

    python bench/text_latency.py [--model random:ViT-B-32] [--runs 60]

Load: a model saved to disk like a download, whole vs text tower only, with and without
the weights digest remembered (import time excluded; medians of 3), until the first text
is encoded in fp32, int8 and fp16 weights, and what the second text costs (the trace).
Encode: one query text of about ten tokens, p50 over distinct texts, for the text tower as
`F.linear` computes it (MKL), then as clipsearch runs it on CPU in fp32 (pre-packed for
oneDNN), int8 and fp16 weights, each in eager mode and traced, with the largest difference
from the plain fp32 vectors.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from clipsearch.core.memo import DigestCache
from clipsearch.models.encoder import Encoder, load_model
from clipsearch.models.weights import resolve

TEXTS = [f"a photo of {w} {{}}" for w in ("a dog", "a beach at sunset", "two cats on a sofa")]


def load_seconds(spec: str, texts: int = 0, **kwargs) -> float:
    """Median of 3 loads, each followed by encoding `texts` texts one by one (the first
    packs and quantises the in-projection, the second traces)."""
    times = []
    for _ in range(3):
        start = time.perf_counter()
        encoder = load_model(spec, **kwargs)
        for i in range(texts):
            encoder.encode_text([f"a dog {i}"])
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def encode_ms(encode: Callable[[str], np.ndarray], runs: int) -> tuple[float, np.ndarray]:
    for i in range(3):
        encode(f"warm up the kernels {i}")
    times, vectors = [], []
    for i in range(runs):
        text = TEXTS[i % len(TEXTS)].format(i)
        start = time.perf_counter()
        vectors.append(encode(text))
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000, np.stack(vectors)


def one_by_one(encoder: Encoder) -> Callable[[str], np.ndarray]:
    return lambda text: encoder.encode_text([text])[0]


def eager(encoder: Encoder) -> Callable[[str], np.ndarray]:
    """The packed tower's modules called directly: what encoding costs without the trace."""

    @torch.inference_mode()
    def encode(text: str) -> np.ndarray:
        tokens = encoder.tokenizer([text])
        tokens = torch.from_numpy(tokens[:, : tokens.argmax() + 1])
        return F.normalize(encoder.model.encode_text(tokens), dim=-1)[0].numpy()

    return encode


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
            (precision, texts): load_seconds(
                spec, texts, text_only=True, digests=digests, precision=precision
            )
            for precision in ("fp32", "int8", "fp16")
            for texts in (1, 2)
        }
        print(
            "text tower ready, first text encoded (digest remembered): "
            + ", ".join(f"{p} {ready[p, 1]:.2f} s" for p in ("fp32", "int8", "fp16"))
            + "; the second text (traced): "
            + ", ".join(f"{p} +{ready[p, 2] - ready[p, 1]:.2f} s" for p in ("fp32", "int8", "fp16"))
        )

        weights = resolve(spec)
        plain = Encoder(weights.build(), spec)  # a caller's model: neither packed nor traced
        plain_ms, reference = encode_ms(one_by_one(plain), args.runs)
        print(f"encode one text, fp32 F.linear (MKL):   p50 {plain_ms:5.1f} ms")
        for label, precision in (
            ("fp32 packed (oneDNN)", "fp32"),
            ("int8 dynamic", "int8"),
            ("fp16 weights", "fp16"),
        ):
            encoder = load_model(spec, precision=precision)
            traced_ms, vectors = encode_ms(one_by_one(encoder), args.runs)
            eager_ms, _ = encode_ms(eager(encoder), args.runs)
            cosine = float(np.min(np.sum(vectors * reference, axis=1)))
            print(
                f"encode one text, {label + ':':<24} p50 eager {eager_ms:5.1f} ms, "
                f"traced {traced_ms:5.1f} ms = {plain_ms / traced_ms:.2f}x; "
                f"min cosine to fp32 {cosine:.7f}"
            )


if __name__ == "__main__":
    main()
