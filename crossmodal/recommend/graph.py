"""The related-items graph: items linked by what they share, for explanations ("same label 3 as
the image you liked") and to widen a list whose own source scores only a few items.

Three kinds of link, each with a weight in (0, 1]:

- ``meta``: the same value of a metadata key named in ``[recommend] graph_keys`` (label,
  speaker, album...). A group of n items links each pair with weight 1 / log2(1 + n), so a
  small group (one speaker's five clips) says more than a large one (every image of a digit).
- ``file``: segments of the same file (items whose uris differ only after ``#``, such as the
  lines of one item list), weighted the same way by how many items the file holds.
- ``co_liked``: users who liked (or clicked) one also liked the other. c users in common out
  of n_a and n_b who liked each weigh c / sqrt(n_a n_b), the cosine of the two items' columns
  of the user x item matrix.

Groups larger than ``[recommend] graph_max_group`` link nothing: "everything in one big list"
relates nothing in particular. The graph is kept by its groups and co-like counts rather than
as an edge list (a label of 800 items would be 640,000 edges); building it from the catalog's
fields and the interactions takes milliseconds, so it is rebuilt per catalog generation and
feedback fingerprint instead of stored.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

from crossmodal.recommend.interactions import Interactions

KINDS = ("co_liked", "meta", "file")


@dataclass(frozen=True)
class Link:
    """One reason two items are related: its kind, what they share (a metadata key and value,
    or a file), and its weight; ``users`` is how many users liked both, for co_liked."""

    kind: str
    weight: float
    key: str | None = None
    value: str | None = None
    users: int = 0


def file_of(uri: str) -> str:
    """The file a uri is a segment of: the part before ``#`` (an item list's ``list.jsonl#L3``)."""
    return uri.split("#", 1)[0]


@dataclass
class ItemGraph:
    """Groups of items that share a metadata value or a file, and co-like counts."""

    groups: dict[tuple[str, str, str], np.ndarray] = field(default_factory=dict)
    member_of: dict[int, list[tuple[str, str, str]]] = field(default_factory=dict)
    co: dict[int, dict[int, int]] = field(default_factory=dict)
    likers: dict[int, int] = field(default_factory=dict)

    @classmethod
    def build(cls, fields: Mapping[int, Mapping], interactions: Interactions | None, keys: Iterable[str],
              max_group: int) -> ItemGraph:
        """From the catalog's filter fields (modality, uri, meta per item) and every user's
        feedback (None: no co-likes, as when collaborative signal is off)."""
        wanted = tuple(keys)
        raw: dict[tuple[str, str, str], list[int]] = defaultdict(list)
        for item, f in fields.items():
            meta = f.get("meta") or {}
            for key in wanted:
                value = meta.get(key)
                if value not in (None, ""):
                    raw[("meta", key, str(value))].append(int(item))
            uri = f.get("uri") or ""
            if "#" in uri:
                raw[("file", "file", file_of(uri))].append(int(item))
        graph = cls()
        for group, members in raw.items():
            if 2 <= len(members) <= max_group:
                graph.groups[group] = np.array(sorted(members), dtype=np.int64)
                for item in members:
                    graph.member_of.setdefault(item, []).append(group)
        if interactions is not None and len(interactions):
            positive = interactions.values > 0
            by_user: dict[int, list[int]] = defaultdict(list)
            for row, col in zip(interactions.rows[positive], interactions.cols[positive]):
                by_user[int(row)].append(int(interactions.items[col]))
            for items in by_user.values():
                for a in items:
                    graph.likers[a] = graph.likers.get(a, 0) + 1
                    row = graph.co.setdefault(a, {})
                    for b in items:
                        if b != a:
                            row[b] = row.get(b, 0) + 1
        return graph

    def group_weight(self, group: tuple[str, str, str]) -> float:
        return 1.0 / math.log2(1 + len(self.groups[group]))

    def links(self, a: int, b: int) -> list[Link]:
        """Every link between items ``a`` and ``b``, strongest first."""
        out = []
        common = self.co.get(a, {}).get(b, 0)
        if common:
            out.append(Link("co_liked", common / math.sqrt(self.likers[a] * self.likers[b]), users=common))
        theirs = set(self.member_of.get(b, ()))
        for group in self.member_of.get(a, ()):
            if group in theirs:
                out.append(Link(group[0], self.group_weight(group), key=group[1], value=group[2]))
        return sorted(out, key=lambda link: -link.weight)

    def scores(self, history: Mapping[int, float], items: np.ndarray, kinds: Iterable[str] = KINDS) -> np.ndarray:
        """For each of ``items``: the summed link weight from the user's ``history`` (item ->
        the user's positive weight for it) over links of ``kinds``, scaled so the best is 1
        (all 0 without links)."""
        index = {int(i): n for n, i in enumerate(items)}
        out = np.zeros(len(items), dtype=np.float64)
        kinds = set(kinds)
        for h, w in history.items():
            for group in self.member_of.get(int(h), ()) if kinds - {"co_liked"} else ():
                if group[0] not in kinds:
                    continue
                gw = w * self.group_weight(group)
                for member in self.groups[group]:
                    n = index.get(int(member))
                    if n is not None and member != h:
                        out[n] += gw
            for other, common in self.co.get(int(h), {}).items() if "co_liked" in kinds else ():
                n = index.get(other)
                if n is not None:
                    out[n] += w * common / math.sqrt(self.likers[int(h)] * self.likers[other])
        top = float(out.max()) if len(out) else 0.0
        return out / top if top > 0 else out

    def counts(self) -> dict[str, int]:
        """Groups by kind and co-liked pairs (for a description of the graph)."""
        by_kind = {kind: 0 for kind in KINDS}
        for kind, _, _ in self.groups:
            by_kind[kind] += 1
        by_kind["co_liked"] = sum(len(row) for row in self.co.values()) // 2
        return by_kind
