"""The JSON the API takes and gives, as pydantic models (the OpenAPI schema at /docs is
made from them)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field

from ..query.duplicates import Group, Member
from ..query.search import Result

MAX_ID = 2**63 - 1  # the largest catalog id (SQLite's integer)
MAX_QUERY = 2000  # characters: CLIP reads 77 tokens, operators add a few words more
Text = Annotated[str, Field(max_length=4096)]  # checked: a lone surrogate is refused too


class SearchRequest(BaseModel):
    """A query in the command line's language, with the command line's filters."""

    query: str = Field(
        "", max_length=MAX_QUERY, description="Words and operators: `beach + sunset - 2:people`."
    )
    k: int = Field(20, ge=1, le=1000)
    offset: int = Field(0, ge=0, le=100_000, description="Results to skip (paging).")
    min_score: float | None = Field(None, ge=-1, le=1, description="Drop results below this.")
    sort: Literal["score", "date", "-date"] = Field(
        "score", description="Best first, oldest first, or newest first (of the best 200)."
    )
    mode: Literal["hybrid", "vector", "text"] = Field(
        "hybrid",
        description="By what images show and the words files carry (names, folders, captions, "
        'camera), fused; by what they show; or by words. `"a phrase"`, `name:` `folder:` '
        "`caption:` `camera:` look for words as written, in one field.",
    )
    in_: list[Text] = Field([], alias="in", max_length=64, description="Only under these folders.")
    after: Text | None = Field(None, description="Taken on or after: YYYY[-MM[-DD]].")
    before: Text | None = Field(None, description="Taken before: YYYY[-MM[-DD]].")
    ext: list[Text] = Field([], max_length=64, description="Only these formats, e.g. jpg.")
    camera: Text | None = Field(
        None, description="Only photos from a camera whose make and model hold this (any case)."
    )
    near: Text | None = Field(
        None, description="Only photos taken within KM (default 10) of LAT,LON[,KM]."
    )
    similar_to: int | None = Field(
        None, ge=1, le=MAX_ID, description="Also search by this indexed image."
    )


class Item(BaseModel):
    """One result: the file, its score, and where the page gets its pixels."""

    id: int
    path: str
    score: float
    width: int | None
    height: int | None
    taken_at: str | None
    date: str
    size: int
    format: str | None
    camera: str | None
    lens: str | None
    latitude: float | None
    longitude: float | None
    raw: str | None = Field(description="The RAW file beside this JPEG (RAW+JPEG), if any.")
    matched: dict[str, list[str]] | None = Field(
        None, description="The query's words this file carries, by field (name, caption...)."
    )
    thumb_url: str
    image_url: str

    @classmethod
    def of(cls, r: Result) -> Item:
        return cls(
            id=r.file_id,
            path=r.path,
            score=round(r.score, 5),
            width=r.width,
            height=r.height,
            taken_at=r.taken_at.isoformat() if r.taken_at else None,
            date=r.date.isoformat(),
            size=r.size,
            format=r.format,
            camera=r.camera,
            lens=r.lens,
            latitude=r.latitude,
            longitude=r.longitude,
            raw=r.raw,
            matched=r.matched,
            thumb_url=f"/thumb/{r.file_id}",
            image_url=f"/image/{r.file_id}",
        )


class SearchResponse(BaseModel):
    items: list[Item]
    more: bool = Field(description="Whether the next page (offset + k) has results.")
    query: str
    model: str
    timings_ms: dict[str, float]
    warnings: list[str] = Field([], description="Such as a query cut to 77 tokens.")


class TextLineItem(BaseModel):
    text: str
    confidence: float
    box: list[list[float]] = Field(description="Four corners [x, y] in the picture's pixels.")


class TextResponse(BaseModel):
    id: int
    read: bool = Field(description="Whether the text of this image was read (index --ocr).")
    lines: list[TextLineItem]


class DuplicateItem(BaseModel):
    """One file of a group of duplicates; `taken`: its EXIF capture time, else its file time."""

    id: int
    path: str
    score: float = Field(description="Similarity to the group's keeper.")
    width: int | None
    height: int | None
    bytes: int
    taken: str
    keep: bool = Field(description="The one the rule keeps: largest resolution, then oldest.")
    thumb_url: str
    image_url: str

    @classmethod
    def of(cls, m: Member) -> DuplicateItem:
        return cls(**{**m.to_dict(), "thumb_url": f"/thumb/{m.id}", "image_url": f"/image/{m.id}"})


class DuplicateGroup(BaseModel):
    kind: str
    items: list[DuplicateItem]

    @classmethod
    def of(cls, g: Group) -> DuplicateGroup:
        return cls(kind=g.kind, items=[DuplicateItem.of(m) for m in g.items])


class DuplicatesResponse(BaseModel):
    kind: Literal["exact", "near", "similar"]
    model: str
    threshold: float | None = Field(description="Where the kind begins; none for exact.")
    groups: list[DuplicateGroup] = Field(description="Largest groups first.")
    total: int = Field(description="Groups in all (this page is offset .. offset + limit).")
    more: bool


class EmbedRequest(BaseModel):
    text: list[Annotated[str, Field(max_length=MAX_QUERY)]] = Field(
        ..., min_length=1, max_length=256
    )


class SessionRequest(BaseModel):
    key: str = Field(..., max_length=1024)


class SessionState(BaseModel):
    key_needed: bool
    signed_in: bool


class ErrorResponse(BaseModel):
    """Every error: its status, and one line that says what to do."""

    error: str


def search_body() -> dict:
    """The search endpoint's request body for the OpenAPI schema: JSON, or multipart with
    the JSON in a `request` part and `image` parts (read by hand, so FastAPI cannot tell)."""
    return {
        "requestBody": {
            "content": {
                "application/json": {"schema": SearchRequest.model_json_schema(by_alias=True)},
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "properties": {
                            "request": {"type": "string", "description": "JSON as above"},
                            "image": {"type": "string", "format": "binary"},
                        },
                    }
                },
            },
            "required": True,
        }
    }
