"""The starter's tokenizer on the multilingual digit captions: crossmodal's numpy BPE gives open_clip's
ids for every caption, nothing collapses to an unknown or shared token sequence, and the starter's
context holds the longest caption whole (CJK text costs two to three byte-level tokens a character)."""

from __future__ import annotations

import html
import unicodedata

import ftfy
import numpy as np
import pytest
from open_clip.tokenizer import SimpleTokenizer
from starter.digits_world import captions
from starter.multilingual import (
    DE_WORDS,
    ES_WORDS,
    FR_WORDS,
    FULL_WIDTH,
    LANGUAGES,
    ZH_DIGITS,
    multilingual_captions,
    strip_accents,
    to_traditional,
)

from crossmodal.aligner import load_aligner
from crossmodal.aligner.bpe import BpeTokenizer, vocab_path


def all_captions() -> list[tuple[str, str, str]]:
    """(text, label, language) of every caption, English included, both splits."""
    english = [(text, label, "en") for split in ("train", "heldout") for text, label in captions(split)]
    return english + multilingual_captions("train") + multilingual_captions("heldout")


@pytest.fixture(scope="module")
def context() -> int:
    return load_aligner("starter").cfg.towers["text"].backbone.text_cfg["context_length"]


def test_every_language_has_train_and_heldout_phrasings_apart():
    train, heldout = multilingual_captions("train"), multilingual_captions("heldout")
    assert {lang for _, _, lang in train} == {lang for _, _, lang in heldout} == set(LANGUAGES)
    assert not {t for t, _, _ in train} & {t for t, _, _ in heldout}
    for lang in LANGUAGES:
        per_digit = [sum(1 for _, label, tag in heldout if tag == lang and label == str(d)) for d in range(10)]
        assert min(per_digit) >= 10, (lang, per_digit)
    texts = {t for t, _, _ in train + heldout}
    # The forms a user types: both scripts, full-width numerals, accents or none, umlauts spelt out.
    assert {"七", "数字七", "數字七", "有人说七", "有人說七", "数字７", "柒"} <= texts
    assert {"siete", "el número 7", "el numero 7", "sieben", "fünf", "funf", "fuenf", "zéro", "zero"} <= texts
    assert to_traditional("一段说七的录音") == "一段說七的錄音"
    assert strip_accents("prononçant zéro") == "prononcant zero"


def test_numpy_tokens_are_open_clips_for_every_caption(context):
    texts = [text for text, _, _ in all_captions()]
    mine = BpeTokenizer(vocab_path(), context)(texts)
    theirs = SimpleTokenizer(context_length=context)(texts).numpy()
    differing = [texts[i] for i in np.flatnonzero((mine != theirs).any(axis=1))]
    assert not differing, differing[:5]


def test_no_caption_loses_a_character_or_is_cut(context):
    """Byte-level BPE has no unknown token: decoding gives back the cleaned text exactly (spaces
    aside, which decoding puts after every word), and every caption ends before the context does."""
    tokenizer = SimpleTokenizer(context_length=context)
    longest = {}
    for text, _, lang in all_captions():
        ids = tokenizer.encode(text)
        cleaned = html.unescape(html.unescape(ftfy.fix_text(text))).lower()
        assert tokenizer.decode(ids).replace(" ", "") == cleaned.replace(" ", ""), text
        longest[lang] = max(longest.get(lang, 0), len(ids) + 2)  # with start and end
    assert max(longest.values()) <= context, longest
    assert longest["zh-Hans"] > 24  # the old context of 24 would have cut Chinese captions


def test_digits_stay_apart_in_every_language():
    """The ten digits' captions of one phrasing never share their token ids, in any language."""
    tokenizer = SimpleTokenizer()
    forms = [ZH_DIGITS, FULL_WIDTH, ES_WORDS, FR_WORDS, DE_WORDS,
             [strip_accents(w) for w in FR_WORDS], [f"有人說{c}" for c in ZH_DIGITS]]
    for words in forms:
        ids = {tuple(tokenizer.encode(w)) for w in words}
        assert len(ids) == 10, words
    # Full-width numerals are folded to ASCII by open_clip's cleaning (ftfy), in both tokenizers.
    assert tokenizer.encode("数字７") == tokenizer.encode("数字7")
    assert unicodedata.normalize("NFKC", "７") == "7"
