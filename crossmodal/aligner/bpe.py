"""open_clip's byte-level BPE tokenizer, without torch or open_clip.

A text query to a model whose text tower is a small open_clip text transformer needs token
ids and a few matrix products, not the seconds it takes to import torch and open_clip. This
tokenizer gives the very ids open_clip's ``SimpleTokenizer`` gives (a test compares them on
many texts): the same cleaning (ftfy, HTML entities twice, whitespace, lower case), the same
split into words, the same byte-to-character table and merges read from open_clip's own
vocabulary file, the same truncation. The vocabulary file is found in the installed open_clip
package without importing it; `vocab_path` is None when it is not there.
"""

from __future__ import annotations

import html
import importlib.util
import threading
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

VOCAB_FILE = "bpe_simple_vocab_16e6.txt.gz"
MERGES = 49152 - 256 - 2
"""How many merges of the file open_clip uses (its vocabulary is 49,408 ids)."""
START, END = "<start_of_text>", "<end_of_text>"
END_OF_WORD = "</w>"
CACHE_WORDS = 50_000
"""Words whose merges are remembered (a query repeats few words)."""


def vocab_path() -> Path | None:
    """open_clip's vocabulary file, found through its package folder without importing it (that
    import is what a text query is spared); None when open_clip or the file is not installed."""
    try:
        spec = importlib.util.find_spec("open_clip")
    except (ImportError, ValueError):
        return None
    for folder in (spec.submodule_search_locations or []) if spec is not None else []:
        path = Path(folder) / VOCAB_FILE
        if path.is_file():
            return path
    return None


def available() -> bool:
    """Whether this tokenizer can run here: the vocabulary file and the two libraries open_clip
    cleans and splits texts with (ftfy, regex) are installed."""
    return vocab_path() is not None and all(importlib.util.find_spec(m) is not None for m in ("ftfy", "regex"))


def read_merges(path: Path) -> list[str]:
    """The merges open_clip uses: lines 2 to ``MERGES + 1`` of the gzip file, each "first second",
    decompressed only as far as they go (the file holds five times as many). A file that is not
    gzip, or holds fewer, raises ValueError."""
    data = path.read_bytes()
    stream = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)  # the gzip container
    text, lines = bytearray(), 0
    try:
        for start in range(0, len(data), 1 << 16):
            piece = stream.decompress(data[start:start + (1 << 16)])
            text += piece
            lines += piece.count(b"\n")
            if lines > MERGES:
                break
    except zlib.error as exc:
        raise ValueError(f"{path}: not a gzip file ({exc})") from None
    merges = bytes(text).split(b"\n", MERGES + 1)[1:MERGES + 1]
    if len(merges) < MERGES or not merges[-1]:
        raise ValueError(f"{path}: holds fewer than the {MERGES} merges open_clip uses")
    return b"\n".join(merges).decode("utf-8").split("\n")


def byte_symbols() -> dict[int, str]:
    """One printable character per byte value; the order of the dict is the order the
    vocabulary's first 256 ids take.

    Bytes that are printable Latin-1 characters stand for themselves; each other byte (controls,
    space, the soft hyphen...) gets the next character from U+0100 on, in byte order, so no
    symbol is whitespace or a control character that splitting would break."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    kept = set(printable)
    table = {b: chr(b) for b in printable}
    table.update({b: chr(256 + n) for n, b in enumerate(b for b in range(256) if b not in kept)})
    return table


class BpeTokenizer:
    """Texts to open_clip token ids: ``[start] + word pieces + [end]``, truncated to the context
    (the last id kept is then ``end``) and padded with zeros."""

    def __init__(self, path: Path, context_length: int) -> None:
        import regex

        merges = read_merges(path)
        self.byte_symbol = byte_symbols()
        symbols = list(self.byte_symbol.values())
        # A merge is kept as its line, "first second" (no symbol holds a space): cheaper to load than
        # pairs, and a pair is looked up by the same text.
        self.ranks: dict[str, int] = dict(zip(merges, range(len(merges))))
        self.ids: dict[str, int] = {piece: i for i, piece in enumerate(symbols + [s + END_OF_WORD for s in symbols])}
        self.ids.update(zip([merge.replace(" ", "") for merge in merges], range(len(self.ids), len(self.ids) + MERGES)))
        self.ids.update({START: len(self.ids), END: len(self.ids) + 1})
        self.start_id, self.end_id = self.ids[START], self.ids[END]
        self.context_length = context_length
        # The special tokens first (a text that spells one gets its id, as in open_clip), then
        # contractions, runs of letters, single digits, runs of anything else but whitespace.
        self.words = regex.compile(
            rf"{regex.escape(START)}|{regex.escape(END)}|'s|'t|'re|'ve|'m|'ll|'d|\p{{L}}+|\p{{N}}|[^\s\p{{L}}\p{{N}}]+",
            regex.IGNORECASE)
        self._cache: dict[str, list[int]] = {}
        self._lock = threading.Lock()

    @staticmethod
    def clean(text: str) -> str:
        """open_clip's 'lower' cleaning: mojibake fixed, HTML entities decoded (twice, as it
        does), whitespace runs made one space, lower case."""
        import ftfy

        text = html.unescape(html.unescape(ftfy.fix_text(text))).strip()
        return " ".join(text.split()).lower()

    def _merge(self, word: str) -> list[int]:
        """Ids of one word's pieces: its byte symbols, the last marked as the word's end, merged
        pair by pair, always the pair that ranks first among the merges, every occurrence left to
        right, until no adjacent pair is a merge."""
        if word in (START, END):
            return [self.ids[word]]
        pieces = [self.byte_symbol[b] for b in word.encode("utf-8")]
        pieces[-1] += END_OF_WORD
        while len(pieces) > 1:
            best = min((f"{a} {b}" for a, b in zip(pieces, pieces[1:])), key=lambda pair: self.ranks.get(pair, MERGES))
            if best not in self.ranks:
                break
            first, second = best.split(" ")
            merged: list[str] = []
            i = 0
            while i < len(pieces):
                if i + 1 < len(pieces) and pieces[i] == first and pieces[i + 1] == second:
                    merged.append(first + second)
                    i += 2
                else:
                    merged.append(pieces[i])
                    i += 1
            pieces = merged
        return [self.ids[p] for p in pieces]

    def encode(self, text: str) -> list[int]:
        """The word-piece ids of one text, without start, end or padding."""
        out: list[int] = []
        for word in self.words.findall(self.clean(text)):
            with self._lock:
                ids = self._cache.get(word)
            if ids is None:
                ids = self._merge(word)
                with self._lock:
                    if len(self._cache) >= CACHE_WORDS:
                        self._cache.clear()
                    self._cache[word] = ids
            out.extend(ids)
        return out

    def __call__(self, texts: Sequence[str]) -> np.ndarray[Any, np.dtype[np.int64]]:
        """One row of ``context_length`` ids per text (int64, as open_clip's tensor)."""
        rows = np.zeros((len(texts), self.context_length), dtype=np.int64)
        for row, text in enumerate(texts):
            ids = [self.start_id, *self.encode(text), self.end_id]
            if len(ids) > self.context_length:
                ids = ids[:self.context_length]
                ids[-1] = self.end_id
            rows[row, :len(ids)] = ids
        return rows
