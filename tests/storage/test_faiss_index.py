"""FAISS index module: real FAISS on small clustered data (dim 32, a few thousand vectors), every kind."""

from __future__ import annotations

import faiss
import numpy as np
import pytest

from crossmodal.errors import CrossmodalError, IndexFileError, IndexInputError
from crossmodal.storage.backends import faiss_search
from crossmodal.storage.backends.faiss_files import read_index, write_index
from crossmodal.storage.backends.faiss_index import (
    INDEX_KINDS,
    IndexParams,
    add_vectors,
    auto_params,
    build_index,
    choose_index_kind,
    estimate_memory_bytes,
    index_kind,
    index_memory_bytes,
    remove_ids,
    stored_ids,
)
from crossmodal.storage.backends.faiss_search import recall_against_exact, search

DIM = 32
N = 3000
APPROX = ("hnsw", "ivf_flat", "ivf_pq")


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _clustered(n: int, seed: int = 0, clusters: int = 20, spread: float = 0.8) -> np.ndarray:
    """Unit vectors around random unit centres: the shape of real embeddings, small enough to build in a blink."""
    rng = np.random.default_rng(seed)
    centres = _unit(rng.normal(size=(clusters, DIM)))
    labels = rng.integers(0, clusters, size=n)
    return _unit(centres[labels] + rng.normal(scale=spread / np.sqrt(DIM), size=(n, DIM)))


@pytest.fixture(scope="module", autouse=True)
def _one_faiss_thread():
    """Tiny problems: OpenMP hand-offs cost more than they save (40x slower k-means on a loaded 2-core box)."""
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(before)


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    """Vectors plus caller ids that are neither row numbers nor sorted, so a row/id mix-up shows."""
    vectors = _clustered(N)
    ids = np.random.default_rng(1).permutation(np.arange(N, dtype=np.int64) * 7 + 1_000_003)
    return vectors, ids


@pytest.fixture(scope="module")
def built(data) -> dict:
    vectors, ids = data
    return {kind: build_index(vectors, ids, kind, seed=0) for kind in INDEX_KINDS}


def _exact(vectors: np.ndarray, ids: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    order = np.argsort(-(queries @ vectors.T), axis=1, kind="stable")[:, :k]
    return ids[order]


@pytest.mark.parametrize("kind", INDEX_KINDS)
def test_every_kind_builds_as_asked_with_caller_ids(built, data, kind):
    vectors, ids = data
    index = built[kind]
    assert index_kind(index) == kind
    assert index.ntotal == N
    assert sorted(stored_ids(index).tolist()) == sorted(ids.tolist())
    scores, found = search(index, vectors[:50], 5)
    assert scores.dtype == np.float32 and found.dtype == np.int64
    assert scores.shape == found.shape == (50, 5)
    assert np.isin(found, ids).all()
    assert (np.diff(scores, axis=1) <= 1e-5).all(), "scores must come best first"


def test_flat_is_exact(built, data):
    vectors, ids = data
    scores, found = search(built["flat"], vectors[:200], 10)
    assert np.array_equal(found[:, 0], ids[:200])
    np.testing.assert_allclose(scores[:, 0], 1.0, atol=1e-5)
    assert np.array_equal(found, _exact(vectors, ids, vectors[:200], 10))


@pytest.mark.parametrize("kind", APPROX)
def test_approximate_kinds_have_high_recall(built, data, kind):
    vectors, ids = data
    recall = recall_against_exact(built[kind], vectors, ids, k=10, sample=300)
    assert recall >= 0.9, f"{kind} recall@10 {recall:.3f}"
    _, found = search(built[kind], vectors[:200], 1)
    assert (found[:, 0] == ids[:200]).mean() >= 0.95


def test_ivf_pq_without_refine_is_lossy_but_small(built, data):
    vectors, ids = data
    params = IndexParams(pq_refine=False, pq_m=8)
    index = build_index(vectors, ids, "ivf_pq", params)
    assert index_kind(index) == "ivf_pq"
    recall = recall_against_exact(index, vectors, ids, sample=300, params=params)
    refined = recall_against_exact(built["ivf_pq"], vectors, ids, sample=300)
    assert 0.3 <= recall < refined
    assert index_memory_bytes(index) < index_memory_bytes(built["flat"]) / 2


def test_recall_against_exact_detects_a_bad_index(data):
    vectors, ids = data
    shuffled = build_index(vectors, np.roll(ids, 1), "flat")  # every id attached to the wrong vector
    assert recall_against_exact(shuffled, vectors, ids, sample=200) < 0.2
    assert recall_against_exact(build_index(vectors, ids, "flat"), vectors, ids, sample=200) == 1.0


@pytest.mark.parametrize("kind", INDEX_KINDS)
def test_add_then_remove(data, kind):
    vectors, ids = data
    first = 2600
    index = build_index(vectors[:first], ids[:first], kind)
    add_vectors(index, vectors[first:], ids[first:])
    assert index.ntotal == N
    _, found = search(index, vectors[first:], 1)
    assert (found[:, 0] == ids[first:]).mean() >= 0.95
    with pytest.raises(IndexInputError, match="already in the index"):
        add_vectors(index, vectors[:1], ids[:1])

    gone = np.concatenate([ids[:150], ids[first:first + 150]])
    absent = np.array([5, 6], dtype=np.int64)  # never added: ignored, not counted
    assert remove_ids(index, np.concatenate([gone, absent])) == 300
    assert index.ntotal == N - 300
    assert index_kind(index) == kind
    assert not np.isin(gone, stored_ids(index)).any()
    removed_rows = np.concatenate([np.arange(150), np.arange(first, first + 150)])
    _, found = search(index, vectors[removed_rows], 10)
    assert not np.isin(found, gone).any()
    assert (found >= 0).all()
    kept = ids[200:first]
    _, found = search(index, vectors[200:300], 1)
    assert (found[:, 0] == kept[:100]).mean() >= 0.95
    assert remove_ids(index, gone) == 0


@pytest.mark.parametrize("kind", INDEX_KINDS)
def test_selector_restricts_results(built, data, kind):
    vectors, ids = data
    index = built[kind]
    rng = np.random.default_rng(7)
    allowed = rng.choice(ids, size=150, replace=False)
    queries = vectors[:40]
    _, found = search(index, queries, 10, selector_ids=allowed)
    assert np.isin(found, allowed).all(), "a disallowed id came back"
    exact = _exact(vectors[np.isin(ids, allowed)], ids[np.isin(ids, allowed)], queries, 10)
    overlap = np.mean([np.intersect1d(a, b).size / 10 for a, b in zip(exact, found)])
    assert overlap >= 0.9

    narrow = np.array([ids[5], ids[2000], ids[2999], 123], dtype=np.int64)  # 123 is not in the index
    scores, found = search(index, vectors[5:6], 5, selector_ids=narrow)
    assert found[0, 0] == ids[5]
    assert sorted(found[0, :3].tolist()) == sorted(narrow[:3].tolist())
    assert (found[0, 3:] == -1).all() and np.isneginf(scores[0, 3:]).all()
    _, found = search(index, vectors[:3], 5, selector_ids=np.array([], dtype=np.int64))
    assert (found == -1).all()


@pytest.mark.parametrize("kind", INDEX_KINDS)
def test_wide_filter_path_restricts_and_completes(built, data, kind, monkeypatch):
    """Filters above the exhaustive threshold go through the approximate search and the short-row completion."""
    monkeypatch.setattr(faiss_search, "FILTER_EXHAUSTIVE_MAX", 0)
    vectors, ids = data
    index = built[kind]
    allowed = ids[::2]
    _, found = search(index, vectors[:40], 10, selector_ids=allowed)
    assert np.isin(found, allowed).all() and (found >= 0).all()
    exact = _exact(vectors[::2], allowed, vectors[:40], 10)
    assert np.mean([np.intersect1d(a, b).size / 10 for a, b in zip(exact, found)]) >= 0.9
    narrow = ids[[7, 1500, 2900]]
    _, found = search(index, vectors[7:8], 4, selector_ids=narrow)
    assert sorted(found[0, :3].tolist()) == sorted(narrow.tolist()) and found[0, 3] == -1


@pytest.mark.parametrize("kind", INDEX_KINDS)
def test_write_read_round_trip(built, data, kind, tmp_path):
    vectors, _ = data
    index = built[kind]
    path = tmp_path / f"{kind}.faiss"
    write_index(index, path)
    write_index(index, path)  # overwriting an existing file is the normal case
    assert [p.name for p in tmp_path.iterdir()] == [path.name], "temp file left behind"
    loaded = read_index(path)
    assert index_kind(loaded) == kind
    before = search(index, vectors[:100], 10)
    after = search(loaded, vectors[:100], 10)
    assert np.array_equal(before[1], after[1])
    np.testing.assert_array_equal(before[0], after[0])
    assert index_memory_bytes(loaded) == path.stat().st_size


def test_read_errors_name_the_file(built, tmp_path):
    missing = tmp_path / "nope.faiss"
    with pytest.raises(IndexFileError, match="nope.faiss") as info:
        read_index(missing)
    assert isinstance(info.value, CrossmodalError)
    assert info.value.path == str(missing)

    garbage = tmp_path / "garbage.faiss"
    garbage.write_bytes(b"this is not a faiss index" * 10)
    with pytest.raises(IndexFileError, match="garbage.faiss"):
        read_index(garbage)

    good = tmp_path / "good.faiss"
    write_index(built["ivf_flat"], good)
    truncated = tmp_path / "truncated.faiss"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(IndexFileError, match="truncated.faiss"):
        read_index(truncated)

    with pytest.raises(IndexFileError, match="not a regular file"):
        read_index(tmp_path)
    with pytest.raises(IndexFileError, match="no_such_dir"):
        write_index(built["flat"], tmp_path / "no_such_dir" / "x.faiss")


@pytest.mark.parametrize("kind", INDEX_KINDS)
def test_empty_index_then_add(kind):
    empty = np.empty((0, DIM), dtype=np.float32)
    index = build_index(empty, np.empty(0, dtype=np.int64), kind)
    assert index_kind(index) == ("hnsw" if kind == "hnsw" else "flat")  # IVF cannot train on nothing
    assert index.ntotal == 0
    query = _clustered(3, seed=5)
    scores, found = search(index, query, 4)
    assert (found == -1).all() and np.isneginf(scores).all()
    assert remove_ids(index, np.array([1, 2])) == 0
    assert recall_against_exact(index, empty, np.empty(0, dtype=np.int64)) == 1.0
    add_vectors(index, query, np.array([10, 20, 30]))
    _, found = search(index, query, 4)
    assert found[:, 0].tolist() == [10, 20, 30]
    assert (found[:, 3] == -1).all()


@pytest.mark.parametrize("kind", INDEX_KINDS)
def test_tiny_index_falls_back_and_stays_exact(kind):
    vectors = _clustered(5, seed=3)
    ids = np.array([50, 40, 30, 20, 10], dtype=np.int64)
    index = build_index(vectors, ids, kind)
    assert index_kind(index) == ("hnsw" if kind == "hnsw" else "flat")
    _, found = search(index, vectors, 5)
    assert found[:, 0].tolist() == ids.tolist()
    assert np.array_equal(found, _exact(vectors, ids, vectors, 5))


def test_small_ivf_shrinks_nlist_instead_of_failing(data):
    vectors, ids = data
    index = build_index(vectors[:800], ids[:800], "ivf_flat", IndexParams(ivf_nlist=1000))
    assert index_kind(index) == "ivf_flat"
    assert index.nlist == 800 // 39
    assert recall_against_exact(index, vectors[:800], ids[:800], sample=100) >= 0.9


def test_choose_index_kind_follows_size_and_budget():
    gib = 2**30
    assert choose_index_kind(0, 512, gib) == "flat"
    assert choose_index_kind(100_000, 512, gib) == "flat"
    assert choose_index_kind(100_001, 512, 8 * gib) == "ivf_flat"
    assert choose_index_kind(1_000_000, 512, 8 * gib) == "ivf_flat"
    assert choose_index_kind(1_000_000, 512, gib) == "ivf_pq"  # 2 GB of vectors do not fit 1 GiB
    assert choose_index_kind(50_000, 512, 50 * gib // 1024) == "ivf_pq"  # small but over a 50 MiB budget
    assert choose_index_kind(500, 512, gib, flat_max=100) == "ivf_flat"
    assert estimate_memory_bytes("ivf_pq", 10**6, 512, auto_params("ivf_pq")) < gib
    assert auto_params("ivf_pq").pq_refine is False and auto_params("ivf_flat") == IndexParams()
    with pytest.raises(IndexInputError):
        choose_index_kind(-1, 512, gib)


def test_input_validation_says_what_is_wrong(built, data):
    vectors, ids = data
    with pytest.raises(IndexInputError, match="unknown index kind"):
        build_index(vectors, ids, "annoy")
    with pytest.raises(IndexInputError, match="2-D"):
        build_index(vectors[0], ids[:1], "flat")
    with pytest.raises(IndexInputError, match="entries but there are"):
        build_index(vectors, ids[:-1], "flat")
    with pytest.raises(IndexInputError, match="unique"):
        build_index(vectors[:3], np.array([1, 2, 1]), "flat")
    with pytest.raises(IndexInputError, match=">= 0"):
        build_index(vectors[:2], np.array([1, -1]), "flat")
    with pytest.raises(IndexInputError, match="L2-normalised"):
        build_index(vectors[:3] * 2, ids[:3], "flat")
    with pytest.raises(IndexInputError, match="floating"):
        build_index(np.ones((2, DIM), dtype=np.int32), ids[:2], "flat")
    with pytest.raises(IndexInputError, match="dim 16 but the index has dim 32"):
        search(built["flat"], _unit(np.ones((1, 16))), 3)
    with pytest.raises(IndexInputError, match="reshape"):
        search(built["flat"], vectors[0], 3)
    with pytest.raises(IndexInputError, match="k must be"):
        search(built["flat"], vectors[:1], 0)
    nan = vectors[:2].copy()
    nan[1, 0] = np.nan
    with pytest.raises(IndexInputError, match="finite"):
        search(built["flat"], nan, 3)
    scores, found = search(built["flat"], vectors[:2].astype(np.float64), 3)  # float64 is converted, not refused
    assert found[:, 0].tolist() == ids[:2].tolist()


def test_search_params_change_effort(built, data):
    vectors, ids = data
    one_list = IndexParams(ivf_nprobe=1)
    every_list = IndexParams(ivf_nprobe=10_000)
    low = recall_against_exact(built["ivf_flat"], vectors, ids, sample=300, params=one_list)
    full = recall_against_exact(built["ivf_flat"], vectors, ids, sample=300, params=every_list)
    assert full == 1.0
    assert low < full
