"""What a search asks for and what it returns: queries with weighted parts, filters, results.

These are plain values shared by the planner, the reranker and every interface (CLI, Python,
HTTP), so each validates once here and names the field that is wrong.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from crossmodal.errors import CrossmodalError

MODALITIES = ("text", "image", "audio")
TARGETS = ("text", "image", "audio")


class QueryError(CrossmodalError):
    """A query field is missing or invalid; the message names the field."""


@dataclass(frozen=True)
class QueryPart:
    """One part of a query: text, or an image or audio file (or a ready vector), with a weight."""

    modality: str
    text: str | None = None
    path: Path | None = None
    vector: np.ndarray | None = field(default=None, compare=False, repr=False)
    weight: float = 1.0

    def describe(self) -> str:
        if self.text is not None:
            return repr(self.text if len(self.text) <= 60 else self.text[:57] + "...")
        if self.path is not None:
            return self.path.name
        return "vector"


@dataclass(frozen=True)
class Filters:
    """Restrictions every result must pass; empty means none."""

    modalities: tuple[str, ...] = ()
    uri_glob: str | None = None
    meta: dict[str, str] = field(default_factory=dict)
    after: float | None = None
    before: float | None = None

    @property
    def active(self) -> bool:
        return bool(self.modalities or self.uri_glob or self.meta or self.after is not None
                    or self.before is not None)

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v not in ((), None, {})}


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

    def __post_init__(self) -> None:
        if not self.parts:
            raise QueryError("a query needs at least one part: text, image or audio")
        for i, part in enumerate(self.parts):
            if part.modality not in MODALITIES:
                raise QueryError(f"parts[{i}].modality: {part.modality!r} is not one of {list(MODALITIES)}")
            given = sum(x is not None for x in (part.text, part.path, part.vector))
            if given != 1:
                raise QueryError(f"parts[{i}]: give exactly one of text, a file, or a vector")
            if part.modality == "text" and part.path is None and part.vector is None and not (part.text or "").strip():
                raise QueryError(f"parts[{i}].text: the text is empty")
            if part.modality != "text" and part.text is not None:
                raise QueryError(f"parts[{i}]: a {part.modality} part needs a file, not text")
            if not np.isfinite(part.weight) or part.weight <= 0:
                raise QueryError(f"parts[{i}].weight: must be a positive number, got {part.weight!r}")
        parse_targets(self.targets)
        if isinstance(self.k, bool) or not isinstance(self.k, int) or not 1 <= self.k <= 1000:
            raise QueryError(f"k: must be an integer from 1 to 1000, got {self.k!r}")
        if self.fusion not in (None, "early", "late"):
            raise QueryError(f"fusion: {self.fusion!r} is not early or late")
        if self.late_merge not in (None, "score", "rrf"):
            raise QueryError(f"late_merge: {self.late_merge!r} is not score or rrf")
        bad = [m for m in self.filters.modalities if m not in MODALITIES]
        if bad:
            raise QueryError(f"filters.modalities: {bad[0]!r} is not one of {list(MODALITIES)}")
        if self.user is not None and (not self.user.strip() or len(self.user) > 200):
            raise QueryError("user: must be a non-empty name of at most 200 characters")


def parse_targets(targets: str | tuple[str, ...] | list[str] | None) -> tuple[str, ...]:
    """('joint',) or a subset of text, image, audio; default every modality."""
    if targets is None:
        return TARGETS
    names = [t.strip() for t in (targets.split(",") if isinstance(targets, str) else targets) if t.strip()]
    bad = [t for t in names if t not in (*TARGETS, "joint")]
    if bad or not names:
        raise QueryError(f"targets: unknown target {bad[0] if bad else targets!r}; use text, image, audio or joint")
    if "joint" in names and len(names) > 1:
        raise QueryError("targets: 'joint' cannot be combined with modality targets")
    return tuple(dict.fromkeys(names))


def parse_weights(text: str | None, count: int) -> list[float]:
    """``--weights 0.7,0.3``: one positive weight per query part, in the order the parts are given."""
    if text is None:
        return [1.0] * count
    try:
        weights = [float(w) for w in text.split(",")]
    except ValueError:
        raise QueryError(f"weights: expected comma-separated numbers, got {text!r}") from None
    if len(weights) != count:
        raise QueryError(f"weights: {len(weights)} weight(s) for {count} query part(s)")
    return weights


@dataclass(frozen=True)
class SearchResult:
    """One hit: the catalog item, where it is, its score and what matched (plus, on request,
    each part of its score)."""

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

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        if self.explanation is None:
            out.pop("explanation")
        return out
