"""How the benchmark and measurement scripts hand over their result: one JSON object on
stdout, and the same in ``out`` when given (its folder made as needed)."""

from __future__ import annotations

import json
from pathlib import Path


def emit(result: dict, out: str | None) -> None:
    text = json.dumps(result, indent=2)
    print(text)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(text + "\n")
