"""The words each file carries, and search by them beside search by vectors.

A file's words are its name and its last folders' names (split at - _ . and spaces, a
word that changes case or meets digits kept whole and in parts: `GrandCanyon_2019-07.jpg`
-> "GrandCanyon Grand Canyon 2019 07"), its caption (the text
columns a list file or a shard's sidecars gave it), its camera and lens, and the text read
in the image. They are kept in the `words` table (schema.Words), rewritten for a file in
the same transaction as its row, so that search by words never sees a file the catalog
does not hold.

A search is a list of parts, (field or None, text, phrase?), all of which must match:
SQLite's FTS5 ranks by BM25, PostgreSQL by ts_rank over its `simple` configuration.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence

from sqlalchemy import Float, and_, delete, func, insert, literal_column, select, text, update
from sqlalchemy.orm import Session

from ..images.items import SHARD_SEP
from .database import Database, chunks
from .schema import File, TextLine, Words

FIELDS = ("name", "folder", "caption", "camera", "text")
FOLDERS_KEPT = 3  # a file's folders whose names are words of it: the nearest three
PG_CONFIG = "simple"  # no stemming, no stop words: names and captions as written
PG_DOCUMENT = (
    f"to_tsvector('{PG_CONFIG}', " + " || ' ' || ".join(f"coalesce({f}, '')" for f in FIELDS) + ")"
)

_CASE_CHANGE = re.compile(r"(?<=[a-z])(?=[A-Z])|(?<=[A-Za-z])(?=[0-9])|(?<=[0-9])(?=[A-Za-z])")
_NOT_WORD = re.compile(r"[\W_]+")

Part = tuple[str | None, str, bool]  # (field or None for any, text, as a phrase)


def words_of(text_: str) -> list[str]:
    """The words of a name or a line: split where it is not a letter or digit; a word
    that changes case or meets digits is kept whole and in its parts (`GrandCanyon` ->
    GrandCanyon Grand Canyon, `BAKERY1887` -> BAKERY1887 BAKERY 1887), so that "iphone"
    finds `iPhone` and "canyon" finds `GrandCanyon`."""
    out: list[str] = []
    for word in filter(None, _NOT_WORD.split(text_)):
        parts = _CASE_CHANGE.sub(" ", word).split()
        out += [word] if len(parts) < 2 else [word, *parts]
    return out


def name_and_folder(path: str) -> tuple[str, str]:
    """The words of a file's name (without its extension) and of its nearest folders; a
    shard member's name is the member's."""
    container, _, member = path.rpartition(SHARD_SEP)
    inside = member if container else path
    folder, name = os.path.split(inside)
    parts = os.path.normpath(container or folder).split(os.sep)[-FOLDERS_KEPT:]
    stem = os.path.splitext(name)[0]
    return " ".join(words_of(stem)), " ".join(w for p in parts for w in words_of(p))


def caption_of(meta: str | None) -> str | None:
    """The text a dataset gave a file: every string value of its JSON (a list file's
    caption column, a shard's .txt or .json sidecar), in order."""
    if not meta:
        return None
    try:
        value = json.loads(meta)
    except ValueError:
        return None
    found: list[str] = []
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            found.append(item)
        elif isinstance(item, dict):
            stack.extend(reversed(list(item.values())))
        elif isinstance(item, list):
            stack.extend(reversed(item))
    return " ".join(found) or None


class WordRecords:
    def __init__(self, db: Database):
        self.db = db

    # Changes, each inside the caller's transaction (Database.write).

    @staticmethod
    def refresh(s: Session, file_ids: Sequence[int]) -> None:
        """Write the words of these files again from their rows and text lines (a file
        gone or failed keeps none)."""
        for chunk in chunks(list(file_ids)):
            s.execute(delete(Words).where(Words.rowid.in_(chunk)))
            q = select(
                File.id, File.path, File.meta, File.camera_make, File.camera_model, File.lens
            ).where(File.id.in_(chunk), File.state == "ok")
            lines: dict[int, list[str]] = {}
            read = select(TextLine.file_id, TextLine.text).where(TextLine.file_id.in_(chunk))
            for file_id, said in s.execute(read.order_by(TextLine.file_id, TextLine.line)):
                lines.setdefault(file_id, []).append(said)
            rows = [_words_row(*r, lines.get(r[0])) for r in s.execute(q)]
            if rows:
                s.execute(insert(Words), rows)

    @staticmethod
    def forget(s: Session, file_ids: Sequence[int]) -> None:
        for chunk in chunks(list(file_ids)):
            s.execute(delete(Words).where(Words.rowid.in_(chunk)))
            s.execute(delete(TextLine).where(TextLine.file_id.in_(chunk)))

    @staticmethod
    def put_text(s: Session, file_id: int, lines: Sequence[dict], reading: int) -> None:
        """The lines of text read in a file (text, confidence, box), replacing any before,
        and which reading read them: a file without text is read once too."""
        s.execute(delete(TextLine).where(TextLine.file_id == file_id))
        if lines:
            rows = [{"file_id": file_id, "line": i, **line} for i, line in enumerate(lines)]
            s.execute(insert(TextLine), rows)
        s.execute(update(File).where(File.id == file_id).values(text_read=reading))
        WordRecords.refresh(s, [file_id])

    def lines(self, file_id: int) -> list[TextLine]:
        with self.db.read() as s:
            q = select(TextLine).where(TextLine.file_id == file_id).order_by(TextLine.line)
            return list(s.scalars(q))

    # Search.

    def search(self, parts: Sequence[Part], limit: int) -> list[int]:
        """Ids of the files that match every part, best first, at most `limit`."""
        if not parts:
            return []
        with self.db.read() as s:
            if s.bind.dialect.name == "sqlite":
                q = text("SELECT rowid FROM words WHERE words MATCH :match ORDER BY rank LIMIT :n")
                found = s.execute(q, {"match": fts5_match(parts), "n": limit})
            else:
                found = s.execute(_pg_search(parts, limit))
            return [int(i) for (i,) in found]

    def of(self, file_ids: Sequence[int]) -> dict[int, dict[str, str]]:
        """Each file's words, by field."""
        out: dict[int, dict[str, str]] = {}
        with self.db.read() as s:
            for chunk in chunks(list(file_ids)):
                q = select(Words.rowid, *(getattr(Words, f) for f in FIELDS))
                for row in s.execute(q.where(Words.rowid.in_(chunk))):
                    out[row[0]] = {f: v for f, v in zip(FIELDS, row[1:]) if v}
        return out


def _words_row(file_id, path, meta, make, model, lens, lines) -> dict:
    name, folder = name_and_folder(path)
    camera = " ".join(x for x in (make, model, lens) if x) or None
    return {
        "rowid": file_id,
        "name": name,
        "folder": folder,
        "caption": caption_of(meta),  # as written: FTS5 splits it, and a phrase is a phrase
        "camera": camera,
        "text": "\n".join(" ".join(words_of(line)) for line in lines) if lines else None,
    }


def fts5_match(parts: Sequence[Part]) -> str:
    """An FTS5 query in which every part must match: each word (or phrase) quoted, so
    nothing a user types is FTS5 syntax, and a field's part filtered to its column."""
    out = []
    for field, said, phrase in parts:
        pieces = [said] if phrase else said.split()
        quoted = " ".join('"' + p.replace('"', '""') + '"' for p in pieces)
        out.append(f"{field} : ({quoted})" if field else f"({quoted})")
    return " AND ".join(out)


def _pg_search(parts: Sequence[Part], limit: int):
    """The same in PostgreSQL's full-text search: all parts, ranked over all fields."""
    conditions, everything = [], []
    for field, said, phrase in parts:
        query = (func.phraseto_tsquery if phrase else func.plainto_tsquery)(PG_CONFIG, said)
        column = getattr(Words, field) if field else None
        document = (
            func.to_tsvector(PG_CONFIG, func.coalesce(column, ""))
            if field
            else literal_column(PG_DOCUMENT)
        )
        conditions.append(document.op("@@")(query))
        everything.append(query)
    ranked = func.ts_rank(literal_column(PG_DOCUMENT), _all(everything), type_=Float)
    return select(Words.rowid).where(and_(*conditions)).order_by(ranked.desc()).limit(limit)


def _all(queries: list):
    combined = queries[0]
    for q in queries[1:]:
        combined = combined.op("&&")(q)
    return combined
