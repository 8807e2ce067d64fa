"""Text read in images (`index --ocr`): shop signs, receipts, slides, screenshots.

The reader is RapidOCR with the PP-OCRv4 detection and recognition models that its wheel
carries, run by ONNX Runtime: nothing is downloaded, nothing needs a GPU (the `ocr` extra).
An image is read at most MAX_SIDE pixels on its long side, so a 50-MP photo costs what a
screen-sized one does; the boxes are given back in the upright image's own pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..core.errors import ClipsearchError
from .decode import item_source, open_image

MAX_SIDE = 1600
MIN_CONFIDENCE = 0.5  # lines the reader is less sure of are noise more often than text
INSTALL = 'pip install "clipsearch[ocr]"'


class ReaderMissing(ClipsearchError):
    """The OCR engine is not installed."""


@dataclass(frozen=True)
class Line:
    text: str
    confidence: float
    box: list[list[float]]  # four corners, [x, y], in the image's pixels

    def to_row(self) -> dict:
        import json

        return {"text": self.text, "confidence": self.confidence, "box": json.dumps(self.box)}


def require() -> None:
    """Fail in one line, before any work, where the engine is not installed."""
    from importlib.util import find_spec

    if find_spec("rapidocr_onnxruntime") is None:
        raise ReaderMissing(f"reading text in images needs the ocr extra: {INSTALL}")


class TextReader:
    """One engine, reading image after image; its models load with the first image
    (about 0.2 s), so a run with nothing to read pays nothing."""

    def __init__(self):
        require()
        self._engine = None

    def read(self, key: str) -> list[Line]:
        """The lines of text in an indexed item (a file, a shard's member), in reading
        order. An image that cannot be decoded raises ImageError, as indexing does."""
        if self._engine is None:
            from rapidocr_onnxruntime import RapidOCR

            self._engine = RapidOCR()
        img, info = open_image(item_source(key), draft_size=MAX_SIDE)  # a JPEG: reduced
        shrink = min(1.0, MAX_SIDE / max(img.size))
        if shrink < 1.0:
            img = img.resize((round(img.width * shrink), round(img.height * shrink)))
        back = max(info.width, info.height) / max(img.size)  # to the picture's own pixels
        found, _ = self._engine(np.ascontiguousarray(np.asarray(img)[:, :, ::-1]))  # BGR
        lines = []
        for box, text, confidence in found or []:
            if float(confidence) >= MIN_CONFIDENCE and text.strip():
                corners = [[round(x * back, 1), round(y * back, 1)] for x, y in box]
                lines.append(Line(text.strip(), round(float(confidence), 4), corners))
        return lines
