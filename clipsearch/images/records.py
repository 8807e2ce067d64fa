"""Data files that name images, a row each: CSV/TSV, JSONL and Parquet tables. A list file
given to `index` names paths or URLs; a caption table given to `train` pairs images with
captions. Both read their rows here, and both fail with one DataError naming the file.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Sequence
from pathlib import Path

from ..core.errors import ClipsearchError
from .items import Item, is_url

IMAGE_KEYS = ("image", "filepath", "file", "path", "img", "image_path")
CAPTION_KEYS = ("caption", "text", "title", "label", "description")
URL_KEYS = ("url", "image_url", *IMAGE_KEYS)


class DataError(ClipsearchError, ValueError):
    """A data file (a list, a caption table, a tar shard) that cannot be used; the message
    names the file and the problem."""


def pick_column(
    keys: Sequence[str], wanted: str | None, candidates: Sequence[str], what: str, source: str
) -> str:
    """The column named `wanted`, else the first of the usual names that the table has."""
    if wanted:
        if wanted not in keys:
            raise DataError(f"{source}: no {what} column {wanted!r}; columns are {', '.join(keys)}")
        return wanted
    for c in candidates:
        if c in keys:
            return c
    raise DataError(
        f"{source}: cannot tell which column holds the {what} (columns: {', '.join(keys)}); "
        f"name it with --{what}-column"
    )


def read_text(path: Path) -> str:
    """A text file as UTF-8 (a BOM allowed); anything else is an error naming the file."""
    try:
        return path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataError(
            f"{path}: not UTF-8 text (byte 0x{e.object[e.start]:02x} at offset {e.start}); "
            "save it as UTF-8"
        ) from None


def read_records(path: Path) -> tuple[list[dict], list[str]]:
    """The rows of a CSV/TSV, JSONL or Parquet file as dicts, and its column names."""
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        records = _parquet_records(path)
    elif suffix in (".jsonl", ".json"):
        records = _jsonl_records(path)
    else:
        records = _csv_records(path, "\t" if suffix == ".tsv" else ",")
    if not records:
        raise DataError(f"{path}: no rows")
    return records, list(records[0])


def _jsonl_records(path: Path) -> list[dict]:
    records = []
    for n, line in enumerate(read_text(path).splitlines(), 1):
        if line.strip():
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{n}: not valid JSON ({e.msg})") from None
            if not isinstance(record, dict):
                raise DataError(
                    f"{path}:{n}: each line must be a JSON object like "
                    '{"image": "a.jpg", "caption": "a dog"}'
                )
            records.append(record)
    return records


def _csv_records(path: Path, delimiter: str) -> list[dict]:
    try:
        return list(csv.DictReader(io.StringIO(read_text(path)), delimiter=delimiter))
    except csv.Error as e:
        kind = "TSV" if delimiter == "\t" else "CSV"
        raise DataError(f"{path}: cannot parse as {kind}: {e}") from None


def _parquet_records(path: Path) -> list[dict]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise DataError(f"{path}: reading Parquet needs pyarrow: pip install pyarrow") from None
    try:
        return pq.read_table(path).to_pylist()
    except Exception as e:  # pyarrow's errors on a damaged file have no common base
        raise DataError(f"{path}: cannot read as Parquet: {e}") from None


def list_items(path: str, column: str | None = None) -> list[Item]:
    """The images a list file names, relative paths taken from the list's folder; the
    row's other columns are the item's metadata."""
    records, keys = read_records(Path(path))
    where = pick_column(keys, column, URL_KEYS, "image", path)
    folder = os.path.dirname(path)
    items = []
    for record in records:
        value = str(record.get(where) or "").strip()
        if not value:
            continue
        key = value if is_url(value) else os.path.normpath(os.path.join(folder, value))
        meta = {_meta_name(k): v for k, v in record.items() if k != where and v not in (None, "")}
        items.append(Item(key, meta))
    return items


def _meta_name(column: str) -> str:
    return "caption" if column in CAPTION_KEYS else column
