"""Text augmentation: the surface variation people type (case, punctuation, spacing, quotes)."""

from __future__ import annotations

import random

_END = ["", "", ".", "!", "?", "...", " ."]
_WRAP = [("", ""), ("", ""), ("", ""), ('"', '"'), ("'", "'"), ("(", ")")]


def augment_text(text: str, rng: random.Random) -> str:
    """One surface variant; the words themselves are kept."""
    choice = rng.random()
    if choice < 0.25:
        text = text.upper()
    elif choice < 0.45:
        text = text.title()
    elif choice < 0.6:
        text = text.lower()
    text = text.rstrip(".!?") + rng.choice(_END)
    if rng.random() < 0.15:
        text = "  ".join(text.split(" "))
    left, right = rng.choice(_WRAP)
    return f"{left}{text}{right}"
