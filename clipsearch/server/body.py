"""Request bodies: JSON, or multipart with the JSON in a `request` part and `image` parts
(uploads, each at most MAX_UPLOAD bytes). The Guard has capped the whole body already."""

from __future__ import annotations

import json
import os

from fastapi import Request

from ..images.decode import BytesSource
from .service import HttpError

MAX_UPLOAD = 20 * 1024 * 1024  # bytes per image
MAX_IMAGES = 4  # images per request
MAX_JSON = 256 * 1024  # a JSON body: 256 texts to embed fit, a query is far smaller
MAX_MULTIPART = MAX_IMAGES * MAX_UPLOAD + MAX_JSON


async def read_body(request: Request) -> tuple[dict, list[BytesSource]]:
    """(the JSON fields, the uploaded images)."""
    kind = request.headers.get("content-type", "")
    if not kind.startswith("multipart/form-data"):
        try:
            body = await request.json()
        except (ValueError, UnicodeDecodeError):
            raise HttpError(400, "the body must be JSON") from None
        if not isinstance(body, dict):
            raise HttpError(400, "the body must be a JSON object")
        return body, []
    form = await request.form(max_files=MAX_IMAGES, max_fields=2, max_part_size=MAX_JSON)
    try:
        fields = json.loads(form.get("request") or "{}")
    except ValueError:
        raise HttpError(400, "the `request` part must be JSON") from None
    uploads = []
    for part in form.getlist("image"):
        data = await part.read(MAX_UPLOAD + 1)
        if len(data) > MAX_UPLOAD:
            raise HttpError(413, f"{part.filename}: larger than {MAX_UPLOAD // 2**20} MB")
        uploads.append(BytesSource(os.path.basename(part.filename or "upload"), data))
    return (fields if isinstance(fields, dict) else {}), uploads
