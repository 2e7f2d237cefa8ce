"""Near-duplicates: items that are copies of one content (a sound in FLAC and in OGG, a resized
or re-encoded photo, a copy at another volume, a text in two files), grouped so that a search
shows each content once with its copies listed, and `crossmodal duplicates` can list them all.

Two items are copies when all of these hold:

- they have the same modalities;
- their vectors (the fused vector, or the mean of the item's vectors) have cosine at least
  VECTOR_GATE: a copy is always near in the model's space;
- each image or audio part's content fingerprint (`crossmodal.ingest.fingerprint`) has cosine
  at least the threshold (`[search] duplicate_threshold`); an item indexed before fingerprints
  existed has none, and then only identical vectors (cosine ≥ EXACT) count;
- their text, if they have any, is the same once Unicode forms, case and spacing are evened out.

The model's vectors alone cannot decide: they place what an item shows, and the starter model
puts two different handwritten 7s at cosines up to 0.9998, closer than a JPEG at quality 30 is
to its original (docs/search.md#near-duplicates has the measurements). Grouping is transitive
(connected components of the copy relation).

A search compares only its candidates (Gram matrices of a few dozen vectors); a whole collection
is searched with FAISS range searches over the fingerprints, so no Python loop runs over pairs.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import faiss
import numpy as np

from crossmodal.ingest.fingerprint import stored_prints
from crossmodal.search.query import MAX_K, SearchResult
from crossmodal.storage.catalog import Catalog
from crossmodal.storage.item_facts import ItemFacts, item_facts

VECTOR_GATE = 0.9
"""Least cosine of two copies' vectors (measured: 0.93 for the worst MP3 copy of a digit clip)."""
EXACT = 0.99999
"""Least cosine of two items' vectors that counts as the same decoded content, for items that
have no fingerprint (indexed before fingerprints existed)."""
MEDIA = ("image", "audio")


def text_key(text: str) -> str:
    """A text as compared for copies: NFKC, case-folded, runs of spacing made one space."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


@dataclass
class Signatures:
    """What copies are compared by, for n items in a given order (arrays indexed by row)."""

    facts: list[ItemFacts]
    vectors: np.ndarray
    kinds: np.ndarray
    has: dict[str, np.ndarray]
    prints: dict[str, np.ndarray]
    printed: dict[str, np.ndarray]
    texts: np.ndarray

    def __len__(self) -> int:
        return len(self.facts)


def signatures(catalog: Catalog, item_ids: Sequence[int] | None = None) -> Signatures:
    """The signatures of the given items in that order (every item, by id, when None); items
    gone from the catalog, or whose vectors are all damaged, are left out."""
    facts = item_facts(catalog, item_ids)
    order = sorted(facts) if item_ids is None else [int(i) for i in dict.fromkeys(item_ids) if int(i) in facts]
    vectors = catalog.item_vectors(order)
    rows = [facts[i] for i in order if i in vectors]
    dim = next(iter(vectors.values())).shape[0] if vectors else 0
    kinds_of: dict[tuple[str, ...], int] = {}
    texts_of: dict[str, int] = {}
    prints = [stored_prints(f.meta) for f in rows]
    out = Signatures(
        facts=rows, vectors=np.stack([vectors[f.item_id] for f in rows]) if rows else np.zeros((0, dim), np.float32),
        kinds=np.array([kinds_of.setdefault(f.modalities, len(kinds_of)) for f in rows], dtype=np.int64),
        has={m: np.array([m in f.modalities for f in rows], dtype=bool) for m in (*MEDIA, "text")},
        prints={}, printed={},
        texts=np.array([-1 if f.text is None else texts_of.setdefault(text_key(f.text), len(texts_of))
                        for f in rows], dtype=np.int64))
    for m in MEDIA:
        size = max((p[m].shape[0] for p in prints if m in p), default=0)
        present = np.array([m in p and p[m].shape[0] == size for p in prints], dtype=bool)
        matrix = np.zeros((len(rows), size), dtype=np.float32)
        for row in np.flatnonzero(present):
            matrix[row] = prints[row][m]
        out.prints[m], out.printed[m] = matrix, present
    return out


def _copies(s: Signatures, i: np.ndarray, j: np.ndarray, cos: np.ndarray, prints: dict[str, np.ndarray],
            threshold: float) -> np.ndarray:
    """Which pairs (i, j) are copies, given their vectors' cosines and their fingerprints'."""
    ok = (s.kinds[i] == s.kinds[j]) & (cos >= VECTOR_GATE)
    for m in MEDIA:
        both = s.printed[m][i] & s.printed[m][j]
        ok &= ~s.has[m][i] | np.where(both, prints[m] >= threshold, cos >= EXACT)
    return ok & (~s.has["text"][i] | ((s.texts[i] == s.texts[j]) & (s.texts[i] >= 0)))


def _components(n: int, i: np.ndarray, j: np.ndarray) -> list[list[int]]:
    """Connected components of size two or more, each in row order, ordered by first row."""
    parent = np.arange(n)

    def root(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = int(parent[x])
        return x

    for a, b in zip(i.tolist(), j.tolist()):
        ra, rb = root(a), root(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    groups: dict[int, list[int]] = {}
    for row in range(n):
        groups.setdefault(root(row), []).append(row)
    return sorted((g for g in groups.values() if len(g) > 1), key=lambda g: g[0])


def ranked_groups(catalog: Catalog, item_ids: Sequence[int], threshold: float) -> list[list[int]]:
    """Copies among a search's candidates: lists of positions in ``item_ids`` (rank order),
    every position in exactly one list, lists ordered by their best-ranked member."""
    s = signatures(catalog, item_ids)
    position = {int(item): p for p, item in enumerate(item_ids)}
    rows = [position[f.item_id] for f in s.facts]
    i, j = np.triu_indices(len(s), 1)
    cos = (s.vectors @ s.vectors.T)[i, j]
    prints = {m: (s.prints[m] @ s.prints[m].T)[i, j] for m in MEDIA}
    keep = _copies(s, i, j, cos, prints, threshold)
    grouped = _components(len(s), i[keep], j[keep])
    seen = {rows[r] for g in grouped for r in g}
    groups = [[rows[r] for r in g] for g in grouped] + [[p] for p in range(len(item_ids)) if p not in seen]
    return sorted(groups, key=lambda g: g[0])


def collapse(results: list[SearchResult], catalog: Catalog, threshold: float) -> list[SearchResult]:
    """Each group of copies as its best-ranked result, the others listed in its ``copies``."""
    if len(results) < 2:
        return results
    out = []
    for group in ranked_groups(catalog, [r.id for r in results], threshold):
        copies = [{"id": results[p].id, "uri": results[p].uri, "score": results[p].score} for p in group[1:]]
        out.append(replace(results[group[0]], copies=copies) if copies else results[group[0]])
    return out


def collapsed_search(run: Callable[[int], tuple[Any, list[SearchResult]]], k: int, catalog: Catalog,
                     threshold: float) -> tuple[Any, list[SearchResult]]:
    """``run(n)`` (a search for n results) with copies collapsed, asking for more results until
    k distinct ones are found or there are no more."""
    ask = min(MAX_K, max(2 * k, k + 10))
    while True:
        plan, results = run(ask)
        shown = collapse(results, catalog, threshold)
        if len(shown) >= k or len(results) < ask or ask >= MAX_K:
            return plan, shown[:k]
        ask = min(MAX_K, ask * 4)


@dataclass(frozen=True)
class DuplicateGroup:
    """Items holding one content: id, modality and every path of each, by id."""

    items: list[dict[str, Any]] = field(default_factory=list)

    @property
    def modality(self) -> str:
        return self.items[0]["modality"]

    def as_dict(self) -> dict[str, Any]:
        return {"modality": self.modality, "items": self.items}


def _range_pairs(matrix: np.ndarray, rows: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """Pairs of ``rows`` (first < second) whose vectors in ``matrix`` have inner product above
    ``radius``: one exact FAISS range search per block of rows."""
    if rows.size < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    data = np.ascontiguousarray(matrix[rows], dtype=np.float32)
    index = faiss.IndexFlatIP(data.shape[1])
    index.add(data)
    firsts, seconds = [], []
    for start in range(0, rows.size, 4096):
        lims, _, found = index.range_search(data[start:start + 4096], radius)
        queries = start + np.repeat(np.arange(lims.size - 1), np.diff(lims.astype(np.int64)))
        later = found > queries
        firsts.append(rows[queries[later]])
        seconds.append(rows[found[later]])
    return np.concatenate(firsts), np.concatenate(seconds)


def _text_pairs(s: Signatures) -> tuple[np.ndarray, np.ndarray]:
    """Pairs of text-only items with the same text (each to the first of its text)."""
    only_text = s.has["text"] & ~s.has["image"] & ~s.has["audio"] & (s.texts >= 0)
    rows = np.flatnonzero(only_text)
    first: dict[int, int] = {}
    i, j = [], []
    for row in rows.tolist():
        head = first.setdefault(int(s.texts[row]), row)
        if head != row:
            i.append(head)
            j.append(row)
    return np.array(i, dtype=np.int64), np.array(j, dtype=np.int64)


def duplicate_groups(catalog: Catalog, threshold: float) -> list[DuplicateGroup]:
    """Every group of copies in the collection, found by range searches over fingerprints (and,
    for items without one, over vectors at EXACT) and checked pair by pair as a search does."""
    s = signatures(catalog)
    pairs = [_text_pairs(s)]
    for m in MEDIA:
        pairs.append(_range_pairs(s.prints[m], np.flatnonzero(s.printed[m]), threshold - 1e-6))
        unprinted = s.has[m] & ~s.printed[m]
        if unprinted.any():
            a, b = _range_pairs(s.vectors, np.flatnonzero(s.has[m]), EXACT - 1e-6)
            touch = unprinted[a] | unprinted[b]
            pairs.append((a[touch], b[touch]))
    i = np.concatenate([p[0] for p in pairs]).astype(np.int64)
    j = np.concatenate([p[1] for p in pairs]).astype(np.int64)
    keep = np.zeros(i.size, dtype=bool)
    for start in range(0, i.size, 65536):  # bounded memory for the row-wise products
        a, b = i[start:start + 65536], j[start:start + 65536]
        cos = np.einsum("nd,nd->n", s.vectors[a], s.vectors[b])
        prints = {m: np.einsum("nd,nd->n", s.prints[m][a], s.prints[m][b]) for m in MEDIA}
        keep[start:start + 65536] = _copies(s, a, b, cos, prints, threshold)
    return [DuplicateGroup([{"id": s.facts[r].item_id, "modality": s.facts[r].modality, "uris": s.facts[r].uris}
                            for r in group]) for group in _components(len(s), i[keep], j[keep])]
