"""FAISS indexes over L2-normalised float32 vectors, keyed by caller-supplied int64 ids (catalog ids).

Inner product on unit vectors is cosine similarity, so every index uses ``METRIC_INNER_PRODUCT``. Four kinds:

* ``flat``     exact search; ``IndexIDMap2(IndexFlatIP)``.
* ``hnsw``     graph search; ``IndexIDMap2(IndexHNSWFlat)``. FAISS cannot delete from HNSW, so :func:`remove_ids`
               rebuilds the graph from the stored vectors (cost of a full build).
* ``ivf_flat`` inverted lists of full vectors; ``IndexIVFFlat`` storing the caller's ids directly.
* ``ivf_pq``   inverted lists of product-quantised codes; ``IndexIVFPQ`` storing ids directly, or, with
               ``pq_refine``, ``IndexIDMap2(IndexRefineFlat(IndexIVFPQ))`` re-ranking candidates with exact vectors
               (removal then rebuilds too, because the refine store cannot delete in place).

Too little data to train a quantiser makes :func:`build_index` fall back (fewer IVF lists, fewer PQ bits, or
``flat``); :func:`index_kind` reports what was actually built.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace

import faiss
import numpy as np

from crossmodal.errors import IndexInputError

log = logging.getLogger(__name__)

INDEX_KINDS = ("flat", "hnsw", "ivf_flat", "ivf_pq")

# FAISS k-means warns (and clusters poorly) below this many training points per centroid.
_MIN_POINTS_PER_CENTROID = 39
# Fewer IVF lists than this is not worth the approximation: build flat instead.
_MIN_NLIST = 8
_MAX_NLIST = 65_536
# PQ codebooks use 2**nbits centroids; below 4 bits the codes carry too little to rank with.
_MIN_PQ_BITS = 4
_NORM_TOLERANCE = 1e-2
MISSING_SCORE = -np.inf


@dataclass(frozen=True)
class IndexParams:
    """Knobs; defaults tuned for recall@10 >= 0.95 at <= 5 ms per query at 1M x 512 on 2 cores (bench_index.py)."""

    hnsw_m: int = 32
    hnsw_ef_construction: int = 64
    hnsw_ef_search: int = 64
    ivf_nlist: int | None = None  # None: ~4*sqrt(n), capped so k-means has enough training points per list
    ivf_nprobe: int | None = None  # None: the value stored in the index at build time (see default_nprobe)
    pq_m: int | None = None  # None: dim/4 sub-quantisers (4 dims each), i.e. dim/4 bytes per vector
    pq_refine: bool = True  # IVF-PQ re-ranks candidates with exact vectors when True
    pq_refine_factor: int = 8  # IVF-PQ with refine: candidates re-ranked per result (k * factor)
    train_sample: int = 100_000  # max vectors used to train IVF quantisers


# ----------------------------------------------------------------------------------------------------------------
# validation


def as_vectors(vectors: np.ndarray, what: str, dim: int | None = None) -> np.ndarray:
    """Return C-contiguous float32 (n, dim) unit vectors or raise saying exactly what is wrong."""
    arr = np.asarray(vectors)
    if arr.ndim != 2:
        hint = " (use x.reshape(1, -1) for a single vector)" if arr.ndim == 1 else ""
        raise IndexInputError(f"{what} must be a 2-D array (n, dim); got shape {arr.shape}{hint}")
    if not np.issubdtype(arr.dtype, np.floating):
        raise IndexInputError(f"{what} must be floating point (float32); got dtype {arr.dtype}")
    if arr.shape[1] == 0:
        raise IndexInputError(f"{what} must have dim >= 1; got shape {arr.shape}")
    if dim is not None and arr.shape[1] != dim:
        raise IndexInputError(f"{what} have dim {arr.shape[1]} but the index has dim {dim}")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    if arr.shape[0]:
        norms = np.sqrt(np.einsum("ij,ij->i", arr, arr))
        bad = np.flatnonzero(~(np.abs(norms - 1.0) <= _NORM_TOLERANCE))
        if bad.size:
            raise IndexInputError(
                f"{what} must be finite and L2-normalised (inner product = cosine); {bad.size} of {arr.shape[0]} rows "
                f"are not, e.g. row {bad[0]} has norm {norms[bad[0]]:.4g}"
            )
    return arr


def as_ids(ids: np.ndarray, what: str, n: int | None = None, unique: bool = True) -> np.ndarray:
    """Return a C-contiguous int64 1-D id array, rejecting negatives (-1 means 'missing') and duplicates."""
    arr = np.asarray(ids)
    if arr.ndim != 1:
        raise IndexInputError(f"{what} must be a 1-D array; got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise IndexInputError(f"{what} must be integers (int64); got dtype {arr.dtype}")
    arr = np.ascontiguousarray(arr, dtype=np.int64)
    if n is not None and arr.shape[0] != n:
        raise IndexInputError(f"{what} has {arr.shape[0]} entries but there are {n} vectors")
    if arr.size and arr.min() < 0:
        raise IndexInputError(f"{what} must be >= 0 (-1 marks a missing result); got {arr.min()}")
    if unique and arr.size:
        uniq, counts = np.unique(arr, return_counts=True)
        if uniq.size != arr.size:
            raise IndexInputError(f"{what} must be unique; duplicated: {uniq[counts > 1][:5].tolist()}")
    return arr


def _check_kind(kind: str) -> None:
    if kind not in INDEX_KINDS:
        raise IndexInputError(f"unknown index kind {kind!r}; expected one of {INDEX_KINDS}")


# ----------------------------------------------------------------------------------------------------------------
# sizing rules


def default_nlist(n: int, n_train: int) -> int:
    """~4*sqrt(n) lists, capped so every list gets >= 39 training points; below _MIN_NLIST means 'too few for IVF'.

    With the default train_sample (100k) the cap is 2564 lists, reached at ~410k vectors; past a few million vectors
    lists grow long enough to slow queries, so raise train_sample (and the build time) with the collection."""
    cap = min(_MAX_NLIST, n_train // _MIN_POINTS_PER_CENTROID)
    return min(max(_MIN_NLIST, round(4 * math.sqrt(max(n, 1)))), cap)


def default_nprobe(nlist: int) -> int:
    """Lists probed per query: enough for recall@10 >= 0.95 on clustered embeddings at ~4*sqrt(n) lists."""
    return max(1, min(nlist, max(16, math.ceil(nlist / 128))))


def default_pq_m(dim: int) -> int:
    """Largest divisor of dim that is <= dim/4: one byte per ~4 dimensions. At D=512 this doubled no-refine
    recall@10 over dim/8 (0.47 -> 0.67 on the benchmark data) for 64 more bytes per vector."""
    target = max(1, dim // 4)
    return max(m for m in range(1, target + 1) if dim % m == 0)


def estimate_memory_bytes(kind: str, n: int, dim: int, params: IndexParams = IndexParams()) -> int:
    """Rough resident size of an index of `kind` over n vectors (ids and bookkeeping included)."""
    _check_kind(kind)
    idmap = 8 + 40  # id_map entry plus an unordered_map node for the reverse map
    nlist = default_nlist(n, min(n, params.train_sample)) if params.ivf_nlist is None else params.ivf_nlist
    if kind == "flat":
        return n * (4 * dim + idmap)
    if kind == "hnsw":
        links = int(4 * 2 * params.hnsw_m * 1.1) + 16  # level-0 links (2M) plus upper levels, offsets, level
        return n * (4 * dim + links + idmap)
    if kind == "ivf_flat":
        return n * (4 * dim + 8) + nlist * 4 * dim
    pq_m = params.pq_m or default_pq_m(dim)
    size = n * (pq_m + 8) + nlist * 4 * dim + 256 * 4 * dim
    if params.pq_refine:
        size += n * (4 * dim + idmap)
    return size


# Benchmark at 1M x 512 on 2 shared cores (scripts/bench_index.py): ivf_flat built in 74 s and reached recall@10 0.984
# at 1.3 ms p50 per query; HNSW (M=32, efConstruction=64) took 706 s to build and plateaued at recall@10 0.90 even
# with efSearch=1024 (6.1 ms), so the approximate default is ivf_flat.
PREFERRED_APPROX_KIND = "ivf_flat"


def choose_index_kind(n: int, dim: int, memory_budget_bytes: int, flat_max: int = 100_000) -> str:
    """'flat' up to flat_max vectors; above that ivf_flat (fastest to build at recall@10 >= 0.95 in the benchmark),
    hnsw if only that fits, and 'ivf_pq' (meant without refine, see auto_params) when full vectors do not fit."""
    if n < 0 or dim < 1:
        raise IndexInputError(f"need n >= 0 and dim >= 1; got n={n}, dim={dim}")
    fits = {k: estimate_memory_bytes(k, n, dim) <= memory_budget_bytes for k in ("flat", "hnsw", "ivf_flat")}
    if n <= flat_max and fits["flat"]:
        return "flat"
    for kind in dict.fromkeys((PREFERRED_APPROX_KIND, "ivf_flat", "hnsw")):
        if fits[kind]:
            return kind
    return "ivf_pq"


def auto_params(kind: str, params: IndexParams = IndexParams()) -> IndexParams:
    """Params matching a choose_index_kind() answer: its 'ivf_pq' is the budget kind, so it drops the refine store."""
    _check_kind(kind)
    return replace(params, pq_refine=False) if kind == "ivf_pq" else params


# ----------------------------------------------------------------------------------------------------------------
# construction


def _own(outer: faiss.Index, inner: faiss.Index) -> None:
    """Hand `inner` to `outer` so the returned index owns its parts after the builder's locals go away."""
    inner.this.disown()
    outer.own_fields = True


def _train_sample(vectors: np.ndarray, limit: int, seed: int) -> np.ndarray:
    if vectors.shape[0] <= limit:
        return vectors
    rows = np.sort(np.random.default_rng(seed).choice(vectors.shape[0], size=limit, replace=False))
    return vectors[rows]


def _new_ivf(kind: str, dim: int, nlist: int, params: IndexParams, pq_m: int, pq_bits: int, seed: int):
    quantizer = faiss.IndexFlatIP(dim)
    if kind == "ivf_flat":
        ivf = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
    else:
        ivf = faiss.IndexIVFPQ(quantizer, dim, nlist, pq_m, pq_bits, faiss.METRIC_INNER_PRODUCT)
    _own(ivf, quantizer)
    ivf.cp.seed = seed
    ivf.cp.spherical = True  # centroids of unit vectors stay on the sphere, which IP assignment expects
    ivf.nprobe = params.ivf_nprobe if params.ivf_nprobe is not None else default_nprobe(nlist)
    ivf.nprobe = max(1, min(ivf.nprobe, nlist))
    return ivf


def _flat(dim: int) -> faiss.Index:
    inner = faiss.IndexFlatIP(dim)
    index = faiss.IndexIDMap2(inner)
    _own(index, inner)
    return index


def build_index(
    vectors: np.ndarray, ids: np.ndarray, kind: str, params: IndexParams = IndexParams(), seed: int = 0
) -> faiss.Index:
    """Build a `kind` index over (vectors, ids); falls back to fewer lists / PQ bits or to 'flat' when n is too small
    to train the quantisers (index_kind() says what was built). The result supports add_vectors and remove_ids."""
    _check_kind(kind)
    x = as_vectors(vectors, "vectors")
    ids64 = as_ids(ids, "ids", n=x.shape[0])
    n, dim = x.shape
    n_train = min(n, params.train_sample)

    if kind == "flat":
        index = _flat(dim)
    elif kind == "hnsw":
        inner = faiss.IndexHNSWFlat(dim, params.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        inner.hnsw.efConstruction = params.hnsw_ef_construction
        inner.hnsw.efSearch = params.hnsw_ef_search
        index = faiss.IndexIDMap2(inner)
        _own(index, inner)
    else:
        index = _build_ivf(x, kind, dim, n, n_train, params, seed)
    if n:
        index.add_with_ids(x, ids64)
    return index


def _build_ivf(x: np.ndarray, kind: str, dim: int, n: int, n_train: int, params: IndexParams, seed: int):
    """Train an IVF index (not yet filled) or return an empty flat one when there is too little to train on."""
    nlist = default_nlist(n, n_train)
    if params.ivf_nlist is not None:
        nlist = min(params.ivf_nlist, n_train // _MIN_POINTS_PER_CENTROID)
    if nlist < _MIN_NLIST:
        log.info("%d vectors are too few to train %s (need %d); building flat", n, kind,
                 _MIN_NLIST * _MIN_POINTS_PER_CENTROID)
        return _flat(dim)
    pq_m, pq_bits = 0, 0
    if kind == "ivf_pq":
        pq_m = params.pq_m or default_pq_m(dim)
        if pq_m < 1 or dim % pq_m:
            raise IndexInputError(f"pq_m={pq_m} must divide the vector dim {dim}")
        pq_bits = min(8, int(math.log2(n_train / _MIN_POINTS_PER_CENTROID)))
        if pq_bits < _MIN_PQ_BITS:
            log.info("%d vectors are too few to train PQ codebooks; building flat", n)
            return _flat(dim)
    if params.ivf_nlist is not None and nlist != params.ivf_nlist:
        log.info("ivf_nlist %d reduced to %d: only %d training vectors", params.ivf_nlist, nlist, n_train)
    ivf = _new_ivf(kind, dim, nlist, params, pq_m, pq_bits, seed)
    ivf.train(_train_sample(x, n_train, seed))
    if kind == "ivf_pq" and params.pq_refine:
        refine = faiss.IndexRefineFlat(ivf)
        _own(refine, ivf)
        refine.k_factor = float(params.pq_refine_factor)
        index = faiss.IndexIDMap2(refine)
        _own(index, refine)
        return index
    return ivf


# ----------------------------------------------------------------------------------------------------------------
# inspection


def parts_of(index: faiss.Index) -> tuple[str, faiss.Index, faiss.Index | None]:
    """(kind, outer index, inner index or None): the outer is what callers hold, the inner is what IDMap2 wraps."""
    outer = faiss.downcast_index(index)
    if isinstance(outer, faiss.IndexIDMap2):
        inner = faiss.downcast_index(outer.index)
        if isinstance(inner, faiss.IndexFlat):
            return "flat", outer, inner
        if isinstance(inner, faiss.IndexHNSW):
            return "hnsw", outer, inner
        if isinstance(inner, faiss.IndexRefine) and isinstance(faiss.downcast_index(inner.base_index),
                                                               faiss.IndexIVFPQ):
            return "ivf_pq", outer, inner
        raise IndexInputError(f"not a crossmodal index: IndexIDMap2 around {type(inner).__name__}")
    if isinstance(outer, faiss.IndexIVFPQ):
        return "ivf_pq", outer, None
    if isinstance(outer, faiss.IndexIVFFlat):
        return "ivf_flat", outer, None
    raise IndexInputError(f"not a crossmodal index: {type(outer).__name__}")


def index_kind(index: faiss.Index) -> str:
    """Which of INDEX_KINDS `index` is (after any fallback build_index made)."""
    return parts_of(index)[0]


def ivf_of(index: faiss.Index) -> faiss.IndexIVF | None:
    """The IVF layer of an index, if any (ivf_flat, ivf_pq with or without refine)."""
    _, outer, inner = parts_of(index)
    if inner is None:
        return outer
    if isinstance(inner, faiss.IndexRefine):
        return faiss.downcast_index(inner.base_index)
    return None


def stored_ids(index: faiss.Index) -> np.ndarray:
    """Every id in the index (copy; order is internal). O(n): for checks and rebuilds, not per query."""
    _, outer, inner = parts_of(index)
    if inner is not None:
        return faiss.vector_to_array(outer.id_map).astype(np.int64, copy=False)
    invlists = outer.invlists
    chunks = []
    for list_no in range(outer.nlist):
        size = invlists.list_size(list_no)
        if size:
            chunks.append(faiss.rev_swig_ptr(invlists.get_ids(list_no), size).copy())
    return np.concatenate(chunks).astype(np.int64, copy=False) if chunks else np.empty(0, dtype=np.int64)


def sample_ids(index: faiss.Index, n: int, seed: int = 0) -> np.ndarray:
    """Up to n stored ids, read without copying the index: positions of the id map, or the first
    non-empty inverted lists from a random start."""
    _, outer, inner = parts_of(index)
    rng = np.random.default_rng(seed)
    if inner is not None:
        size = outer.id_map.size()
        if size != outer.ntotal:
            raise IndexInputError(f"its id map holds {size} ids for {outer.ntotal} vectors")
        if not size:
            return np.empty(0, dtype=np.int64)
        id_map = faiss.rev_swig_ptr(outer.id_map.data(), size)
        return id_map[rng.choice(size, size=min(n, size), replace=False)].astype(np.int64)
    invlists, found, start = outer.invlists, [], int(rng.integers(max(outer.nlist, 1)))
    for step in range(outer.nlist):
        list_no = (start + step) % outer.nlist
        size = invlists.list_size(list_no)
        if size:
            found.append(faiss.rev_swig_ptr(invlists.get_ids(list_no), size)[:n].copy())
            if sum(map(len, found)) >= n:
                break
    return np.concatenate(found)[:n].astype(np.int64) if found else np.empty(0, dtype=np.int64)


def index_memory_bytes(index: faiss.Index) -> int:
    """Serialized size of the index, counted while streaming so a large index is not copied in memory."""
    total = 0

    def count(chunk: bytes) -> int:
        nonlocal total
        total += len(chunk)
        return len(chunk)

    writer = faiss.PyCallbackIOWriter(count)
    faiss.write_index(index, writer)
    del writer
    return total


# ----------------------------------------------------------------------------------------------------------------
# mutation


def add_vectors(index: faiss.Index, vectors: np.ndarray, ids: np.ndarray) -> None:
    """Add vectors under new ids; ids already in the index are refused (FAISS would silently keep both)."""
    x = as_vectors(vectors, "vectors", dim=index.d)
    ids64 = as_ids(ids, "ids", n=x.shape[0])
    if not x.shape[0]:
        return
    clash = ids64[np.isin(ids64, stored_ids(index))]
    if clash.size:
        raise IndexInputError(f"ids already in the index: {clash[:5].tolist()}")
    index.add_with_ids(x, ids64)


def remove_ids(index: faiss.Index, ids: np.ndarray) -> int:
    """Remove ids (absent ones are ignored) and return how many were removed.

    flat / ivf_flat / ivf_pq without refine delete in place. hnsw and refined ivf_pq cannot delete in FAISS, so they
    are rebuilt from their stored vectors without the removed ids: correct, but as slow as a fresh build (HNSW) or a
    re-add (IVF-PQ), and it needs a transient copy of the kept vectors. Prefer the ivf kinds for frequent deletions.
    """
    kind, outer, inner = parts_of(index)
    drop = as_ids(ids, "ids", unique=False)
    if not drop.size or not outer.ntotal:
        return 0
    if inner is None or isinstance(inner, faiss.IndexFlat):
        return int(outer.remove_ids(faiss.IDSelectorBatch(drop)))
    current = stored_ids(outer)
    keep = ~np.isin(current, drop)
    removed = int(current.size - keep.sum())
    if removed:
        log.info("rebuilding %s index without %d ids (%d kept)", kind, removed, int(keep.sum()))
        kept_vectors = inner.reconstruct_n(0, outer.ntotal)[keep]
        outer.reset()
        if kept_vectors.shape[0]:
            outer.add_with_ids(kept_vectors, current[keep])
    return removed
