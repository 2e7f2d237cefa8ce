"""Split long text into retrieval-sized chunks along paragraph, then sentence, then word edges."""

from __future__ import annotations

import re
from dataclasses import dataclass

_PARAGRAPH = re.compile(r"\n\s*\n")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


@dataclass(frozen=True)
class TextChunk:
    """A piece of a document with its character span [start, end) in the original text."""

    text: str
    start: int
    end: int


def _spans(text: str, pattern: re.Pattern[str], start: int, end: int) -> list[tuple[int, int]]:
    spans, pos = [], start
    for match in pattern.finditer(text, start, end):
        spans.append((pos, match.start()))
        pos = match.end()
    spans.append((pos, end))
    return [(a, b) for a, b in spans if text[a:b].strip()]


def _split_long(text: str, start: int, end: int, max_chars: int) -> list[tuple[int, int]]:
    """Cut a span longer than max_chars at sentence ends, falling back to spaces, then hard cuts."""
    if end - start <= max_chars:
        return [(start, end)]
    pieces: list[tuple[int, int]] = []
    for a, b in _spans(text, _SENTENCE_END, start, end):
        while b - a > max_chars:
            cut = text.rfind(" ", a, a + max_chars)
            cut = cut if cut > a else a + max_chars
            pieces.append((a, cut))
            a = cut
            while a < b and text[a].isspace():
                a += 1
        if b > a:
            pieces.append((a, b))
    return pieces


def chunk_text(text: str, max_chars: int = 800, min_chars: int = 200) -> list[TextChunk]:
    """Paragraph-aligned chunks of at most ``max_chars``; short neighbours are merged up to
    ``min_chars`` so one-line paragraphs do not each become a weak vector."""
    if max_chars < 1 or min_chars < 0:
        raise ValueError("max_chars must be >= 1 and min_chars >= 0")
    pieces: list[tuple[int, int]] = []
    for a, b in _spans(text, _PARAGRAPH, 0, len(text)):
        pieces.extend(_split_long(text, a, b, max_chars))
    merged: list[tuple[int, int]] = []
    for a, b in pieces:
        if merged and (merged[-1][1] - merged[-1][0] < min_chars) and b - merged[-1][0] <= max_chars:
            merged[-1] = (merged[-1][0], b)
        else:
            merged.append((a, b))
    chunks = []
    for a, b in merged:
        while a < b and text[a].isspace():
            a += 1
        while b > a and text[b - 1].isspace():
            b -= 1
        if b > a:
            chunks.append(TextChunk(text[a:b], a, b))
    return chunks
