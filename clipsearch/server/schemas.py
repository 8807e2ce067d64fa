"""The JSON the API takes and gives, as pydantic models (the OpenAPI schema at /docs is
made from them)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from ..query.search import Result


class SearchRequest(BaseModel):
    """A query in the command line's language, with the command line's filters."""

    query: str = Field("", description="Words and operators: `beach + sunset - 2:people`.")
    k: int = Field(20, ge=1, le=1000)
    offset: int = Field(0, ge=0, le=100_000, description="Results to skip (paging).")
    min_score: float | None = None
    in_: list[str] = Field([], alias="in", description="Only under these folders.")
    after: str | None = Field(None, description="Taken on or after: YYYY[-MM[-DD]].")
    before: str | None = Field(None, description="Taken before: YYYY[-MM[-DD]].")
    ext: list[str] = Field([], description="Only these formats, e.g. jpg.")
    similar_to: int | None = Field(None, description="Also search by this indexed image.")


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
            thumb_url=f"/thumb/{r.file_id}",
            image_url=f"/image/{r.file_id}",
        )


class SearchResponse(BaseModel):
    items: list[Item]
    query: str
    model: str
    timings_ms: dict[str, float]


class EmbedRequest(BaseModel):
    text: list[str] = Field(..., min_length=1, max_length=256)


class SessionRequest(BaseModel):
    key: str


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
