"""The images themselves, by catalog id only: thumbnails (made once, kept in the store,
cached by the browser) and the originals."""

from __future__ import annotations

import mimetypes

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import FileResponse, Response

from ..images import items
from . import auth
from .schemas import MAX_ID
from .service import HttpError, service_of

THUMB_SIZES = range(32, 1025)
FileId = Path(ge=1, le=MAX_ID, description="The image's catalog id.")

router = APIRouter(dependencies=[Depends(auth.check)])


@router.get("/thumb/{file_id}")
def thumb(request: Request, file_id: int = FileId, size: int = 256) -> Response:
    if size not in THUMB_SIZES:
        raise HttpError(400, f"size must be between {THUMB_SIZES[0]} and {THUMB_SIZES[-1]}")
    made, tag = service_of(request).thumbnail(file_id, size)
    headers = {"ETag": f'"{tag}"', "Cache-Control": "private, max-age=86400"}
    if request.headers.get("if-none-match") == headers["ETag"]:
        return Response(status_code=304, headers=headers)
    if isinstance(made, bytes):
        return Response(made, media_type="image/jpeg", headers=headers)
    return FileResponse(made, media_type="image/jpeg", headers=headers)


@router.get("/image/{file_id}")
def image(request: Request, file_id: int = FileId) -> Response:
    row = service_of(request).servable(file_id)
    kind = mimetypes.guess_type(row.path)[0] or "application/octet-stream"
    headers = {"Cache-Control": "private, max-age=3600"}
    if items.is_plain_file(row.path):
        return FileResponse(row.path, media_type=kind, headers=headers)
    return Response(items.read_bytes(row.path), media_type=kind, headers=headers)
