"""The tokenizer gives OpenAI's ids: golden values, and parity with transformers' BPE."""

from __future__ import annotations

import json
import random
import warnings

import numpy as np
import pytest

from clipsearch.models.tokenizer import END_OF_TEXT, START_OF_TEXT, TruncationWarning, clean
from clipsearch.models.tokenizer import default_tokenizer as tokenizer


def test_golden_ids():
    row = tokenizer()(["a photo of a cat"])[0]
    assert row[:7].tolist() == [49406, 320, 1125, 539, 320, 2368, 49407]
    assert not row[7:].any()
    assert row.shape == (77,)


def test_vocabulary_shape():
    tok = tokenizer()
    assert len(tok.merges) == 48894
    assert len(tok.encoder) == 49408
    assert tok.encoder["<|startoftext|>"] == START_OF_TEXT
    assert tok.encoder["<|endoftext|>"] == END_OF_TEXT


def test_cleaning_unescapes_html_twice_and_fixes_mojibake():
    assert clean("Tom &amp;amp; Jerry") == "tom & jerry"
    assert clean("  caf\u00c3\u00a9\n\tBAR ") == "café bar"


def test_over_long_text_keeps_end_of_text_last_and_warns():
    with pytest.warns(TruncationWarning):
        row = tokenizer()(["word " * 200])[0]
    assert row[0] == START_OF_TEXT and row[-1] == END_OF_TEXT
    assert (row[1:-1] != 0).all()


def test_empty_text_is_start_and_end():
    assert tokenizer()([""])[0][:3].tolist() == [START_OF_TEXT, END_OF_TEXT, 0]


WORDS = [
    "a",
    "photo",
    "of",
    "the",
    "cat",
    "dog",
    "beach",
    "sunset",
    "mountain",
    "café",
    "naïve",
    "résumé",
    "straße",
    "Ærøskøbing",
    "東京",
    "タワー",
    "北京",
    "서울",
    "Москва",
    "Ελλάδα",
    "مرحبا",
    "שלום",
    "हिन्दी",
    "ไทย",
    "don't",
    "I'LL",
    "we've",
    "she'd",
    "it's",
    "COVID-19",
    "3.14159",
    "1,000,000",
    "42nd",
    "#hashtag",
    "@user",
    "e-mail",
    "http://example.com/a?b=c&d=e",
    "😀",
    "🐶🏖️",
    "👩🏽\u200d🚀",
    "🇫🇷",
    "❤️",
    "★",
    "→",
    "∑",
    "½",
    "™",
    "©",
    "°",
    "µ",
]
ENTITIES = ["&amp;", "&lt;b&gt;", "&quot;", "&#39;", "&amp;amp;", "&nbsp;", "&eacute;", "&#x1F600;"]
PUNCT = list(".,;:!?()[]{}<>\"'`~^*_-+=|\\/…–—“”‘’«»¿¡")


def varied_strings(n: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        parts = []
        for _ in range(rng.randint(1, 12 if i % 50 else 120)):  # every 50th is very long
            r = rng.random()
            if r < 0.55:
                w = rng.choice(WORDS)
                parts.append(w.upper() if rng.random() < 0.1 else w)
            elif r < 0.7:
                parts.append(str(rng.randint(0, 10 ** rng.randint(1, 9))))
            elif r < 0.85:
                parts.append("".join(rng.choices(PUNCT, k=rng.randint(1, 4))))
            elif r < 0.93:
                parts.append(rng.choice(ENTITIES))
            else:
                parts.append(chr(rng.randint(0x20, 0x2FFF)))
        sep = rng.choice([" ", "  ", "\t", "\n", ""])
        out.append(sep.join(parts))
    return out


@pytest.fixture(scope="module")
def hf_tokenizer():
    """transformers' CLIPTokenizer over vocab and merges derived from the shipped file."""
    transformers = pytest.importorskip("transformers")
    tok = tokenizer()
    return transformers.CLIPTokenizer(vocab=dict(tok.encoder), merges=list(tok.merges))


def test_parity_with_transformers_on_1000_varied_strings(hf_tokenizer, emoji_captions):
    """transformers skips html.unescape and ftfy, so both get OpenAI-cleaned text; what is
    compared is the split regex, byte mapping and BPE merges."""
    tok = tokenizer()
    texts = varied_strings(1000) + emoji_captions
    mismatches = []
    for text in texts:
        ours = tok.encode(text)
        theirs = hf_tokenizer(clean(text), add_special_tokens=False)["input_ids"]
        if ours != theirs:
            mismatches.append((text, ours[:10], theirs[:10]))
    assert not mismatches, mismatches[:3]
    assert len(texts) >= 1000


def test_truncation_matches_transformers(hf_tokenizer):
    tok = tokenizer()
    long_texts = [t for t in varied_strings(1000) if len(tok.encode(t)) > 75]
    assert len(long_texts) >= 5
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TruncationWarning)
        rows = tok(long_texts)
    for text, row in zip(long_texts, rows):
        theirs = hf_tokenizer(clean(text), truncation=True, max_length=77)["input_ids"]
        assert row.tolist() == theirs


@pytest.fixture
def emoji_captions(request) -> list[str]:
    from helpers import EMOJI

    path = EMOJI / "captions.jsonl"
    if not path.exists():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines()[:400]]
    return [r["caption"] for r in rows] + [" ".join(r["tags"]) for r in rows]


def test_batch_is_padded_with_zeros():
    rows = tokenizer()(["a", "a much longer caption about a dog"])
    assert rows.dtype == np.int64
    assert rows[0, 3:].sum() == 0 and rows[1, :9].all()


def test_text_left_unrepaired_is_text_ftfy_leaves_as_it_is():
    """The shortcut that spares a query ftfy's import must not change a single token."""
    import random
    import string

    import ftfy

    from clipsearch.models.tokenizer import repaired

    rng = random.Random(0)
    alphabet = "".join(c for c in string.printable if c.isprintable() and c != "&")
    texts = ["a dog on a beach", "", " ", "x" * 500, "<b>bold</b>", "it's 5'10\" #1 ~_~"]
    texts += ["".join(rng.choices(alphabet, k=rng.randint(1, 80))) for _ in range(3000)]
    for text in texts:
        assert repaired(text) == ftfy.fix_text(text), repr(text)
    assert repaired("caf\u00c3\u00a9") == "café"  # mojibake still goes to ftfy
