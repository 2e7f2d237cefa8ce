"""Query filters as a Milvus filter expression, evaluated beside the vectors.

The expression may let through more than the catalog's filter (the planner checks every
candidate against the catalog and drops extras) but never less, since a miss cannot be
recovered: a uri glob becomes LIKE with ``*`` -> ``%`` and every other special character ->
``_``, and an item with several uris always passes it (only its first uri is stored). Milvus
2.3 servers accept only prefix patterns (``ab%``): for them the pattern is cut at its first
wildcard, and a glob that starts with one is not pushed down at all.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from crossmodal.storage.filters import Filters


def glob_to_like(pattern: str) -> str:
    """A LIKE pattern matching at least every string the shell-style glob matches: ``*`` is ``%``,
    and ``?``, a ``[...]`` class and any character LIKE treats specially become ``_``."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "*":
            if not out or out[-1] != "%":
                out.append("%")
        elif ch == "[":
            end = pattern.find("]", i + 2 if pattern[i + 1:i + 2] in ("^", "!", "]") else i + 1)
            out.append("_")
            if end != -1:
                i = end
        elif ch in "?%_\\":
            out.append("_")
        else:
            out.append(ch)
        i += 1
    return "".join(out)


def _literal(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def prefix_like(pattern: str) -> str | None:
    """The widest prefix pattern (``ab%``) matching everything ``pattern`` does; None when the
    pattern starts with a wildcard (nothing narrower than "everything")."""
    cut = min((i for i in (pattern.find("%"), pattern.find("_")) if i >= 0), default=-1)
    if cut < 0:
        return pattern
    return pattern[:cut] + "%" if cut > 0 else None


def filter_expression(filters: Filters | None, infix_like: bool = True) -> str | None:
    """The Milvus filter expression for ``filters`` (None when they are empty); see the module
    docstring for why it may pass more than the catalog does, never less. ``infix_like`` False
    is for servers that take only prefix LIKE patterns."""
    if filters is None or not filters.active:
        return None
    clauses = []
    if filters.modalities:
        clauses.append(f"modality in [{', '.join(_literal(m) for m in filters.modalities)}]")
    like: str | None = glob_to_like(filters.uri_glob) if filters.uri_glob else None
    if like is not None and not infix_like:
        like = prefix_like(like)
    if like is not None:
        clauses.append(f"(n_uris != 1 or uri like {_literal(like)})")
    for key, value in filters.meta.items():
        clauses.append(f"meta[{_literal(str(key))}] == {_literal(str(value))}")
    if filters.after is not None and np.isfinite(filters.after):
        clauses.append(f"mtime >= {float(filters.after)!r}")
    if filters.before is not None and np.isfinite(filters.before):
        clauses.append(f"mtime <= {float(filters.before)!r}")
    return " and ".join(clauses) or None


def canonical_fields(fields: dict[str, Any]) -> bytes:
    """One item's filter fields as bytes that change exactly when a field does."""
    return repr((fields["modality"], fields["uri"], fields["n_uris"], fields["mtime"],
                 sorted(fields["meta"].items()), fields.get("uris"))).encode("utf-8")
