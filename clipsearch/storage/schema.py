"""The catalog's tables, as a person would read them: files, the tar shards read whole,
models, each file's vector per model, the log of vector changes, the vector index built
from them, and the generation that every write raises. Alembic's migrations (migrations/)
make the database match these.
"""

from __future__ import annotations

import base64
import os
from datetime import datetime, timezone

from sqlalchemy import (
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


RAW_PATH = "raw:"  # stored paths are absolute, so no real one starts with this


class FsPath(TypeDecorator):
    """A file-system path. Text as usual; a name that is not valid UTF-8 (undecodable
    bytes on Linux) is stored as its raw bytes, which SQLite keeps exactly, and elsewhere
    (text must be UTF-8) as RAW_PATH + base64 of the bytes. Compared bytewise (collation
    C), so that a folder's files are one range of paths."""

    impl = Text
    cache_ok = True

    def load_dialect_impl(self, dialect):
        if dialect.name == "sqlite":  # BINARY, SQLite's default, is bytewise already
            return dialect.type_descriptor(Text())
        return dialect.type_descriptor(Text(collation="C"))

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        try:
            value.encode("utf-8")
            return value
        except UnicodeEncodeError:
            raw = os.fsencode(value)
            return raw if dialect.name == "sqlite" else RAW_PATH + base64.b64encode(raw).decode()

    def process_result_value(self, value, dialect):
        if isinstance(value, str) and value.startswith(RAW_PATH):
            return os.fsdecode(base64.b64decode(value[len(RAW_PATH) :]))
        return os.fsdecode(value) if isinstance(value, bytes) else value


class CaptureTime(TypeDecorator):
    """When a photo was taken, as DateTime; a stored value that is no date (a damaged or
    hand-edited catalog) reads as None, unknown, and the file's time stands in for it,
    as for a photo without EXIF, rather than failing every search that meets it."""

    impl = DateTime
    cache_ok = True

    def result_processor(self, dialect, coltype):
        parse = super().result_processor(dialect, coltype)
        if parse is None:
            return None

        def tolerant(value):
            try:
                return parse(value)
            except (ValueError, TypeError):
                return None

        return tolerant


class Base(DeclarativeBase):
    pass


class File(Base):
    __tablename__ = "files"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    path: Mapped[str] = mapped_column(FsPath, unique=True)
    size: Mapped[int] = mapped_column(BigInteger)
    mtime_ns: Mapped[int] = mapped_column(BigInteger)
    fingerprint: Mapped[str | None] = mapped_column(String(40), index=True)  # cheap: candidates
    content: Mapped[str | None] = mapped_column(String(64))  # hash of every byte: proof
    width: Mapped[int | None]
    height: Mapped[int | None]
    format: Mapped[str | None] = mapped_column(String(16))
    taken_at: Mapped[datetime | None] = mapped_column(CaptureTime, index=True)
    camera_make: Mapped[str | None] = mapped_column(Text)
    camera_model: Mapped[str | None] = mapped_column(Text)
    lens: Mapped[str | None] = mapped_column(Text)
    latitude: Mapped[float | None] = mapped_column(Float, index=True)  # degrees, WGS 84
    longitude: Mapped[float | None] = mapped_column(Float)
    exif_read: Mapped[int | None]  # which reading of EXIF filled these (core.versions.EXIF_READ)
    meta: Mapped[str | None] = mapped_column(Text)  # JSON: a shard's sidecars, a list's row
    text_read: Mapped[int | None]  # which reading of text in images filled text_lines
    state: Mapped[str] = mapped_column(String(8), default="ok")  # ok | failed
    error: Mapped[str | None] = mapped_column(Text)
    indexed_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Words(Base):
    """The words a file carries, for search by words beside search by vectors: its name and
    its folders' (split at - _ . and case changes), its caption (the text columns of a list
    file or shard sidecar), its camera and lens, and text read in the image. In SQLite an
    FTS5 table, whose rowid is the file's id; in PostgreSQL a table with a full-text index.
    Written in the same transaction as the file's row (catalog_words.py)."""

    __tablename__ = "words"
    rowid: Mapped[int] = mapped_column(Integer, primary_key=True)  # files.id
    name: Mapped[str | None] = mapped_column(Text)
    folder: Mapped[str | None] = mapped_column(Text)
    caption: Mapped[str | None] = mapped_column(Text)
    camera: Mapped[str | None] = mapped_column(Text)
    text: Mapped[str | None] = mapped_column(Text)


class TextLine(Base):
    """A line of text read in an image: its words, how sure the reader was (0..1), and its
    four corners in the upright image's pixels (JSON [[x, y], ...]); lines in reading order.
    A file read with no text has none, and its `text_read` says it was read."""

    __tablename__ = "text_lines"
    file_id: Mapped[int] = mapped_column(
        ForeignKey("files.id", ondelete="CASCADE"), primary_key=True
    )
    line: Mapped[int] = mapped_column(Integer, primary_key=True)
    text: Mapped[str] = mapped_column(Text)
    confidence: Mapped[float] = mapped_column(Float)
    box: Mapped[str] = mapped_column(Text)


class Shard(Base):
    """A tar shard whose every image member is in the catalog, as it was then: while its
    size and mtime match, a run knows its members from here without opening it. Removing
    any member's row removes this mark too, so a shard left half done is read again."""

    __tablename__ = "shards"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    path: Mapped[str] = mapped_column(FsPath, unique=True)
    size: Mapped[int] = mapped_column(BigInteger)
    mtime_ns: Mapped[int] = mapped_column(BigInteger)


class Model(Base):
    __tablename__ = "models"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    architecture: Mapped[str] = mapped_column(Text)
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    dim: Mapped[int]
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Vector(Base):
    __tablename__ = "vectors"
    file_id: Mapped[int] = mapped_column(
        ForeignKey("files.id", ondelete="CASCADE"), primary_key=True
    )
    model_id: Mapped[int] = mapped_column(
        ForeignKey("models.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    vector: Mapped[bytes] = mapped_column(LargeBinary)  # float32, L2-normalised


class VectorLog(Base):
    """Append-only: +file_id added, -file_id removed, per model."""

    __tablename__ = "vector_log"
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"))
    file_id: Mapped[int] = mapped_column(BigInteger)
    op: Mapped[str] = mapped_column(String(1))  # + | -
    # AUTOINCREMENT: positions are never reused after the log is trimmed.
    __table_args__ = (
        Index("ix_vector_log_model_seq", "model_id", "seq"),
        {"sqlite_autoincrement": True},
    )


class VectorIndex(Base):
    """A built FAISS index: which file holds it and up to which log position."""

    __tablename__ = "vector_indexes"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"), unique=True)
    preset: Mapped[str] = mapped_column(String(32))
    factory: Mapped[str] = mapped_column(Text)
    params: Mapped[str] = mapped_column(Text, default="{}")  # JSON search parameters
    filename: Mapped[str] = mapped_column(Text)
    log_seq: Mapped[int] = mapped_column(Integer)
    count: Mapped[int]
    tombstones: Mapped[int] = mapped_column(Integer, default=0)  # removed, not yet purged
    recall: Mapped[str | None] = mapped_column(Text)  # JSON: recall.Recall, when measured
    built_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Generation(Base):
    """One row: how many write transactions the catalog has had (database.py raises it in
    each). Unchanged since a reader last looked, nothing in the catalog is."""

    __tablename__ = "generation"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    number: Mapped[int] = mapped_column(BigInteger)
