"""The encoder's own choices: a query's text on the cores that are free."""

from __future__ import annotations

import multiprocessing as mp
import os
import time

import numpy as np
import pytest
import torch

from clipsearch import load_model


def spin() -> None:
    while True:
        pass


@pytest.mark.skipif(torch.get_num_threads() < 2, reason="one thread is all there is")
def test_a_query_on_a_busy_machine_runs_on_one_thread_with_the_same_vectors():
    encoder = load_model("random:small", precision="fp32")
    texts = ["a dog on a beach"]
    expected = encoder.encode_text(texts)
    threads = torch.get_num_threads()
    used = []
    encode_tokens = encoder.encode_tokens

    def noting_threads(tokens):  # the real encoding, with the threads it ran on noted
        used.append(torch.get_num_threads())
        return encode_tokens(tokens)

    encoder.encode_tokens = noting_threads
    hogs = [mp.get_context("fork").Process(target=spin, daemon=True) for _ in range(os.cpu_count())]
    for hog in hogs:
        hog.start()
    try:
        deadline = time.time() + 20
        while 1 not in used and time.time() < deadline:
            np.testing.assert_allclose(encoder.encode_text(texts), expected, atol=1e-5)
    finally:
        for hog in hogs:
            hog.kill()
    assert 1 in used
    assert torch.get_num_threads() == threads  # given back
    many = encoder.encode_text(["a caption"] * 20)  # a batch, not a query: every thread
    assert used[-1] == threads and many.shape == (20, encoder.dim)
