"""CUDA and FAISS-GPU paths give the CPU's answers. They skip, saying why, on a machine
without a GPU (CI); on one with a GPU they are the check to run first:

    python -m pytest -q tests/test_gpu.py
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import clustered, make_image, make_store

from clipsearch.library import Library
from clipsearch.models.encoder import load_model
from clipsearch.storage.loaded_index import gpu_count

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")
faiss_gpu = pytest.mark.skipif(gpu_count() == 0, reason="faiss sees no GPU (faiss-cpu or none)")

TEXTS = ["a red square", "a photo of a dog on a beach", "🐶"]


@cuda
@pytest.mark.parametrize(("precision", "floor"), [("fp32", 0.9999), ("auto", 0.999)])
def test_cuda_encoder_matches_cpu(precision, floor):
    cpu = load_model("random:mini")
    gpu = load_model("random:mini", device="cuda", precision=precision)
    assert gpu.digest == cpu.digest
    pixels = np.random.default_rng(0).standard_normal((4, 3, 64, 64)).astype(np.float32)
    for a, b in (
        (cpu.encode_pixels(pixels), gpu.encode_pixels(pixels)),
        (cpu.encode_text(TEXTS), gpu.encode_text(TEXTS)),
    ):
        assert np.min(np.sum(a * b, axis=1)) > floor


@cuda
def test_indexing_on_cuda_finds_what_cpu_finds(tmp_path):
    photos = tmp_path / "photos"
    for i in range(12):
        make_image(photos / f"{i}.png", seed=i)
    answers = []
    for device in ("cpu", "cuda"):
        with Library(tmp_path / device, create=True, device=device, precision="fp32") as lib:
            lib.index([photos], model="random:tiny")
            answers.append(lib.similar(str(photos / "3.png"), k=5, model="random:tiny"))
    cpu, gpu = ([r.path for r in a.results] for a in answers)
    assert gpu == cpu


@faiss_gpu
@pytest.mark.parametrize("preset", ["exact", "ivf-flat"])
def test_faiss_gpu_search_equals_cpu(tmp_path, preset):
    _, indexes, model_id, _ = make_store(tmp_path)
    loaded = indexes.build(model_id, preset)
    queries = clustered(20, seed=3)
    _, on_gpu = loaded.search(queries, 10)
    assert loaded.gpu is not None
    _, on_cpu = loaded.index.search(queries, 10)
    overlap = np.mean([len(set(g) & set(c)) / 10 for g, c in zip(on_gpu, on_cpu)])
    assert overlap >= (1.0 if preset == "exact" else 0.95)
