"""Which models a collection can be built with: shipped trained models, aligner configs to
train, and (on request) the open_clip architectures installed."""

from __future__ import annotations

from typing import Any

from crossmodal.aligner.registry import list_aligners


def available_models(open_clip: bool = False) -> dict[str, Any]:
    listing: dict[str, Any] = list_aligners()
    if open_clip:
        from crossmodal.aligner.open_clip_source import list_open_clip_models

        listing["open_clip"] = list_open_clip_models()
    return listing
