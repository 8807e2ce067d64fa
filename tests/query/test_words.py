"""One search box: a query's words looked up among the words files carry and fused with
the vector ranking, on a real store indexed with a random model (which knows nothing of
any picture, so only the words can put a file first)."""

from __future__ import annotations

import os

import pytest
from helpers import index, make_image

from clipsearch import Library
from clipsearch.query.search import Filters, QueryError
from clipsearch.query.words import fuse, matched, parse_text


def test_a_query_text_is_words_phrases_and_fields():
    parts, said = parse_text('grand canyon name:2019 "red door" caption:"a b" ratio:16')
    assert parts == [
        (None, "grand canyon ratio:16", False),
        ("name", "2019", False),
        (None, "red door", True),
        ("caption", "a b", True),
    ]
    assert said == "grand canyon 2019 red door a b ratio:16"  # what the vectors read


def test_fusion_puts_what_both_found_first_then_what_words_found():
    assert fuse([1, 2, 3], [9, 2]) == [2, 9, 1, 3]
    assert fuse(list(range(1, 100)), [70, 80])[:3] == [70, 80, 1]  # words weigh double
    many = fuse([5, 6], list(range(100, 170)))  # the vectors' best, after 62 word matches
    assert many.index(5) == 62 and many[:62] == list(range(100, 162))
    assert fuse([1, 2], []) == [1, 2]


def test_a_result_says_which_words_it_holds_by_field():
    parts = [(None, "Grand canyon", False), ("name", "2019", False)]
    held = {"name": "grand canyon 2019", "folder": "Trips Grand Canyon", "camera": "Canon"}
    assert matched(parts, held) == {
        "name": ["Grand", "canyon", "2019"],
        "folder": ["Grand", "canyon"],
    }


@pytest.fixture
def library(tmp_path, tiny):
    """40 pictures named like a camera names them, one named by a person, one with a
    caption from a list file, one in a folder of its own."""
    photos = tmp_path / "photos"
    for i in range(40):
        make_image(photos / f"IMG_{1000 + i}.jpg", seed=i)
    make_image(photos / "grand-canyon-2019.jpg", seed=50)
    make_image(photos / "trips" / "Lisbon" / "IMG_7000.jpg", seed=51)
    make_image(tmp_path / "listed" / "item.png", seed=52)
    (tmp_path / "listed" / "items.csv").write_text("path,caption\nitem.png,a red door\n")
    index(tmp_path / "store", [photos, tmp_path / "listed" / "items.csv"], tiny)
    lib = Library(tmp_path / "store")
    yield lib
    lib.close()


def first(answer) -> str:
    return os.path.basename(answer.results[0].path)


def test_words_of_a_name_a_folder_or_a_caption_put_that_file_first(library):
    for query, expected in [
        ("grand canyon", "grand-canyon-2019.jpg"),
        ("Lisbon", "IMG_7000.jpg"),
        ("red door", "item.png"),
        ('caption:"a red door"', "item.png"),
        ("IMG 1017", "IMG_1017.jpg"),
    ]:
        answer = library.search(query, k=5)
        assert first(answer) == expected, query
        assert answer.results[0].matched, query
        assert all(r.matched is None for r in answer.results[1:]), query
    vector_only = library.search("grand canyon", k=41, mode="vector")
    assert all(r.matched is None for r in vector_only.results)
    ranks = [os.path.basename(r.path) for r in vector_only.results]
    assert ranks.index("grand-canyon-2019.jpg") > 0  # the random model did not find it


def test_filters_hold_for_what_words_find(library, tmp_path):
    inside = Filters(folders=[str(tmp_path / "photos" / "trips")])
    assert first(library.search("Lisbon", filters=inside)) == "IMG_7000.jpg"
    elsewhere = Filters(folders=[str(tmp_path / "listed")])
    answer = library.search("grand canyon", filters=elsewhere, k=5)
    assert [first(answer)] == ["item.png"] and answer.results[0].matched is None


def test_text_mode_gives_only_what_words_find_each_with_its_vector_score(library):
    answer = library.search("canyon", mode="text", k=10)
    assert [first(answer)] == [os.path.basename(r.path) for r in answer.results]
    assert -1 <= answer.results[0].score <= 1 and answer.results[0].matched == {"name": ["canyon"]}
    assert library.search("no such words", mode="text").results == []
    with pytest.raises(QueryError, match="needs words"):
        library.search([], images=[answer.results[0].path], mode="text")
    with pytest.raises(QueryError, match="unknown mode"):
        library.search("canyon", mode="fuzzy")
    with pytest.raises(QueryError, match="empty query"):
        library.search('"" ""')


def test_min_score_drops_weak_vector_hits_but_not_what_words_found(library):
    answer = library.search("grand canyon", min_score=0.99, k=10)
    assert [first(answer)] == ["grand-canyon-2019.jpg"]
