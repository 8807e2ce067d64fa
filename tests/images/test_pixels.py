"""Pixels equal the reference pipeline; every PIL mode decodes; bad files say why."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import make_image
from PIL import Image

from clipsearch.images.decode import ImageError, open_image, to_rgb
from clipsearch.images.pixels import preprocess


def reference_pixels(img: Image.Image, size: int) -> np.ndarray:
    """OpenAI's pipeline: transformers' PIL processor for the bicubic short-side resize and
    normalisation (no crop), then torchvision's CenterCrop offset, round((h - size) / 2)."""
    processors = pytest.importorskip("transformers.models.clip.image_processing_pil_clip")
    proc = processors.CLIPImageProcessorPil(do_center_crop=False, size={"shortest_edge": size})
    full = proc(img, return_tensors="np")["pixel_values"][0]
    _, h, w = full.shape
    top, left = int(round((h - size) / 2.0)), int(round((w - size) / 2.0))
    return full[:, top : top + size, left : left + size]


ODD_SIZES = [(37, 101), (101, 37), (224, 224), (225, 300), (500, 333), (31, 32), (1, 64), (64, 3)]


@pytest.mark.parametrize("size", [32, 224])
@pytest.mark.parametrize("wh", ODD_SIZES)
@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_matches_reference_pipeline(wh, size, mode):
    rng = np.random.default_rng(sum(wh))
    img = Image.fromarray(rng.integers(0, 256, (wh[1], wh[0], 3), dtype=np.uint8)).convert(mode)
    ours, _ = preprocess(img, size)
    theirs = reference_pixels(img.convert("RGB"), size)
    assert ours.shape == (3, size, size)
    np.testing.assert_allclose(ours, theirs, atol=1e-5)


def test_rounded_crop_offset_differs_from_floor():
    """A case (offset 1.5) where transformers' floor would shift a pixel: we keep OpenAI's."""
    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 35, 3), dtype=np.uint8))
    ours, _ = preprocess(img, 32)
    arr = np.asarray(img, dtype=np.float32)[:, 2:34] / 255.0
    assert np.allclose(ours[0], (arr[..., 0] - 0.48145466) / 0.26862954, atol=1e-5)


def white(rgb: Image.Image) -> bool:
    return bool((np.asarray(rgb) == 255).all())


def test_transparent_modes_composite_on_white():
    clear = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    assert white(to_rgb(clear))
    assert white(to_rgb(Image.new("LA", (8, 8), (0, 0))))
    pa = Image.new("P", (8, 8), 0)
    pa.info["transparency"] = 0
    assert white(to_rgb(pa))
    assert white(to_rgb(clear.convert("PA")))


@pytest.mark.parametrize("mode", ["P", "CMYK", "1", "I;16", "I", "F", "YCbCr", "HSV", "L"])
def test_every_mode_becomes_rgb(mode):
    img = Image.new("RGB", (10, 6), (200, 120, 40)).convert(mode)
    rgb = to_rgb(img)
    assert rgb.mode == "RGB" and rgb.size == (10, 6)


def test_sixteen_bit_grey_scales_to_eight_bit():
    img = Image.new("I;16", (4, 4), 65535)
    assert white(to_rgb(img))


def test_animated_gif_uses_first_frame(tmp_path):
    frames = [Image.new("RGB", (16, 16), c) for c in [(255, 0, 0), (0, 0, 255)]]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=50, loop=0)
    img, info = open_image(path)
    r, g, b = np.asarray(img)[8, 8]
    assert r > 200 and b < 50 and info.format == "GIF"


def test_exif_orientation_is_applied(tmp_path):
    img = Image.new("RGB", (40, 20), (0, 0, 0))
    img.paste((255, 255, 255), (0, 0, 20, 20))  # left half white
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    exif[0x010F] = "Acme"
    exif.get_ifd(0x8769)[0x9003] = "2021:07:04 10:11:12"
    path = tmp_path / "rot.jpg"
    img.save(path, exif=exif, quality=95)
    shown, info = open_image(path)
    assert shown.size == (20, 40)
    assert np.asarray(shown)[5, 10].mean() > 200  # white half now on top
    assert (info.width, info.height) == (40, 20)
    assert info.taken_at == "2021:07:04 10:11:12" and info.camera_make == "Acme"


def test_draft_decode_of_large_jpeg_is_close(tmp_path):
    path = make_image(tmp_path / "big.jpg", size=(2000, 1500), quality=90)
    full, _ = preprocess(path, 224)
    draft, _ = preprocess(path, 224, draft=True)
    assert np.abs(full - draft).mean() < 0.05


def expect_error(path, reason_part: str):
    with pytest.raises(ImageError) as err:
        preprocess(path, 32)
    assert str(path) in str(err.value)
    assert reason_part in err.value.reason


def test_missing_file(tmp_path):
    expect_error(tmp_path / "nope.jpg", "not found")


def test_empty_file(tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    expect_error(tmp_path / "empty.jpg", "empty")


def test_truncated_jpeg(tmp_path):
    path = make_image(tmp_path / "t.jpg", size=(300, 200), quality=90)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    expect_error(path, "cannot decode")


def test_not_an_image(tmp_path):
    (tmp_path / "notes.png").write_text("just text, not a png")
    expect_error(tmp_path / "notes.png", "not an image")


def test_decompression_bomb(tmp_path):
    path = tmp_path / "bomb.png"
    Image.new("1", (20000, 10000)).save(path)  # 200 MP, a few kB on disk
    expect_error(path, "decompression bomb")


def test_directory_with_image_name(tmp_path):
    (tmp_path / "dir.jpg").mkdir()
    expect_error(tmp_path / "dir.jpg", "directory")


def test_file_that_changes_or_vanishes_while_read_is_not_trusted(tmp_path):
    from clipsearch.indexing.worker import decode_for_index

    path = make_image(tmp_path / "a.png")
    st = path.stat()
    pixels, info, error = decode_for_index(str(path), 32, (st.st_size, st.st_mtime_ns))
    assert error is None and pixels.shape == (32, 32, 3) and pixels.dtype == np.uint8
    # the scan saw an older version: size and time differ from what was decoded
    _, _, error = decode_for_index(str(path), 32, (st.st_size + 1, st.st_mtime_ns - 1))
    assert "changed while being read" in error
    path.unlink()
    _, _, error = decode_for_index(str(path), 32, (st.st_size, st.st_mtime_ns))
    assert "not found" in error


RESIZES = [("shortest", "bicubic"), ("squash", "bilinear"), ("longest", "bicubic")]


@pytest.mark.parametrize(("resize", "interpolation"), RESIZES)
@pytest.mark.parametrize("wh", [(64, 40), (40, 64), (33, 33)])
def test_each_resize_mode_makes_the_models_square(resize, interpolation, wh):
    from clipsearch.images.pixels import Preprocessing

    prep = Preprocessing(32, resize, interpolation, mean=(0.5,) * 3, std=(0.5,) * 3)
    img = Image.fromarray(np.full((wh[1], wh[0], 3), 255, np.uint8))
    pixels, _ = preprocess(img, prep)
    assert pixels.shape == (3, 32, 32)
    white = np.isclose(pixels, 1.0)  # (1 - 0.5) / 0.5
    if resize == "longest" and wh[0] != wh[1]:
        assert not white.all() and np.isclose(pixels, -1.0).any()  # black bands
    else:
        assert white.all()


def test_named_models_preprocess_as_open_clip_says():
    """Each named model's pixels equal open_clip's transform built from its pretrained
    config (random weights, nothing downloaded)."""
    open_clip = pytest.importorskip(
        "open_clip", reason="open_clip (with torchvision) is not installed beside this torch"
    )
    from clipsearch.models import mobileclip
    from clipsearch.models.model import CONFIGS
    from clipsearch.models.pretrained import PRETRAINED
    from clipsearch.models.weights import named_preprocessing

    mobileclip.register(open_clip)
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 256, (300, 400, 3), dtype=np.uint8))
    for p in PRETRAINED.values():
        arch, tag = p.open_clip
        cfg = open_clip.get_pretrained_cfg(arch, tag) or mobileclip.TRAINED  # S0: Apple's code
        size = open_clip.get_model_config(arch)["vision_cfg"]["image_size"]
        if not p.needs_open_clip:
            assert CONFIGS[p.arch].vision.image_size == size, p.name
        transform = open_clip.image_transform(
            size,
            is_train=False,
            mean=cfg["mean"],
            std=cfg["std"],
            interpolation=cfg.get("interpolation", "bicubic"),
            resize_mode=cfg.get("resize_mode", "shortest"),
        )
        ours, _ = preprocess(img, named_preprocessing(p, size))
        np.testing.assert_allclose(ours, transform(img).numpy(), atol=1e-5, err_msg=p.name)


def test_uint8_squares_from_decoding_normalise_on_the_model_side_as_preprocess_does(tmp_path):
    """Decoding processes send uint8 squares (a quarter of the bytes); the encoder
    normalises them to the same input the float path gives."""
    from clipsearch.images.pixels import square
    from clipsearch.models.encoder import load_model

    encoder = load_model("random:tiny")
    paths = [make_image(tmp_path / f"{i}.png", seed=i) for i in range(3)]
    squares = np.stack([square(p, encoder.preprocessing)[0] for p in paths])
    floats = np.stack([preprocess(p, encoder.preprocessing)[0] for p in paths])
    assert squares.dtype == np.uint8 and squares.shape[1:] == (32, 32, 3)
    np.testing.assert_allclose(
        encoder.encode_pixels(squares), encoder.encode_pixels(floats), atol=1e-6
    )
