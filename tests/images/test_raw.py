"""Camera RAW files on real bytes: a DNG built in the test (a Bayer mosaic and the camera's
tags, with or without an embedded JPEG preview), read by its preview, demosaiced by LibRaw
(rawpy) without one, and a RAW+JPEG pair indexed as one photo."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from helpers import write_dng
from PIL import Image
from typer.testing import CliRunner

from clipsearch import Library
from clipsearch.cli import app
from clipsearch.images.decode import open_image

runner = CliRunner()


def picture(seed: int, size=(120, 80)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (3, 4, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(small).resize(size, Image.Resampling.BILINEAR))


def jpeg(rgb: np.ndarray, **save) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=90, **save)
    return buf.getvalue()


def test_a_raw_is_read_by_its_largest_preview_with_the_raws_own_exif(tmp_path):
    rgb = picture(1)
    thumbnail = jpeg(np.asarray(Image.fromarray(rgb).resize((30, 20))))
    dng = write_dng(tmp_path / "a.dng", rgb, preview=thumbnail + jpeg(rgb), orientation=6)
    img, info = open_image(str(dng))
    assert (info.format, info.camera_make, info.camera_model) == ("DNG", "Canon", "EOS R5")
    assert (info.width, info.height) == (120, 80)  # the larger of the two previews
    assert img.size == (80, 120)  # turned upright as the DNG's orientation says
    (tmp_path / "preview.jpg").write_bytes(jpeg(rgb))
    turned, _ = open_image(str(tmp_path / "preview.jpg"))
    assert np.array_equal(np.asarray(img), np.asarray(turned.transpose(Image.Transpose.ROTATE_270)))


def test_a_raw_without_a_preview_is_demosaiced_by_rawpy(tmp_path):
    pytest.importorskip("rawpy", reason="rawpy is not installed (the raw extra, in dev)")
    dng = write_dng(tmp_path / "bare.dng", picture(2))
    img, info = open_image(str(dng))
    assert img.mode == "RGB" and img.size == (60, 40)  # half size: a fast demosaic
    assert np.asarray(img).std() > 1  # a picture, not a blank
    turned = write_dng(tmp_path / "turned.dng", picture(2), orientation=6)
    assert open_image(str(turned))[0].size == (40, 60)  # turned by LibRaw, and only once


def test_without_rawpy_a_bare_raw_is_skipped_said_once_and_retried_once_installed(tmp_path):
    pytest.importorskip("rawpy", reason="rawpy is not installed (the raw extra, in dev)")
    photos = tmp_path / "photos"
    write_dng(photos / "bare.dng", picture(3))
    write_dng(photos / "also.nef", picture(4))  # a NEF is TIFF-based too
    store = tmp_path / "store"
    blocker = tmp_path / "no-rawpy" / "rawpy"  # as if the extra were not installed
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('rawpy is not installed')\n")
    path = os.pathsep.join([str(blocker.parent), os.environ.get("PYTHONPATH", "")])
    result = subprocess.run(
        [sys.executable, "-m", "clipsearch", "index", str(photos), "--store", str(store),
         "-m", "random:tiny", "--workers", "1"],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": path},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    said = result.stdout + result.stderr
    assert said.count("pip install 'clipsearch[raw]'") == 1
    assert "2 RAW files have no preview" in said
    status = runner.invoke(app, ["status", "--store", str(store), "--json"])
    assert json.loads(status.stdout)["raw_skipped"] == 2
    with Library(store) as lib:  # rawpy is here: both are read now
        report = lib.index([photos], model="random:tiny")
        assert (report.updated, report.failed, report.skipped_raw) == (2, 0, 0)


def test_a_raw_with_a_jpeg_of_its_name_is_one_photo_shown_with_both(tmp_path):
    photos = tmp_path / "photos"
    write_dng(photos / "IMG_0001.CR2", picture(5), preview=jpeg(picture(5)))
    (photos / "IMG_0001.JPG").write_bytes(jpeg(picture(5)))
    write_dng(photos / "IMG_0002.dng", picture(6), preview=jpeg(picture(6)))  # RAW only
    with Library(tmp_path / "store", create=True) as lib:
        report = lib.index([photos], model="random:tiny")
        assert report.added == 2
        found = {r.path.rsplit("/", 1)[1]: r for r in lib.search("x", k=10).results}
    assert sorted(found) == ["IMG_0001.JPG", "IMG_0002.dng"]
    assert found["IMG_0001.JPG"].raw == str(photos / "IMG_0001.CR2")
    assert found["IMG_0002.dng"].raw is None and found["IMG_0002.dng"].format == "DNG"
    with Library(tmp_path / "store") as lib:  # the RAW named alone (as `watch` does): no
        report = lib.index([photos / "IMG_0001.CR2"], model="random:tiny")
        assert (report.added, report.unchanged) == (0, 0)


def test_a_raw_embeds_as_its_preview_does(tmp_path, tiny):
    rgb = picture(7, size=(224, 160))
    dng = write_dng(tmp_path / "b.dng", rgb, preview=jpeg(rgb))
    (tmp_path / "b.jpg").write_bytes(jpeg(rgb))
    assert np.allclose(*tiny.encode_images([str(dng), str(tmp_path / "b.jpg")]), atol=1e-6)
