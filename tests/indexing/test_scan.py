"""Walking folders: what is found, what is skipped and said, and links that meet or loop;
the cycle collector held off while a scan runs."""

from __future__ import annotations

import gc
import os

import pytest
from helpers import make_image

from clipsearch.indexing.scan import Walker, collector_paused


def test_symlink_diamonds_are_walked_once(tmp_path):
    """Each level links twice to the next: followed naively, 2**12 paths to one image."""
    levels = [tmp_path / f"level{i}" for i in range(13)]
    for level in levels:
        level.mkdir()
    make_image(levels[-1] / "deep.png")
    for here, below in zip(levels, levels[1:]):
        (here / "left").symlink_to(below, target_is_directory=True)
        (here / "right").symlink_to(below, target_is_directory=True)
    found = list(Walker(follow_symlinks=True).walk(str(levels[0])))
    assert [os.path.basename(f.path) for f in found] == ["deep.png"]


def test_a_link_named_as_a_root_file_is_reported_unless_followed(tmp_path):
    image = make_image(tmp_path / "real.png")
    (tmp_path / "link.png").symlink_to(image)
    walker = Walker()
    assert list(walker.walk(str(tmp_path / "link.png"))) == []
    assert "--follow-symlinks" in walker.problems[0].reason
    followed = list(Walker(follow_symlinks=True).walk(str(tmp_path / "link.png")))
    assert [f.path for f in followed] == [str(tmp_path / "link.png")]


def test_a_link_named_as_a_root_folder_is_walked(tmp_path):
    make_image(tmp_path / "real" / "a.png")
    (tmp_path / "link").symlink_to(tmp_path / "real", target_is_directory=True)
    found = list(Walker().walk(str(tmp_path / "link")))
    assert [f.path for f in found] == [str(tmp_path / "link" / "a.png")]


def test_a_scan_holds_the_cycle_collector_off_and_gives_it_back_as_it_was():
    """On before, on after, even when the scan fails; off before (a program's own choice),
    off after."""
    assert gc.isenabled()
    with collector_paused():
        assert not gc.isenabled()
    assert gc.isenabled()
    with pytest.raises(OSError), collector_paused():
        raise OSError("a folder vanished")
    assert gc.isenabled()
    gc.disable()
    try:
        with collector_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    finally:
        gc.enable()
