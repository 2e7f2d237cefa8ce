"""Every tunable of indexing and search in one place, with defaults that work.

Values can be overridden from a TOML file (``crossmodal.toml`` in the working folder, or the
file named by ``CROSSMODAL_CONFIG``) with one table per dataclass below, e.g.
``[index] memory_budget_mb = 2048``.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from crossmodal.errors import ConfigError

DEFAULT_ROOT = Path("indexes")
"""Where collections named without a path live."""
DEFAULT_COLLECTION = "default"


@dataclass(frozen=True)
class IngestSettings:
    """How files become items."""

    workers: int = -1
    """Worker processes that decode and embed whole batches, one torch thread each; 0 does
    everything in the indexing process; -1 (auto) means one per core, up to 8 (0 on one core,
    or when the model is on a GPU). On this 2-core machine two workers index about 2,370
    items/s against 1,880 in one process (scripts/bench_ingest.py --copies 8)."""
    batch_size: int = 64
    """Items per model call and per catalog transaction (the unit a killed run can lose)."""
    executor: str = "local"
    """Where batches are decoded and embedded: ``local`` (the process pool above) or ``ray`` (Ray
    workers, one CPU each, ``workers`` of them or one per CPU of the cluster; `ingest/ray_executor.py`).
    Measured against each other in docs/scale.md, "Ingest on Ray"."""
    cluster: str = ""
    """The Ray cluster for ``executor = "ray"`` (host:port of its head); empty starts a local Ray."""
    text_max_chars: int = 800
    text_min_chars: int = 200
    max_image_pixels: int = 64_000_000
    max_audio_seconds: float = 3 * 3600.0
    max_text_bytes: int = 20_000_000
    max_image_bytes: int = 256 << 20
    """Most memory one decoded image may take: width x height x bytes a pixel in Pillow's mode
    (4 for RGB, RGBA and CMYK, 2 for 16-bit grey, 1 for grey and palette), read from the header
    before any pixel is decoded. 256 MiB is 64 megapixels in the widest mode; a worker holds its
    batch's images decoded together, so this bounds what one file adds to it."""
    max_audio_bytes: int = 1 << 30
    """Most memory one decoded audio file may take as float32: frames x channels x 4 bytes,
    checked from the header (WAV, FLAC, OGG, AIFF) and again while decoding (MP3, or a header
    that lies). 1 GiB is 50 minutes of 44.1 kHz stereo; resampling for the model adds a mono
    copy and the resampled clip, together at most as much again."""
    image_tower: str = "auto"
    """How images are embedded for the index: ``int8`` quantises the image tower's Linear layers
    once per run (`aligner.index_encoder`), ``fp32`` keeps the model's weights, ``auto`` is int8
    for transformer towers (open_clip ViTs) on a CPU and fp32 for the rest (the starter's small
    CNN gains nothing from it). Measured figures: docs/performance.md, "Indexing"."""


@dataclass(frozen=True)
class IndexSettings:
    """How vectors become indexes (FAISS, or Milvus collections)."""

    kind: str = "auto"
    """auto, flat, hnsw, ivf_flat or ivf_pq; auto follows size and the memory budget."""
    flat_max: int = 100_000
    """Largest index searched exactly under ``auto``."""
    memory_budget_mb: int = 8192
    recall_sample: int = 1000
    """Queries used to measure an approximate index's recall@10 against exact search."""
    build_threads: int = 0
    """OpenMP threads while building indexes (k-means, adding vectors); 0 means all cores."""
    fusion_weights: dict[str, float] = field(default_factory=lambda: {"image": 0.8, "audio": 0.8, "text": 0.2})
    """Weights of each modality's vector in the fused vector of a multimodal item (fused =
    normalise(sum of weight * vector)). The media 0.8 / caption 0.2 default is measured by
    scripts/measure_fusion.py (docs/recommendation.md, "Fusion weights"): it loses at most 0.3
    point of mAP to caption-heavy weights when every caption is right and keeps items findable
    when captions are wrong (item-to-item mAP 0.996 and 0.995 with 20% and 40% wrong captions,
    against 0.85 and 0.68 for equal weights)."""
    backend: str = ""
    """Where a new collection keeps its indexes: faiss or milvus; empty means faiss. An existing
    collection keeps its own (its manifest says which); `crossmodal migrate` moves it."""
    milvus_uri: str = ""
    """Milvus server for the milvus backend (http://host:19530); empty means Milvus Lite in the
    collection folder (milvus.db)."""
    milvus_token: str = ""
    """Milvus server token (user:password or API key); never written to the manifest. Also read
    from the CROSSMODAL_MILVUS_TOKEN environment variable."""


@dataclass(frozen=True)
class SearchSettings:
    """How the planner turns a query into index searches and merges them."""

    fusion: str = "early"
    """early (weighted sum of part vectors, one search) or late (one search per part, then merge)."""
    late_merge: str = "score"
    """Late fusion merge: score (weighted sum of cosines) or rrf (reciprocal-rank fusion)."""
    rrf_k: int = 60
    overfetch: int = 4
    """Candidates fetched per target are max(k * overfetch, min_fetch)."""
    min_fetch: int = 50
    selective_fraction: float = 0.25
    """Filters allowing at most this fraction of an index run inside FAISS (ID selectors);
    wider ones are applied to over-fetched results."""
    embed_cache_size: int = 256
    query_max_audio_seconds: float = 60.0
    """Longest audio clip accepted as a query part (checked from the header before decoding)."""
    query_max_image_pixels: int = 40_000_000
    query_max_file_bytes: int = 32 << 20
    """Largest query file read (an upload is also bounded by ``[server] max_upload_mb``)."""
    query_max_image_bytes: int = 64 << 20
    """Most memory a query image may take decoded (pixels x bytes a pixel in its mode, from the
    header, before decoding): 16 megapixels in RGB. A 150 KB PNG can promise 40 megapixels,
    160 MiB decoded and over a GB of model preprocessing; it is refused with 422."""
    query_max_audio_bytes: int = 64 << 20
    """Most memory a query clip may take decoded as float32 (frames x channels x 4 bytes, from
    the header and again while decoding): a minute of 96 kHz stereo fits; a 340 KB FLAC of
    silence promising 655,350 Hz x 8 channels for a minute (1.2 GB) is refused with 422."""
    max_concurrent_media: int = 2
    """Query files decoded and embedded at once in one process; more wait their turn, so N
    parallel uploads cannot hold N decoded images or clips in memory together."""
    weak_relevance: float = 0.5
    """When even the best match's calibrated relevance is below this, a search says that nothing
    is close and the model may not know this kind of content (chosen from measured in-domain and
    out-of-domain queries; docs/search.md, "Scores and calibration")."""
    collapse_duplicates: bool = True
    """Show each group of near-duplicates (the same content in other files: re-encoded, resized,
    at another volume) as one result with its copies listed; `search --no-collapse` or the API's
    ``collapse`` field shows them all."""
    duplicate_threshold: float = 0.98
    """Least cosine of two items' content fingerprints (12x12 grey thumbnails, 32x12 sound
    energy maps) for them to count as copies; measured by scripts/bench_duplicates.py
    (docs/search.md, "Near-duplicates")."""
    text_tower: str = "int8"
    """How a query's text is embedded (indexing embeds texts with the model as it is): ``int8``
    quantises the text tower's Linear layers once, at load (ViT-B-32: 19 ms a query against
    168 ms for the model's own forward; the starter's held-out recall@1 and mAP move by at most
    0.001 point); ``fp32`` keeps the model's weights, the same vectors to rounding (66 ms). Both
    skip the padding positions and batch concurrent queries (`aligner.fast_text`;
    docs/performance.md, "Query latency")."""
    torch_threads: int = 1
    """Torch threads for the model in a serving process (0: torch's default, all cores). A query
    is one small forward and concurrent queries run in threads of their own; measured on 2 busy
    cores, one query text took 17 ms through the int8 tower with 1 thread and 154 ms with 2
    (docs/performance.md, "Query latency")."""
    faiss_threads: int = 1
    """OpenMP threads for FAISS searches in a serving process. One query runs on one thread
    anyway, and on a busy machine extra threads spin and wait: measured on 2 cores under load,
    a 20k flat search took 16 ms with 2 threads and 0.17 ms with 1. 0 means all cores."""


@dataclass(frozen=True)
class PersonalSettings:
    """How feedback becomes a user's preference vector and reranks results."""

    beta: float = 0.3
    """Final score = (1 - beta) * relevance + beta * cos(user, item); 0 for a user without history."""
    half_life_days: float = 30.0
    like: float = 1.0
    dislike: float = -1.0
    click: float = 0.25
    mmr_lambda: float = 1.0
    """Maximal marginal relevance: 1.0 is off; lower values trade relevance for diversity."""


@dataclass(frozen=True)
class RecommendSettings:
    """How "for you" lists and "more like this" are made (docs/recommendation.md). Events weigh
    as in ``[personal]`` (like, dislike, click)."""

    collaborative: bool = True
    """Use every user's feedback (implicit-feedback ALS) besides the user's own; off for a
    single-user install, or to keep users' feedback from shaping each other's lists (the stored
    model is then deleted)."""
    factors: int = 16
    """Latent factors per user and item of the collaborative model."""
    regularization: float = 0.1
    iterations: int = 15
    alpha: float = 20.0
    """Confidence of an observed pair: 1 + alpha * |net weight| (Hu, Koren and Volinsky 2008)."""
    min_users: int = 2
    """Fewer users with feedback than this fit no collaborative model (nothing to collaborate on)."""
    user_history: float = 5.0
    """c_u in s_u = n_u / (n_u + c_u): how many liked items a user needs before their own taste
    weighs as much as popularity, and co-likes half as much as they can (the collaborative
    weight is s_u * n_i / (n_i + c_i))."""
    item_history: float = 3.0
    """c_i in the same weight: how many users an item needs before its co-likes count half."""
    mmr_lambda: float = 0.7
    """Maximal marginal relevance of a list: 1.0 ranks by score alone, lower keeps it varied."""
    graph: bool = True
    """The related-items graph (shared metadata, segments of one file, co-likes): explanations
    name related liked items, and it ranks what a thin list's method could not score."""
    graph_keys: list[str] = field(default_factory=lambda: ["label", "group", "speaker", "artist", "album", "author"])
    """Metadata keys whose shared values link items in the graph."""
    graph_max_group: int = 200
    """Items sharing one value (or file) beyond this link nothing: too common to say why."""
    co_liked: float = 0.5
    """Share of item-to-item co-likes (the graph's links from the user's liked items) in a
    hybrid's collaborative part, ALS having the rest; 0: ALS alone (docs/recommendation.md)."""


@dataclass(frozen=True)
class ServerSettings:
    """The HTTP server: who may use it, and bounds on what one request may cost."""

    max_upload_mb: float = 32.0
    """Whole request body limit; larger requests get 413."""
    threads: int = 8
    """Waitress worker threads (concurrent requests)."""
    max_k: int = 100
    connection_limit: int = 1000
    """Open connections served at once; more wait in the listen backlog. A half-sent request holds
    a connection (never a thread), so this must stay well above the few hundred a slow or hostile
    client can open. Each connection may need two file descriptors (its socket and a spooled
    body): `serve` raises the process's soft descriptor limit as far as the hard limit allows and
    lowers this to fit, with a warning."""
    channel_timeout: int = 30
    """Seconds a connection may send and receive nothing (a request never finished, an idle
    keep-alive) before it is closed; a request being answered is never cut."""
    cleanup_interval: int = 5
    """Seconds between sweeps for connections past ``channel_timeout``, so one lives at most
    the sum."""
    max_header_kb: int = 64
    """Largest request line and headers of one request, in KiB (waitress buffers them in memory
    for every open connection); larger requests get 431."""
    token: str = ""
    """Secret that protects the API and the page (Bearer header, or a login form in the browser).
    Empty: no protection, which is only allowed on a loopback address. Also read from the
    CROSSMODAL_TOKEN environment variable; `serve --token` overrides both."""
    allowed_hosts: list[str] = field(default_factory=list)
    """Host header values accepted besides the loopback names and the address served on (a
    page on another site that resolves to this server cannot use it)."""
    session_hours: float = 12.0
    """How long a browser login with the token lasts."""
    max_json_kb: float = 64.0
    """Largest JSON request body; larger ones get 413 (a query or feedback is a few hundred bytes)."""
    max_json_depth: int = 16
    """Deepest nesting accepted in a JSON body; deeper bodies get 400 before they are parsed."""


@dataclass(frozen=True)
class Settings:
    ingest: IngestSettings = field(default_factory=IngestSettings)
    index: IndexSettings = field(default_factory=IndexSettings)
    search: SearchSettings = field(default_factory=SearchSettings)
    personal: PersonalSettings = field(default_factory=PersonalSettings)
    server: ServerSettings = field(default_factory=ServerSettings)
    recommend: RecommendSettings = field(default_factory=RecommendSettings)

    def updated(self, **sections: dict[str, Any]) -> Settings:
        """A copy with some values changed, checked like a settings file's, e.g.
        ``settings.updated(index={"kind": "flat"})``; None values are left as they are (an
        option the user did not give)."""
        changes = {}
        for name, values in sections.items():
            if name not in {f.name for f in fields(self)}:
                raise ConfigError(f"unknown settings section {name!r}")
            given = {k: v for k, v in values.items() if v is not None}
            if given:
                changes[name] = _apply(getattr(self, name), given, f"[{name}]")
        return replace(self, **changes)


def _apply(section: Any, values: dict[str, Any], where: str) -> Any:
    known = {f.name: f for f in fields(section)}
    unknown = set(values) - set(known)
    if unknown:
        raise ConfigError(f"{where}: unknown setting(s) {sorted(unknown)}; known: {sorted(known)}")
    for name, value in values.items():
        current = getattr(section, name)
        if isinstance(current, bool):
            fits = isinstance(value, bool)
        elif isinstance(current, float):
            fits = isinstance(value, (int, float)) and not isinstance(value, bool)
        else:
            fits = isinstance(value, type(current)) and not isinstance(value, bool)
        if not fits:
            raise ConfigError(f"{where}.{name}: expected {type(current).__name__}, got {value!r}")
    return replace(section, **values)


def load_settings(path: str | Path | None = None) -> Settings:
    """Defaults, overridden by a TOML file when one is given or found."""
    if path is None:
        env = os.environ.get("CROSSMODAL_CONFIG")
        path = Path(env) if env else Path("crossmodal.toml")
        if not env and not path.is_file():
            return Settings()
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"settings file {path} does not exist") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: unreadable settings ({exc})") from None
    base = Settings()
    sections = [f.name for f in fields(Settings)]
    unknown = set(data) - set(sections)
    if unknown:
        raise ConfigError(f"{path}: unknown section(s) {sorted(unknown)}; use {', '.join(f'[{s}]' for s in sections)}")
    return Settings(**{name: _apply(getattr(base, name), data.get(name, {}), f"{path} [{name}]") for name in sections})
