"""Why an item is on a user's list, in terms of the items they liked: "because you liked #12
(its nearest liked item by content), "3 people who liked #40 also liked this", "same label 7 as
#12", "part of the same file notes.jsonl as #9", or "popular: liked by 5 people" for a user
with no history. Every reason names a real item of the user's history (id and name) or a
count from the feedback; the core passes the names and the nearest liked item."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from crossmodal.recommend.graph import ItemGraph

MAX_REASONS = 4


def _people(n: int) -> str:
    return f"{n} {'person' if n == 1 else 'people'}"


def reasons(item: int, history: Sequence[int], graph: ItemGraph | None, names: Mapping[int, str], *,
            nearest: int | None, own_likes: set[int], likers: int, used: str) -> list[dict[str, Any]]:
    """The reasons ``item`` is recommended, strongest first: ``nearest`` is the liked item
    closest to it by content (None when content did not score it), ``history`` the user's
    liked or clicked items (most recent first), ``own_likes`` the same as a set (the user is
    not one of the "people" who liked both), ``likers`` the users who liked the item."""
    out: list[dict[str, Any]] = []

    def named(h: int) -> dict[str, Any]:
        return {"item": int(h), "name": names.get(h, f"item {h}")}

    if nearest is not None:
        out.append({"kind": "liked", **named(nearest), "text": f"because you liked #{nearest} {names.get(nearest, '')}"
                    .rstrip()})
    if graph is not None and history:
        best_co: tuple[int, int] | None = None
        shared: dict[tuple[str, str, str], int] = {}
        for h in history:
            for link in graph.links(h, item):
                if link.kind == "co_liked":
                    common = link.users - (1 if item in own_likes and h in own_likes else 0)
                    if common > 0 and (best_co is None or common > best_co[1]):
                        best_co = (h, common)
                else:
                    shared.setdefault((link.kind, link.key or "", link.value or ""), h)
        if best_co is not None:
            h, common = best_co
            out.append({"kind": "co_liked", **named(h), "users": common,
                        "text": f"{_people(common)} who liked #{h} {names.get(h, '')} also liked this"})
        for (kind, key, value), h in shared.items():
            if kind == "meta":
                out.append({"kind": "meta", "key": key, "value": value, **named(h),
                            "text": f"same {key} {value} as #{h} {names.get(h, '')}"})
            else:
                shown = value.replace("\\", "/").rsplit("/", 1)[-1]
                out.append({"kind": "file", "file": shown, **named(h),
                            "text": f"part of the same file {shown} as #{h} {names.get(h, '')}"})
    if (used == "popular" or not out) and likers:
        out.append({"kind": "popular", "users": likers, "text": f"popular: liked by {_people(likers)}"})
    if not out:
        out.append({"kind": "collaborative", "text": "liked by people whose likes resemble yours"}
                   if used in ("collaborative", "hybrid") else
                   {"kind": "varied", "text": "a varied pick: no one has liked it yet"})
    return out[:MAX_REASONS]
