"""Retrieval metrics and zero-shot classification (Radford et al. 2021, sections 3.1 and 3.2)."""

from __future__ import annotations

import string
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

import numpy as np

from ..core.errors import ClipsearchError
from ..images.pixels import preprocess
from ..images.records import read_text
from ..models.encoder import Encoder
from .data import Pair, read_image

KS = (1, 5, 10)


class TemplateError(ClipsearchError, ValueError):
    """A prompt template file that cannot be used; the message says how to write it."""


def embed_pairs(
    encoder: Encoder, pairs: Sequence[Pair], batch_size: int = 64, reader: Encoder | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Unit image and text vectors of the rows (unreadable images raise); the captions
    read by `reader` where one is given (a text tower aligned to `encoder`)."""
    images = []
    for i in range(0, len(pairs), batch_size):
        batch = [
            preprocess(read_image(p.image), encoder.preprocessing)[0]
            for p in pairs[i : i + batch_size]
        ]
        images.append(encoder.encode_pixels(np.stack(batch)))
    texts = (reader or encoder).encode_text([p.caption for p in pairs])
    return np.concatenate(images), texts


def ranks(similarity: np.ndarray, correct: np.ndarray) -> np.ndarray:
    """1-based rank of the first correct item in each row (ties counted pessimistically)."""
    best_correct = np.where(correct, similarity, -np.inf).max(axis=1)
    return (np.where(correct, -np.inf, similarity) >= best_correct[:, None]).sum(axis=1) + 1


def retrieval_metrics(
    images: np.ndarray, texts: np.ndarray, captions: Sequence[str] | None = None
) -> dict:
    """Text->image and image->text recall@1/5/10 and median rank. Rows with the same
    caption count as correct for each other (identical text cannot tell them apart)."""
    n = len(images)
    if captions is None:
        correct = np.eye(n, dtype=bool)
    else:
        c = np.asarray(captions, dtype=object)
        correct = c[:, None] == c[None, :]
    sim = texts @ images.T
    out = {"n": n}
    for name, s in (("text_to_image", sim), ("image_to_text", sim.T)):
        r = ranks(s, correct)
        for k in KS:
            out[f"{name}_R@{k}"] = float(np.mean(r <= k))
        out[f"{name}_median_rank"] = float(np.median(r))
    return out


def concept_recall(
    texts: np.ndarray,
    text_concepts: Sequence[str],
    images: np.ndarray,
    image_concepts: Sequence[str],
    k: int = 5,
) -> float:
    """Share of texts with an image of their concept among their k nearest images (a
    concept may have several images: styles, variants)."""
    top = np.argsort(-(texts @ images.T), axis=1)[:, :k]
    found = [c in {image_concepts[j] for j in row} for c, row in zip(text_concepts, top)]
    return float(np.mean(found))


class PairingError(ClipsearchError, ValueError):
    """A model and text tower that cannot be scored together; the message says why."""


def evaluate(encoder: Encoder, pairs: Sequence[Pair], reader: Encoder | None = None) -> dict:
    """Retrieval metrics of `encoder`, or of its image tower with the text tower `reader`
    (one that `train --distill-text` made for it: the pairing `query --text-model` does)."""
    if encoder.text_only:
        raise PairingError(
            f"{encoder.name} is a text tower only (made by train --distill-text): give the "
            "model it reads for as --model and this one as --text-model"
        )
    if reader is not None and reader.digest != encoder.digest:
        raise PairingError(
            f"the text tower {reader.name} reads for the model with digest {reader.digest}, "
            f"not for {encoder.name} ({encoder.digest}); give the --model it was made from"
        )
    images, texts = embed_pairs(encoder, pairs, reader=reader)
    return retrieval_metrics(images, texts, [p.caption for p in pairs])


def templates(kind: str) -> list[str]:
    """`simple` ("a photo of a {}."), `imagenet` (the paper's 80 prompts), or a file with
    one template per line, `{}` standing for the label."""
    if kind == "simple":
        return ["a photo of a {}."]
    if kind == "imagenet":
        text = (resources.files("clipsearch") / "data" / "imagenet_templates.txt").read_text()
    else:
        text = read_text(Path(kind))
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in lines or [""]:
        if not _one_label_slot(line):
            raise TemplateError(
                f"{kind}: {line!r}: templates must be one per line, each with {{}} for the label "
                "and no other braces (write {{ and }} for literal ones)"
            )
    return lines


def _one_label_slot(template: str) -> bool:
    """Exactly one `{}` and no other replacement field: `{x}` or `{0.a}` would read
    arguments that are not there, or attributes of the label."""
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError:  # an unmatched brace
        return False
    return fields == [""]


def zero_shot_classifier(
    encoder: Encoder, labels: Sequence[str], prompts: Sequence[str]
) -> np.ndarray:
    """One unit vector per label: the mean of its normalised prompt embeddings, re-normalised
    (prompt ensembling)."""
    weights = []
    for label in labels:
        e = encoder.encode_text([p.format(label) for p in prompts]).mean(axis=0)
        weights.append(e / np.linalg.norm(e))
    return np.stack(weights)


def top_labels(probs: np.ndarray, labels: Sequence[str], top: int) -> list[list[tuple[str, float]]]:
    """Each image's `top` most probable labels, best first."""
    return [[(labels[i], float(p[i])) for i in np.argsort(-p)[:top]] for p in probs]


def classify(
    encoder: Encoder, images: Sequence, labels: Sequence[str], prompts: Sequence[str]
) -> np.ndarray:
    """(n_images, n_labels) probabilities from the model's learned temperature x cosine
    (100 for OpenAI's weights), as each model was trained: a softmax over the labels for
    CLIP; for a model trained with the sigmoid loss (SigLIP, with its learned bias) each
    label's own sigmoid, so an image may fit several labels, or none."""
    classifier = zero_shot_classifier(encoder, labels, prompts)
    scale = float(encoder.model.logit_scale.detach().float().exp())
    logits = scale * encoder.encode_images(images) @ classifier.T
    bias = getattr(encoder.model, "logit_bias", None)
    if bias is not None:
        return 0.5 * (1 + np.tanh((logits + float(bias.detach().float())) / 2))  # no overflow
    logits -= logits.max(axis=1, keepdims=True)
    p = np.exp(logits)
    return p / p.sum(axis=1, keepdims=True)
