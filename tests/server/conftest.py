"""The store the server tests share: twelve generated images in two folders and one large
JPEG, indexed with a tiny random model; and a server over it on a free loopback port."""

from __future__ import annotations

import pytest
from helpers import make_image, serving

from clipsearch import Library

MODEL = "random:tiny"


@pytest.fixture(scope="package")
def photos(tmp_path_factory):
    root = tmp_path_factory.mktemp("server")
    for i in range(12):
        make_image(root / "photos" / ("home" if i % 2 else "trip") / f"{i:02d}.png", seed=i)
    make_image(root / "photos" / "trip" / "big.jpg", size=(900, 600), seed=50)
    with Library(root / "store", create=True) as lib:
        lib.index([root / "photos"], model=MODEL)
    return root


@pytest.fixture(scope="package")
def base(photos):
    with serving(photos / "store") as url:
        yield url
