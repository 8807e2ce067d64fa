"""OpenAI's byte-level BPE tokenizer for CLIP, reimplemented from its published behaviour.

The vocabulary file (bpe_simple_vocab_16e6.txt.gz) is OpenAI's, MIT-licensed; see
clipsearch/data/LICENSE-CLIP-BPE. Ids must equal what OpenAI's `clip.tokenize` gives,
because the released text towers were trained on exactly those ids.
"""

from __future__ import annotations

import html
import warnings
import zlib
from collections.abc import Callable, Sequence
from functools import lru_cache
from importlib import resources

import numpy as np
import regex

from ..core.errors import TruncationWarning

CONTEXT_LENGTH = 77
START_OF_TEXT = 49406
END_OF_TEXT = 49407
PAD = 0
_MERGE_COUNT = 49152 - 256 - 2  # merges used by the released models: 48,894
_PATTERN = regex.compile(
    r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""",
    regex.IGNORECASE,
)
_WHITESPACE = regex.compile(r"\s+")


def clean(text: str) -> str:
    """OpenAI's cleaning: mojibake repair, HTML entities (twice, for double-escaped
    scrapes), whitespace collapsed, lowercase."""
    text = html.unescape(html.unescape(repaired(text))).strip()
    return _WHITESPACE.sub(" ", text).strip().lower()


def repaired(text: str) -> str:
    """ftfy's repairs. Printable ASCII without `&` is left as it is (tests hold ftfy to
    that), so a typical query never imports it: 90 ms of a cold query."""
    if text.isascii() and text.isprintable() and "&" not in text:
        return text
    import ftfy

    return ftfy.fix_text(text)


def bytes_to_unicode() -> dict[int, str]:
    """Map each byte to a printable character so BPE never sees whitespace or control bytes."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    chars = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, map(chr, chars)))


def load_merges() -> list[str]:
    """The merges the released models use, in rank order, as the file writes them: "a b"
    (no token holds a space: bytes_to_unicode maps it away). They are the first 525 kB of
    the file's 3.2 MB, so only its first megabyte is inflated."""
    raw = (resources.files("clipsearch") / "data" / "bpe_simple_vocab_16e6.txt.gz").read_bytes()
    head = zlib.decompressobj(wbits=31).decompress(raw, 1 << 20)  # 31: a gzip stream
    lines = head.decode("utf-8", "ignore").split("\n", _MERGE_COUNT + 1)
    return lines[1 : _MERGE_COUNT + 1]


class Tokenizer:
    """Text to CLIP token ids; `encode` for one text, `__call__` for a padded batch.

    Built at every process's first query, so built from C-level bulk operations: the
    merges stay the file's strings (the ranks are keyed by "a b"), no tuple per merge."""

    def __init__(self) -> None:
        self.byte_encoder = bytes_to_unicode()
        self._merge_lines = load_merges()
        base = list(self.byte_encoder.values())
        merged = "\n".join(self._merge_lines).replace(" ", "").split("\n")
        vocab = [*base, *(c + "</w>" for c in base), *merged, "<|startoftext|>", "<|endoftext|>"]
        self.encoder = dict(zip(vocab, range(len(vocab))))
        self.ranks = dict(zip(self._merge_lines, range(len(self._merge_lines))))
        self._bpe = lru_cache(maxsize=65536)(self._bpe_uncached)

    @property
    def merges(self) -> list[tuple[str, str]]:
        """The merges as pairs, in rank order (as Hugging Face's tokenizers take them)."""
        return [tuple(line.split(" ")) for line in self._merge_lines]

    def _bpe_uncached(self, word: str) -> tuple[str, ...]:
        parts = list(word[:-1]) + [word[-1] + "</w>"]
        while len(parts) > 1:
            pairs = {f"{a} {b}" for a, b in zip(parts, parts[1:])}
            best = min(pairs, key=lambda p: self.ranks.get(p, float("inf")))
            if best not in self.ranks:
                break
            first, second = best.split(" ")
            merged, i = [], 0
            while i < len(parts):
                if i < len(parts) - 1 and parts[i] == first and parts[i + 1] == second:
                    merged.append(parts[i] + parts[i + 1])
                    i += 2
                else:
                    merged.append(parts[i])
                    i += 1
            parts = merged
        return tuple(parts)

    def encode(self, text: str) -> list[int]:
        """BPE ids of the cleaned text, without start/end markers."""
        ids: list[int] = []
        for word in _PATTERN.findall(clean(text)):
            mapped = "".join(self.byte_encoder[b] for b in word.encode("utf-8"))
            ids.extend(self.encoder[piece] for piece in self._bpe(mapped))
        return ids

    def __call__(self, texts: list[str], context_length: int = CONTEXT_LENGTH) -> np.ndarray:
        """int64 array (n, context_length): start, ids, end, zero padding.

        Over-long text keeps its first context_length - 2 ids and end-of-text stays last,
        as in open_clip, with a TruncationWarning naming the text.
        """
        out = np.full((len(texts), context_length), PAD, dtype=np.int64)
        for row, text in enumerate(texts):
            ids = [START_OF_TEXT, *self.encode(text), END_OF_TEXT]
            if len(ids) > context_length:
                warnings.warn(
                    f"text truncated to {context_length} tokens: {text[:60]!r}...",
                    TruncationWarning,
                    stacklevel=2,
                )
                ids = ids[: context_length - 1] + [END_OF_TEXT]
            out[row, : len(ids)] = ids
        return out


def cut_to_longest(tokens):
    """Token ids (n, 77) cut after the longest text's end-of-text (the largest id, so its
    argmax): the mask is causal and pooling is at end-of-text, so the positions after it
    change nothing and cost a quarter of a query's time. numpy arrays or torch tensors."""
    length = int(tokens.argmax(-1).max()) + 1
    return tokens[:, :length]


def encode_in_batches(
    texts: Sequence[str],
    tokenizer: Callable[[list[str]], np.ndarray],
    encode_tokens: Callable[[np.ndarray], np.ndarray],
    dim: int,
    batch_size: int,
) -> np.ndarray:
    """Texts -> vectors (n, dim), tokenized and encoded batch_size at a time: the ids of
    every text at once would be (n, 77) int64, the activations far more."""
    chunks = [
        encode_tokens(tokenizer(list(texts[i : i + batch_size])))
        for i in range(0, len(texts), batch_size)
    ]
    return np.concatenate(chunks) if chunks else np.zeros((0, dim), np.float32)


@lru_cache(maxsize=1)
def default_tokenizer() -> Tokenizer:
    """One shared instance: building the merge table is the slow part of a tokenizer."""
    return Tokenizer()
