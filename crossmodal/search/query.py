"""What a search asks for and what it returns: queries with weighted parts, filters, results.

A query is built and validated here and nowhere else: the CLI, the HTTP server and Python
callers all hand their raw fields to `query_from_fields`, which names the field that is wrong.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from crossmodal.errors import QueryError
from crossmodal.media import MODALITIES
from crossmodal.storage.filters import Filters

TARGETS = MODALITIES
MAX_K = 1000
MAX_USER_CHARS = 200
MAX_TEXT_CHARS = 2000
QUERY_FIELDS = ("text", "image", "audio", "weights", "targets", "k", "user", "explain", "fusion", "merge", "filters",
                "min_relevance", "collapse")
FILTER_FIELDS = ("modalities", "uri_glob", "meta", "after", "before")
MAX_META_FILTERS = 32


@dataclass(frozen=True)
class QueryPart:
    """One part of a query, with a weight: text, an image or audio file, decoded media, or a
    ready vector. Files are decoded before planning (`crossmodal.core` does it); ``key``
    identifies decoded media by content, so a repeated upload embeds once."""

    modality: str
    text: str | None = None
    path: Path | None = None
    vector: np.ndarray | None = field(default=None, compare=False, repr=False)
    weight: float = 1.0
    media: Any = field(default=None, compare=False, repr=False)
    key: str | None = None

    def describe(self) -> str:
        if self.text is not None:
            return repr(self.text if len(self.text) <= 60 else self.text[:57] + "...")
        if self.path is not None:
            return self.path.name
        return "vector" if self.vector is not None else f"{self.modality} upload"

    def decoded(self, media: Any, key: str) -> QueryPart:
        """This part with its file's decoded media beside it."""
        return replace(self, media=media, key=key)

    def embedded(self, vector: np.ndarray) -> QueryPart:
        """This part with its vector, and its decoded media let go."""
        return replace(self, vector=vector, media=None)


@dataclass(frozen=True)
class Query:
    """A whole query: parts, where to look, how many, filters, who is asking, how to fuse."""

    parts: tuple[QueryPart, ...]
    targets: tuple[str, ...] = TARGETS
    k: int = 10
    filters: Filters = field(default_factory=Filters)
    user: str | None = None
    fusion: str | None = None
    late_merge: str | None = None
    explain: bool = False
    min_relevance: float | None = None
    """Drop results whose calibrated relevance is below this (0 to 1): top k with a threshold."""
    collapse: bool | None = None
    """Show each group of near-duplicates as one result with its copies listed; None: as
    `[search] collapse_duplicates` says."""

    def __post_init__(self) -> None:
        if not self.parts:
            raise QueryError("query: give at least one part: text, an image or an audio clip")
        for i, part in enumerate(self.parts):
            if part.modality not in MODALITIES:
                raise QueryError(f"parts[{i}].modality: {part.modality!r} is not one of {list(MODALITIES)}")
            # A part comes from text, a file (kept beside its decoded media, for `describe`) or a
            # vector; a vector may also travel with the text or file it was embedded from.
            sources = (part.text is not None) + (part.path is not None or part.media is not None)
            if sources > 1 or (sources == 0 and part.vector is None):
                raise QueryError(f"parts[{i}]: give exactly one of text, a file, or a vector")
            if part.modality == "text" and part.text is not None and not part.text.strip():
                raise QueryError(f"parts[{i}].text: the text is empty")
            if part.modality != "text" and part.text is not None:
                raise QueryError(f"parts[{i}]: a {part.modality} part needs a file, not text")
            if not np.isfinite(part.weight) or part.weight <= 0:
                raise QueryError(f"parts[{i}].weight: must be a positive number, got {part.weight!r}")
        object.__setattr__(self, "targets", parse_targets(self.targets))
        if isinstance(self.k, bool) or not isinstance(self.k, int) or not 1 <= self.k <= MAX_K:
            raise QueryError(f"k: must be an integer from 1 to {MAX_K}, got {self.k!r}")
        if self.fusion not in (None, "early", "late"):
            raise QueryError(f"fusion: {self.fusion!r} is not early or late")
        if self.late_merge not in (None, "score", "rrf"):
            raise QueryError(f"merge: {self.late_merge!r} is not score or rrf")
        bad = [m for m in self.filters.modalities if m not in MODALITIES]
        if bad:
            raise QueryError(f"filters.modalities: {bad[0]!r} is not one of {list(MODALITIES)}")
        if self.user is not None:
            check_user(self.user)
        if self.min_relevance is not None:
            object.__setattr__(self, "min_relevance", parse_relevance(self.min_relevance))


def parse_relevance(value: Any, name: str = "min_relevance") -> float | None:
    """A calibrated relevance threshold: a number from 0 to 1 (None or "" for none)."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise QueryError(f"{name}: expected a number from 0 to 1")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise QueryError(f"{name}: expected a number from 0 to 1, got {str(value)[:40]!r}") from None
    if not math.isfinite(number) or not 0.0 <= number <= 1.0:
        raise QueryError(f"{name}: expected a number from 0 to 1, got {number:g}")
    return number


def check_user(user: Any) -> str:
    """A user name: a non-empty string of at most 200 characters."""
    if not isinstance(user, str) or not user.strip() or len(user) > MAX_USER_CHARS:
        raise QueryError(f"user: must be a non-empty name of at most {MAX_USER_CHARS} characters")
    return user


def item_id_from(value: Any, name: str = "item") -> int:
    """A catalog item id from an int or a string of digits."""
    return _int(value, name, 1, 2**63 - 1)


def _singular(name: str) -> str:
    """'images' -> 'image': the web UI and people say the plural."""
    return name[:-1] if name.endswith("s") and name[:-1] in TARGETS else name


def parse_targets(targets: str | tuple[str, ...] | list[str] | None) -> tuple[str, ...]:
    """('joint',) or a subset of text, image, audio (plurals accepted); default every modality."""
    if targets is None:
        return TARGETS
    if not isinstance(targets, (str, list, tuple)) or not all(isinstance(t, str) for t in targets):
        raise QueryError("targets: expected a list of names or a comma-separated string")
    names = [_singular(t.strip().lower()) for t in (targets.split(",") if isinstance(targets, str) else targets)
             if t.strip()]
    bad = [t for t in names if t not in (*TARGETS, "joint")]
    if bad or not names:
        raise QueryError(f"targets: unknown target {bad[0] if bad else targets!r}; use text, image, audio or joint")
    if "joint" in names and len(names) > 1:
        raise QueryError("targets: 'joint' cannot be combined with modality targets")
    return tuple(dict.fromkeys(names))


def parse_weights(raw: str | list | tuple | None, count: int) -> list[float]:
    """One positive weight per query part, in the order text, image, audio: ``"0.7,0.3"`` or a list."""
    if raw is None or raw == "":
        return [1.0] * count
    values = raw.split(",") if isinstance(raw, str) else raw
    if not isinstance(values, (list, tuple)) or len(values) > 3:
        raise QueryError("weights: expected up to three comma-separated numbers or a list")
    try:
        weights = [float(w) for w in values if not isinstance(w, bool)]
    except (TypeError, ValueError):
        raise QueryError(f"weights: expected numbers, got {str(raw)[:60]!r}") from None
    if len(weights) != len(values):
        raise QueryError("weights: expected numbers, not true/false")
    if len(weights) != count:
        raise QueryError(f"weights: {len(weights)} weight(s) for {count} query part(s)")
    if not all(math.isfinite(w) and w > 0 for w in weights):
        raise QueryError("weights: each must be a positive number")
    return weights


def _int(value: Any, name: str, low: int, high: int) -> int:
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise QueryError(f"{name}: expected an integer from {low} to {high}")
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise QueryError(f"{name}: expected an integer from {low} to {high}, got {str(value)[:40]!r}") from None
    if not low <= number <= high:
        raise QueryError(f"{name}: expected an integer from {low} to {high}, got {number}")
    return number


def _str(value: Any, name: str, limit: int) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise QueryError(f"{name}: expected a string")
    if len(value) > limit:
        raise QueryError(f"{name}: longer than {limit} characters")
    return value


def _flag(value: Any, name: str) -> bool:
    if isinstance(value, bool) or value is None:
        return bool(value)
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("", "0", "false", "no", "off"):
        return False
    raise QueryError(f"{name}: expected true or false, got {text[:20]!r}")


def parse_time(value: Any, name: str) -> float | None:
    """Seconds since the epoch, from a number or an ISO date/time such as 2026-01-31 or 2026-01-31T12:00."""
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise QueryError(f"{name}: expected a finite time")
        return float(value)
    if not isinstance(value, str):
        raise QueryError(f"{name}: expected seconds since the epoch or an ISO date/time")
    try:
        return float(value)
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise QueryError(f"{name}: expected an ISO date/time or epoch seconds, got {value[:40]!r}") from None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


def filters_from_fields(raw: Any) -> Filters:
    """Filters from a mapping of raw fields (JSON object, or CLI options)."""
    if raw is None or isinstance(raw, Filters):
        return raw or Filters()
    if not isinstance(raw, Mapping):
        raise QueryError("filters: expected an object")
    unknown = set(raw) - set(FILTER_FIELDS)
    if unknown:
        raise QueryError(f"filters: unknown field(s) {sorted(map(str, unknown))[:10]}; use {list(FILTER_FIELDS)}")
    modalities = raw.get("modalities") or []
    if isinstance(modalities, str):
        modalities = [m for m in modalities.split(",") if m]
    if not isinstance(modalities, (list, tuple)) or not all(isinstance(m, str) for m in modalities):
        raise QueryError("filters.modalities: expected a list of modality names")
    modalities = [_singular(m.strip().lower()) for m in modalities]
    meta = raw.get("meta") or {}
    if not isinstance(meta, Mapping) or not all(isinstance(k, str) and isinstance(v, (str, int, float))
                                                and not isinstance(v, bool) for k, v in meta.items()):
        raise QueryError("filters.meta: expected an object of strings")
    if len(meta) > MAX_META_FILTERS:
        raise QueryError(f"filters.meta: at most {MAX_META_FILTERS} keys")
    return Filters(modalities=tuple(modalities), uri_glob=_str(raw.get("uri_glob"), "filters.uri_glob", 500),
                   meta={k: str(v) for k, v in meta.items()},
                   after=parse_time(raw.get("after"), "filters.after"),
                   before=parse_time(raw.get("before"), "filters.before"))


def query_from_fields(fields: Mapping[str, Any], *, max_k: int = MAX_K) -> Query:
    """A validated `Query` from raw fields, as a form, a JSON body or command-line options give
    them: ``text``; ``image`` and ``audio`` file paths; ``weights`` ("1,2" or a list, in the order
    text, image, audio); ``targets`` ("image,audio", a list, plurals accepted, or "joint"); ``k``;
    ``user``; ``explain``; ``fusion`` (early or late); ``merge`` (score or rrf); ``filters`` (an
    object with modalities, uri_glob, meta, after, before); ``min_relevance`` (0 to 1: drop weaker
    matches); ``collapse`` (true or false: near-duplicates as one result). Unknown fields are refused."""
    if not isinstance(fields, Mapping):
        raise QueryError("body: expected a JSON object")
    unknown = set(fields) - set(QUERY_FIELDS)
    if unknown:
        raise QueryError(f"body: unknown field(s) {sorted(map(str, unknown))[:10]}; use {list(QUERY_FIELDS)}")
    parts: list[QueryPart] = []
    text = _str(fields.get("text"), "text", MAX_TEXT_CHARS)
    if text is not None and text.strip():
        parts.append(QueryPart("text", text=text))
    for modality in ("image", "audio"):
        value = fields.get(modality)
        if value is not None and value != "":
            if not isinstance(value, (str, Path)):
                raise QueryError(f"{modality}: expected a file")
            parts.append(QueryPart(modality, path=Path(value)))
    if not parts:
        raise QueryError("query: give text, an image or an audio clip")
    weights = parse_weights(fields.get("weights"), len(parts))
    parts = [replace(p, weight=w) for p, w in zip(parts, weights)]
    user = fields.get("user")
    return Query(tuple(parts), targets=parse_targets(fields.get("targets") or None),
                 k=_int(fields.get("k", 10) if fields.get("k") is not None else 10, "k", 1, max_k),
                 filters=filters_from_fields(fields.get("filters")),
                 user=None if user is None or user == "" else check_user(user),
                 fusion=_str(fields.get("fusion"), "fusion", 10), late_merge=_str(fields.get("merge"), "merge", 10),
                 explain=_flag(fields.get("explain"), "explain"),
                 min_relevance=parse_relevance(fields.get("min_relevance")),
                 collapse=None if fields.get("collapse") in (None, "") else _flag(fields.get("collapse"), "collapse"))


@dataclass(frozen=True)
class SearchResult:
    """One hit: the catalog item, where it is, its score and what matched (plus, on request,
    each part of its score). ``score`` is what results are ranked by: the calibrated relevance
    (personalised when the query names a user with history), in [0, 1]; ``cosine`` is the raw
    cosine to the query and ``relevance`` the calibrated one without personalisation (None where
    the collection cannot calibrate the direction: then ``score`` is raw)."""

    id: int
    modality: str
    uri: str
    score: float
    start: float | None
    end: float | None
    matched: str
    text: str | None
    label: str | None
    explanation: dict[str, Any] | None = None
    cosine: float | None = None
    relevance: float | None = None
    copies: list[dict[str, Any]] = field(default_factory=list)
    """Near-duplicates of this item shown with it (id, uri, score each), best first."""

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        if self.explanation is None:
            out.pop("explanation")
        return out
