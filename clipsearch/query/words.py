"""Search by words beside search by vectors: what of a query is words to look up, and how
the two rankings become one.

In a query's text, `"an exact phrase"` must appear as written, and `name:`, `folder:`,
`caption:`, `camera:`, `text:` look in one field only (`name:canyon`, `caption:"red
door"`); the other words must all appear, in any field. The vector side reads the same
text with the quotes and field names taken out. The rankings are fused by reciprocal rank
(Cormack et al. 2009), the words' weighing double: a file scores 2 / (60 + its rank by
words) + 1 / (60 + its rank by vectors). Words a person typed that a file carries are
strong evidence, so the files they find come before those only the vectors find (up to
about 60 of them), in an order both rankings decide.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from ..storage.catalog_words import FIELDS, Part, words_of
from .search import QueryError, Term

MODES = ("hybrid", "vector", "text")
RRF_K = 60
WORDS_WEIGHT = 2.0  # against the vectors' 1
_PIECE = re.compile(r'(?:(?P<field>[a-z]+):)?(?:"(?P<phrase>[^"]*)"|(?P<word>\S+))')


def split_terms(terms: Sequence[Term]) -> tuple[list[Part], list[Term]]:
    """(the parts to look up as words, the terms for the vector side): words come from the
    text terms added, not from those taken away or from images."""
    parts: list[Part] = []
    plain: list[Term] = []
    for t in terms:
        if t.text is None:
            plain.append(t)
            continue
        found, said = parse_text(t.text)
        if t.weight > 0:
            parts += found
        if said:
            plain.append(Term(t.weight, text=said))
    return parts, plain


def parse_text(text: str) -> tuple[list[Part], str]:
    """A text's parts (field, text, phrase?) and the text the vectors read."""
    parts: list[Part] = []
    loose: list[str] = []
    said: list[str] = []
    for m in _PIECE.finditer(text):
        field, phrase, word = m.group("field"), m.group("phrase"), m.group("word")
        if field is not None and field not in FIELDS:  # "ratio:16" is a word, not a field
            word, phrase, field = m.group(0), None, None
        value = phrase if phrase is not None else word
        if not value or not value.strip():
            continue
        said.append(value)
        if field or phrase is not None:
            parts.append((field, value, phrase is not None))
        else:
            loose.append(value)
    if loose:
        parts.insert(0, (None, " ".join(loose), False))
    return parts, " ".join(said)


def check_mode(mode: str, parts: Sequence[Part], terms: Sequence[Term]) -> None:
    """A mode that can be answered: known, with words for `text`, something left to search."""
    if mode not in MODES:
        raise QueryError(f"unknown mode {mode!r}: use one of {', '.join(MODES)}")
    if mode == "text" and not parts:
        raise QueryError("--mode text needs words to look up: give some words in the query")
    if not terms:  # nothing but empty quotes
        raise QueryError("empty query: give some words, an image file, or both")


def fuse(by_vector: Sequence[int], by_words: Sequence[int]) -> list[int]:
    """Both rankings as one, by weighted reciprocal rank; a tie goes to words."""
    score: dict[int, float] = {}
    for ranking, weight in ((by_vector, 1.0), (by_words, WORDS_WEIGHT)):
        for rank, file_id in enumerate(ranking, start=1):
            score[file_id] = score.get(file_id, 0.0) + weight / (RRF_K + rank)
    found = set(by_words)
    return sorted(score, key=lambda i: (-score[i], i not in found))


def matched(parts: Sequence[Part], words: dict[str, str]) -> dict[str, list[str]]:
    """Which of the query's words a file's fields hold, by field: why it was found."""
    fields = {f: {w.lower() for w in words_of(v)} for f, v in words.items()}
    out: dict[str, list[str]] = {}
    for field, said, _ in parts:
        for word in words_of(said):
            for f in [field] if field else FIELDS:
                if word.lower() in fields.get(f, ()) and word not in out.get(f, []):
                    out.setdefault(f, []).append(word)
    return out
