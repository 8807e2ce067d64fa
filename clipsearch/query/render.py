"""Query results as text for people and programs: json, jsonl, paths, and an HTML gallery."""

from __future__ import annotations

import base64
import html
import io
import json
import os
import re
from collections.abc import Sequence

from PIL import Image

from ..core.errors import ClipsearchError
from ..images.decode import ImageError, item_source, open_image
from .duplicates import Duplicates, Member
from .search import Result

THUMBNAIL = 256


class FormatError(ClipsearchError, ValueError):
    """An output format that does not exist."""


FORMATS = ("table", "json", "jsonl", "paths", "html")
BY_EXTENSION = {".html": "html", ".htm": "html", ".json": "json", ".jsonl": "jsonl"}


def format_for(fmt: str, output: str | None) -> str:
    """What `--format auto` means: a table on the screen; into a file, what the file's
    extension names (.html, .json, .jsonl), else one path per line."""
    if fmt == "auto":
        if output is None:
            return "table"
        return BY_EXTENSION.get(os.path.splitext(output)[1].lower(), "paths")
    if fmt not in FORMATS:
        raise FormatError(f"--format must be auto or one of {', '.join(FORMATS)}")
    return fmt


def markup_safe(text: str, multiline: bool = False) -> str:
    """Text safe to print on a terminal through rich: control characters (escape sequences
    that clear the screen, retitle the window or forge links) written as \\xNN,
    undecodable bytes as \\udcXX, brackets not read as markup. multiline keeps line
    breaks."""
    from rich.markup import escape

    return escape(visible(printable(text), keep="\n" if multiline else ""))


def table(query: str, results: Sequence[Result]):
    """The results as a rich table, every name shown safely."""
    from rich.table import Table

    worded = any(r.matched for r in results)  # a column for the words, where any matched
    t = Table("#", "score", "path", "date", "size", title=markup_safe(query))
    if worded:
        t.add_column("matched")
    for rank, r in enumerate(results, 1):
        date = f"{r.date:%Y-%m-%d}"
        path = r.path if r.raw is None else f"{r.path} (+ {os.path.basename(r.raw)})"
        row = [str(rank), f"{r.score:.3f}", markup_safe(path), date, size_text(r.size)]
        t.add_row(*row, *([matched_text(r.matched)] if worded else []))
    return t


def matched_text(matched: dict[str, list[str]] | None) -> str:
    """The words a result was found by, in bold, by field: `name: grand canyon`."""
    return "; ".join(
        f"{field}: [bold]{markup_safe(' '.join(found))}[/bold]"
        for field, found in (matched or {}).items()
    )


def as_table(query: str, results: Sequence[Result]) -> str:
    """The table as plain text, for a file."""
    return plain(table(query, results))


def plain(renderable) -> str:
    """A rich table as plain text, wide enough not to fold paths."""
    from rich.console import Console

    console = Console(file=io.StringIO(), width=200, color_system=None, highlight=False)
    console.print(renderable)
    return console.file.getvalue()


def size_text(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000:
            return f"{n:.0f} {unit}"
        n /= 1000
    return f"{n:.0f} TB"


def results_as(fmt: str, query: str, model: str, results: Sequence[Result]) -> str:
    """Results in one of FORMATS (not auto)."""
    return {
        "table": lambda: as_table(query, results),
        "json": lambda: as_json(query, model, results) + "\n",
        "jsonl": lambda: as_jsonl(results),
        "paths": lambda: as_paths(results),
        "html": lambda: as_html(query, model, results),
    }[fmt]()


def printable(text: str) -> str:
    """A file name that is not UTF-8 (its bytes kept as lone surrogates) with those bytes
    written as \\udcXX: printable anywhere, and a valid JSON escape that decodes back to
    the same name."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


# C0 and C1 controls, and the invisible format characters that reorder or hide text
# (bidi overrides and isolates, zero-width ones, the BOM): "photo\u202egnp.exe" must not
# print as "photoexe.png".
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]")


def visible(text: str, keep: str = "") -> str:
    """Control and format characters (except those in `keep`) written as \\xNN or \\uNNNN,
    as `ls` shows them: a file name cannot drive, or lie on, the terminal it is printed on."""
    return CONTROL.sub(lambda m: m[0] if m[0] in keep else _escape(m[0]), text)


def _escape(char: str) -> str:
    code = ord(char)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def json_text(data) -> str:
    return printable(json.dumps(data, ensure_ascii=False))


def as_json(query: str, model: str, results: Sequence[Result]) -> str:
    return json_text({"query": query, "model": model, "results": [r.to_dict() for r in results]})


def as_jsonl(results: Sequence[Result]) -> str:
    return "".join(json_text(r.to_dict()) + "\n" for r in results)


def as_paths(results: Sequence[Result]) -> str:
    return "".join(r.path + "\n" for r in results)


def thumbnail_data_uri(path: str) -> str | None:
    try:
        img, _ = open_image(item_source(path), draft_size=THUMBNAIL)
    except (ImageError, OSError):
        return None
    img.thumbnail((THUMBNAIL, THUMBNAIL), Image.Resampling.BICUBIC)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=82)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def duplicates_table(found: Duplicates):
    """Each group's members, the keeper first and marked, every name shown safely."""
    from rich.table import Table

    title = markup_safe(about(found))
    t = Table("group", "keep", "score", "path", "pixels", "size", "taken", title=title)
    for n, group in enumerate(found.groups, 1):
        for m in group.items:
            t.add_row(
                str(n) if m.keep else "",
                "keep" if m.keep else "",
                f"{m.score:.3f}",
                markup_safe(m.path),
                _pixels(m),
                size_text(m.bytes),
                f"{m.taken:%Y-%m-%d %H:%M}",
                end_section=m is group.items[-1],
            )
    return t


def about(found: Duplicates) -> str:
    at = "" if found.threshold is None else f" at {found.threshold:.3f}"
    return f"{len(found.groups)} groups of {found.kind} duplicates{at} (model {found.model})"


def _pixels(m: Member) -> str:
    return f"{m.width} × {m.height}" if m.width and m.height else "?"


def duplicates_as(fmt: str, found: Duplicates) -> str:
    """Groups in one of FORMATS (not auto); `paths` lists the members not kept."""
    return {
        "table": lambda: plain(duplicates_table(found)),
        "json": lambda: json_text(found.to_dict()) + "\n",
        "jsonl": lambda: "".join(json_text(g.to_dict()) + "\n" for g in found.groups),
        "paths": lambda: "".join(m.path + "\n" for g in found.groups for m in g.extra),
        "html": lambda: duplicates_html(found),
    }[fmt]()


def duplicates_html(found: Duplicates) -> str:
    """One self-contained page, a row per group, its members side by side."""
    rows = []
    for group in found.groups:
        cards = []
        for m in group.items:
            name = html.escape(printable(m.path))
            cards.append(
                f'<figure class="{"keep" if m.keep else ""}" data-path="{name}">'
                f"{_thumbnail(m.path)}<figcaption>{'<b>keep</b> ' if m.keep else ''}"
                f"{m.score:.3f}<br><span>{name}</span><br><small>{_pixels(m)}, "
                f"{size_text(m.bytes)}, {m.taken:%Y-%m-%d %H:%M}</small></figcaption></figure>"
            )
        rows.append(f"<section>{''.join(cards)}</section>")
    css = (
        "section{display:flex;gap:1rem;overflow-x:auto;margin-bottom:1.5rem}"
        "section figure{flex:0 0 220px}.keep{outline:3px solid #2a7}"
    )
    kept = "largest resolution first, then oldest; the first of each group is kept"
    return _page(about(found), kept, "\n".join(rows), css)


def as_html(query: str, model: str, results: Sequence[Result]) -> str:
    """One self-contained page: thumbnails embedded, nothing fetched."""
    cards = []
    for rank, r in enumerate(results, 1):
        name = html.escape(printable(r.path))  # the page is UTF-8 whatever the file names
        cards.append(
            f'<figure data-path="{name}" data-score="{r.score:.4f}">{_thumbnail(r.path)}'
            f"<figcaption><b>{rank}.</b> {r.score:.3f}<br><span>{name}</span>"
            f"<br><small>{r.date:%Y-%m-%d %H:%M}</small></figcaption></figure>"
        )
    about = f"{len(results)} results, model {model}"
    grid = "main{display:grid;grid-template-columns:repeat(auto-fill,minmax(220px,1fr));gap:1rem}"
    return _page(query, about, "\n".join(cards), grid)


def _thumbnail(path: str) -> str:
    uri = thumbnail_data_uri(path)
    return f'<img src="{uri}" alt="">' if uri else '<div class="missing">unreadable</div>'


def _page(title: str, about: str, body: str, css: str) -> str:
    """A self-contained page of figures: thumbnails embedded, nothing fetched."""
    title, about = (html.escape(printable(t)) for t in (title, about))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>clipsearch: {title}</title>
<style>
body{{font-family:system-ui,sans-serif;margin:1.5rem;background:#fafafa;color:#222}}
figure{{margin:0;background:#fff;border-radius:6px;padding:.5rem;box-shadow:0 1px 3px #0002}}
img{{width:100%;height:200px;object-fit:contain}}
figcaption{{font-size:.8rem;word-break:break-all}}
.missing{{height:200px;display:grid;place-items:center;color:#999}}
{css}
</style></head><body>
<h1>{title}</h1>
<p>{about}</p>
<main>
{body}
</main></body></html>
"""
