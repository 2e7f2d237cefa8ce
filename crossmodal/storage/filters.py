"""What a search may be restricted to: fields every stored item has, so the catalog (or a
backend that stores them beside the vectors, like Milvus) can evaluate them."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Filters:
    """Restrictions every result must pass; empty means none.

    ``modalities`` are item modalities, ``uri_glob`` is a shell pattern matched against every
    uri of the item, ``meta`` values are compared as text, and ``after``/``before`` bound the
    file modification time (seconds since the epoch; the time the item was added for inline
    text)."""

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
