"""What decoding reads of a photo's EXIF: capture time, camera, lens and place, and an
EXIF block that says nonsense read as unknown, never as an error."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import camera_photo
from PIL import Image
from PIL.TiffImagePlugin import IFDRational

from clipsearch.images.decode import open_image, read_exif


def test_lens_and_place_are_read_with_south_and_west_negative(tmp_path):
    photo = camera_photo(tmp_path / "a.jpg", 1, "Canon", "EOS R5", (-33.8568, -70.65), "RF50mm")
    _, info = open_image(str(photo))
    assert (info.camera_make, info.camera_model, info.lens) == ("Canon", "EOS R5", "RF50mm")
    assert (info.latitude, info.longitude) == pytest.approx((-33.8568, -70.65), abs=1e-6)
    assert read_exif(str(photo))["latitude"] == info.latitude  # the header alone, the same


@pytest.mark.parametrize(
    "gps",
    [
        {1: "N", 2: (91.0, 0.0, 0.0), 3: "E", 4: (2.0, 0.0, 0.0)},  # beyond the pole
        {1: "N", 2: (48.0, 0.0, 0.0)},  # a latitude without a longitude
        {1: "N", 2: (IFDRational(48, 0), 0.0, 0.0), 3: "E", 4: (2.0, 0.0, 0.0)},  # 48/0
    ],
)
def test_a_position_that_is_none_reads_as_no_place(tmp_path, gps):
    exif = Image.Exif()
    block = exif.get_ifd(0x8825)
    for tag, value in gps.items():
        block[tag] = value
    path = tmp_path / "odd.jpg"
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(path, exif=exif)
    _, info = open_image(str(path))
    assert (info.latitude, info.longitude) == (None, None) and info.width == 30


def test_a_file_that_cannot_be_read_has_no_details(tmp_path):
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 not really")
    assert read_exif(str(tmp_path / "broken.jpg")) == read_exif(str(tmp_path / "gone.jpg")) == {}
    assert read_exif("https://example.com/a.jpg") == {}  # never fetched for this
