"""Text read in images by the real engine (RapidOCR's PP-OCRv4 models, ONNX Runtime), on
signs rendered here in Debian's fonts: the words as written, the boxes in the picture's
own pixels however large it is, nothing where there is no text."""

from __future__ import annotations

import pytest
from helpers import make_image, sign

from clipsearch.images import ocr

pytest.importorskip("rapidocr_onnxruntime", reason="the ocr extra is not installed")

SIGNS = [
    (["BAKERY", "Fresh bread daily"], "DejaVuSans-Bold.ttf"),
    (["Platform 9", "Departures"], "LiberationSans-Regular.ttf"),
    (["Hotel Miramar"], "LiberationSerif-Bold.ttf"),
    (["EXIT"], "DejaVuSans.ttf"),
    (["Receipt total 42.50"], "DejaVuSansMono.ttf"),
    (["Museum of Modern Art"], "LiberationSans-Bold.ttf"),
    (["No parking", "Mon to Fri"], "DejaVuSerif.ttf"),
    (["Q3 results 2026"], "LiberationMono-Regular.ttf"),
]


@pytest.fixture(scope="module")
def reader():
    return ocr.TextReader()


def squeezed(text: str) -> str:
    """The engine may run words together ("BAKERY1887"): compare letters and digits."""
    return "".join(c for c in text.lower() if c.isalnum())


def test_signs_in_several_typefaces_are_read_as_written(reader, tmp_path):
    for i, (lines, typeface) in enumerate(SIGNS):
        path = sign(tmp_path / f"{i}.jpg", lines, seed=i, typeface=typeface)
        read = reader.read(str(path))
        said = squeezed("".join(line.text for line in read))  # a wide gap may split a line
        assert said == squeezed("".join(lines)), path
        assert all(0.5 <= line.confidence <= 1 for line in read)


def test_a_large_photo_is_read_at_a_bounded_size_with_boxes_in_its_own_pixels(reader, tmp_path):
    """6000x4000: read at 1600 px on the long side; the box comes back in the photo's pixels,
    around where the words were drawn (at x 1500, y 1800, 240 px high)."""
    path = sign(tmp_path / "big.jpg", ["HARBOUR"], size=(6000, 4000), at=(1500, 1800), height=240)
    (line,) = reader.read(str(path))
    assert squeezed(line.text) == "harbour"
    xs, ys = [x for x, _ in line.box], [y for _, y in line.box]
    assert 1400 < min(xs) < 1600 and 2300 < max(xs) < 2900
    assert 1750 < min(ys) < 1900 and 1950 < max(ys) < 2150


def test_a_picture_without_text_has_no_lines(reader, tmp_path):
    assert reader.read(str(make_image(tmp_path / "plain.png", size=(300, 200), seed=3))) == []


def test_without_the_engine_one_line_says_what_to_install(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "rapidocr_onnxruntime" else real(name, *a),
    )
    with pytest.raises(ocr.ReaderMissing, match=r'pip install "clipsearch\[ocr\]"'):
        ocr.TextReader()
