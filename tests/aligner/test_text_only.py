"""The torch-free text path (`aligner.text_only`, `bpe`, `text_numpy`) against the real thing:
the same token ids as open_clip's tokenizer and the same vectors as the torch tower, on many
varied texts, for the starter model and for other sizes and heads; and None (the torch path)
for anything it does not compute exactly."""

from __future__ import annotations

import gzip
import json
import random
import shutil

import numpy as np
import pytest
from open_clip.tokenizer import SimpleTokenizer

from crossmodal.aligner import AlignerCfg, create_aligner, load_aligner, save_aligner
from crossmodal.aligner.bpe import BpeTokenizer, vocab_path
from crossmodal.aligner.text_numpy import supported_text_cfg
from crossmodal.aligner.text_only import text_only_model

FIXED = [
    "seven", "", " ", "   \t\n  ", "a handwritten four", "Hello, World!!!", "it's they're I'll we've she'd",
    "naïve café — déjà vu", "日本語のテキストと数字七", "emoji 🎉🙂👍🏽 and flags 🇫🇷", "ＦＵＬＬＷＩＤＴＨ ｔｅｘｔ",
    "&amp;lt;b&amp;gt; html &quot;quoted&quot; &#39;x&#39; &amp;amp;amp;", "â€™ mojibake â€œquotedâ€\x9d",
    "\x1b[31mred\x1b[0m and \x00\x07 controls", "ﬁ ﬂ ligatures", "<start_of_text> spelt <END_OF_TEXT> out",
    "12345 3.14159 1e-9 0x1F", "...!!!???;;;---___", "'s 't 're", "ÜBER GROSS ẞ straße", "Ελληνικά κείμενα",
    "русский текст", "עברית", "العربية", "हिन्दी", "zero\u200bwidth\ufeffjoiners", "e\u0301 combining",
    "word " * 40, "x" * 300, "supercalifragilisticexpialidocious antidisestablishmentarianism",
    "tab\tseparated\tvalues", "line\r\nbreaks\rand\nmore", "UPPER lower MiXeD", "3 three III ③ ٣ 三",
]


def varied_texts(n: int, seed: int = 0) -> list[str]:
    """``FIXED`` and ``n`` random strings drawn from ASCII, Latin, Greek, CJK, emoji, marks."""
    rng = random.Random(seed)
    alphabet = [chr(c) for c in [*range(32, 127)] * 4 + [*range(0xA0, 0x250), *range(0x370, 0x3FF),
                                                         *range(0x4E00, 0x4E30), 0x1F600, 0x1F389, 0x200B, 0x301,
                                                         0xFEFF, 0x2028, 0x85, 0x9, 0xA]]
    words = ["seven", "digit", "four", "spoken", "image", "the", "a", "of", "handwritten", "eight"]
    out = list(FIXED)
    for _ in range(n):
        if rng.random() < 0.5:
            out.append(" ".join(rng.choice(words) for _ in range(rng.randint(1, 30))))
        else:
            out.append("".join(rng.choice(alphabet) for _ in range(rng.randint(0, 80))))
    return out


@pytest.mark.parametrize("context", [24, 77])
def test_token_ids_are_open_clips(context):
    texts = varied_texts(1500, seed=context)
    mine = BpeTokenizer(vocab_path(), context)(texts)
    theirs = SimpleTokenizer(context_length=context)(texts).numpy()
    assert mine.dtype == np.int64 and mine.shape == theirs.shape
    differing = [texts[i] for i in np.flatnonzero((mine != theirs).any(axis=1))]
    assert not differing, differing[:5]


def _close(mine: np.ndarray, theirs: np.ndarray) -> None:
    assert mine.dtype == np.float32 and mine.shape == theirs.shape
    np.testing.assert_allclose(np.linalg.norm(mine, axis=1), 1.0, atol=1e-6)
    cosines = (mine.astype(np.float64) * theirs).sum(axis=1)
    assert cosines.min() >= 1 - 1e-5, cosines.min()
    assert np.abs(mine - theirs).max() < 1e-4


def test_starter_vectors_are_the_torch_towers(starter):
    model = text_only_model("starter")
    assert model is not None
    texts = varied_texts(400)
    _close(model.embed_texts(texts, batch_size=64), starter.embed_texts(texts))
    # What a collection's model check reads is what the torch model gives it.
    assert model.model_id == starter.model_id and model.embed_dim == starter.embed_dim
    assert model.modalities == starter.modalities and model.checkpoint_dir == starter.checkpoint_dir
    assert model.checkpoint_config["weights"] == starter.checkpoint_config["weights"]


def _config(text_cfg: dict, head: dict, embed_dim: int = 24, output_dim: int = 20) -> AlignerCfg:
    return AlignerCfg.from_dict(json.loads(json.dumps({
        "name": "text-sizes", "embed_dim": embed_dim,
        "towers": {"text": {"backbone": {"type": "open_clip_text", "output_dim": output_dim, "text_cfg": text_cfg},
                            "head": head},
                   "image": {"backbone": {"type": "digit_cnn", "channels": [4, 8], "output_dim": 16},
                             "head": {"type": "linear"}}}})))


@pytest.mark.parametrize(("text_cfg", "head", "dims"), [
    ({"context_length": 16, "width": 32, "heads": 2, "layers": 1}, {"type": "linear"}, (24, 20)),
    ({"context_length": 40, "width": 48, "heads": 6, "layers": 3, "mlp_ratio": 2.5}, {"type": "mlp", "hidden_dim": 40},
     (24, 20)),
    ({"context_length": 8, "width": 16, "heads": 1, "layers": 2, "vocab_size": 49408}, {"type": "identity"}, (20, 20)),
])
def test_other_sizes_and_heads_give_the_torch_vectors(tmp_path, text_cfg, head, dims):
    aligner = create_aligner(_config(text_cfg, head, *dims))
    save_aligner(aligner, tmp_path / "ck")
    torch_model = load_aligner(tmp_path / "ck")
    model = text_only_model(tmp_path / "ck")
    assert model is not None and model.model_id == torch_model.model_id
    texts = varied_texts(150, seed=len(text_cfg))
    _close(model.embed_texts(texts), torch_model.embed_texts(texts))


def test_what_it_does_not_compute_exactly_is_left_to_torch(tmp_path):
    assert text_only_model("open_clip:ViT-B-32/laion2b_s34b_b79k") is None
    assert text_only_model("clip-vit-b-32") is None  # a config, not a checkpoint
    assert text_only_model(tmp_path / "nowhere") is None
    (tmp_path / "empty").mkdir()
    assert text_only_model(tmp_path / "empty") is None  # torch's load says it is no checkpoint
    # A text tower with a setting the numpy forward does not implement.
    save_aligner(create_aligner(_config({"context_length": 8, "width": 16, "heads": 2, "layers": 1,
                                         "ls_init_value": 0.1}, {"type": "linear"})), tmp_path / "layer-scale")
    assert text_only_model(tmp_path / "layer-scale") is None
    # Weights that are not the ones the config records: torch's load names the mismatch.
    shutil.copytree(load_aligner("starter").checkpoint_dir, tmp_path / "changed")
    weights = tmp_path / "changed" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    assert text_only_model(tmp_path / "changed") is None


def test_supported_text_settings():
    base = {"context_length": 24, "width": 64, "heads": 4, "layers": 2}
    assert supported_text_cfg(base) and supported_text_cfg({**base, "mlp_ratio": 2, "pool_type": "argmax"})
    for bad in ({**base, "heads": 3}, {**base, "pool_type": "eos"}, {**base, "no_causal_mask": True},
                {**base, "vocab_size": 1000}, {**base, "hf_model_name": "bert"}, {**base, "unknown": 1},
                {"width": 64, "heads": 4, "layers": 2}, {**base, "layers": True}, {**base, "proj_bias": True}):
        assert not supported_text_cfg(bad), bad


def test_a_vocabulary_file_that_is_not_open_clips_is_refused(tmp_path):
    (tmp_path / "plain.txt.gz").write_bytes(b"not gzip at all\n" * 10)
    short = tmp_path / "short.txt.gz"
    short.write_bytes(gzip.compress(b"#version: 0.2\ni n\nt h\n"))
    for path in (tmp_path / "plain.txt.gz", short):
        with pytest.raises(ValueError, match="not a gzip file|fewer than"):
            BpeTokenizer(path, 24)
