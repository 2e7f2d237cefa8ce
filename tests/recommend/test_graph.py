"""The related-items graph on the demo corpus's real catalog fields and real interactions: which
items it links, by what, with which weight, and the scores it gives a user's history."""

from __future__ import annotations

import math

import numpy as np
import pytest

from crossmodal.recommend.graph import ItemGraph, file_of
from crossmodal.recommend.interactions import Interactions
from crossmodal.storage.catalog import Catalog
from crossmodal.storage.collection import Collection

WEIGHTS = {"like": 1.0, "dislike": -1.0, "click": 0.25}


@pytest.fixture(scope="module")
def fields(demo_collection) -> dict[int, dict]:
    collection = Collection.open(demo_collection)
    try:
        catalog: Catalog = collection.catalog
        return catalog.filter_fields()
    finally:
        collection.close()


def ids_where(fields, **want) -> list[int]:
    return sorted(i for i, f in fields.items()
                  if all((f["modality"] if k == "modality" else f["meta"].get(k)) == v for k, v in want.items()))


def test_items_sharing_a_label_or_speaker_are_linked_weighted_by_group_size(fields):
    graph = ItemGraph.build(fields, None, ["label", "speaker"], max_group=200)
    george4 = ids_where(fields, modality="audio", label="4", speaker="george")
    fours = ids_where(fields, label="4")
    george = ids_where(fields, speaker="george")
    links = graph.links(george4[0], george4[1])
    assert [(link.kind, link.key, link.value) for link in links] == [("meta", "speaker", "george"),
                                                                     ("meta", "label", "4")]
    assert links[0].weight == pytest.approx(1 / math.log2(1 + len(george)))
    assert links[1].weight == pytest.approx(1 / math.log2(1 + len(fours)))
    image_of_4 = ids_where(fields, modality="image", label="4")[0]
    assert [link.key for link in graph.links(george4[0], image_of_4)] == ["label"]
    assert graph.links(george4[0], ids_where(fields, modality="image", label="5")[0]) == []


def test_a_group_larger_than_the_cap_links_nothing_and_a_file_links_its_segments(fields):
    texts = ids_where(fields, modality="text")
    assert len(texts) == 230 and {file_of(fields[t]["uri"]) for t in texts} == {file_of(fields[texts[0]]["uri"])}
    images = ids_where(fields, modality="image")
    capped = ItemGraph.build(fields, None, ["source"], max_group=200)  # 300 mnist images; 190 captions, 40 notes
    assert capped.links(images[0], images[1]) == [] and capped.counts() == {"co_liked": 0, "meta": 2, "file": 0}
    wide = ItemGraph.build(fields, None, [], max_group=300)  # the item list is one file of 230 segments
    (link,) = wide.links(texts[0], texts[1])
    assert (link.kind, link.value) == ("file", file_of(fields[texts[0]]["uri"]))
    assert link.weight == pytest.approx(1 / math.log2(231))
    assert wide.links(texts[0], images[0]) == []


def test_co_likes_weigh_as_the_cosine_of_the_items_likers(fields):
    a, b, c, d = ids_where(fields, modality="image", label="2")[:4]
    events = [("u1", a, "like"), ("u1", b, "like"), ("u2", a, "like"), ("u2", b, "click"),
              ("u3", a, "like"), ("u3", c, "like"), ("u4", d, "like"), ("u4", b, "dislike")]
    graph = ItemGraph.build(fields, Interactions.from_events(events, WEIGHTS), [], max_group=200)
    (ab,) = graph.links(a, b)
    assert (ab.kind, ab.users) == ("co_liked", 2) and ab.weight == pytest.approx(2 / math.sqrt(3 * 2))
    (ac,) = graph.links(a, c)
    assert ac.users == 1 and ac.weight == pytest.approx(1 / math.sqrt(3 * 1))
    assert graph.links(b, d) == []  # a dislike is no co-like
    scores = graph.scores({a: 1.0}, np.array([b, c, d]))
    assert scores == pytest.approx([1.0, (1 / math.sqrt(3)) / (2 / math.sqrt(6)), 0.0])
