"""Bridging through text alone: the head fitted on caption pairs from two real text towers,
caption files, settings, and a crossmodal audio–text model bridged into the starter's space
(its audio tower carried whole, frozen, into the new checkpoint)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from support.clap import CAPTIONS, write_captions, write_tiny_clap
from torch.nn import functional as F

from crossmodal.aligner import AlignerCfg, load_aligner
from crossmodal.aligner.checkpoint import save_aligner
from crossmodal.aligner.clap_towers import load_clap
from crossmodal.aligner.model import Aligner
from crossmodal.errors import ConfigError, InputError
from crossmodal.media import Waveform
from crossmodal.training.bridge import DEFAULT_CAPTIONS, BridgeCfg, bridge_models, fit_bridge_head, read_captions

AUDIO_TEXT = {"name": "tiny-audio-text", "embed_dim": 32, "towers": {
    "text": {"backbone": {"type": "open_clip_text", "output_dim": 32,
                          "text_cfg": {"context_length": 16, "width": 32, "heads": 2, "layers": 1}},
             "head": {"type": "linear"}},
    "audio": {"backbone": {"type": "audio_cnn", "channels": [4, 8], "output_dim": 16}, "head": {"type": "linear"}}}}


def test_the_shipped_caption_list_is_the_default_and_reads_whole():
    captions = read_captions(DEFAULT_CAPTIONS)
    assert DEFAULT_CAPTIONS.name == "sounds-and-scenes.txt" and 2900 <= len(captions) <= 3000
    assert len(set(captions)) == len(captions) and all(c.strip() == c and c for c in captions)


def test_caption_files_that_cannot_bridge_are_refused(tmp_path):
    with pytest.raises(InputError, match=r"captions file .*missing.txt does not exist"):
        read_captions(tmp_path / "missing.txt")
    few = tmp_path / "few.txt"
    few.write_text("# comment\na dog\na dog\n\nrain\n")
    with pytest.raises(InputError, match=r"few.txt: 2 distinct captions; a bridge needs at least 20"):
        read_captions(few)


def test_settings_that_cannot_train_name_their_field():
    for field, value, message in (("noise", -1.0, "bridge noise: must be 0 or more"),
                                  ("head", "conv", "bridge head: 'conv' unknown"),
                                  ("val_fraction", 0.7, r"bridge val_fraction: must be in \[0, 0.5\)"),
                                  ("temperature", 0.0, "bridge temperature: must be above 0")):
        with pytest.raises(ConfigError, match=message):
            BridgeCfg(**{field: value}).check()


@pytest.mark.slow
def test_the_head_carries_clap_captions_onto_the_starters_text_vectors(tmp_path, starter):
    """Two unrelated real text towers: the tiny CLAP's (random) and the starter's (trained).
    Before training the held-out captions land nowhere near their targets; after, they do."""
    bundle = load_clap(str(write_tiny_clap(tmp_path / "clap")))
    texts = read_captions(DEFAULT_CAPTIONS)[:300] + CAPTIONS
    source, target = bundle.embed_texts(texts), starter.embed_texts(texts)
    head, report = fit_bridge_head(source, target, BridgeCfg(hidden_dim=64, steps=300, noise=0.3), progress=False)
    before, after = report["untrained"]["validation"], report["trained"]["validation"]
    assert before["captions"] == after["captions"] == round(0.1 * len(texts))
    assert before["mean_cosine"] < 0.3 and after["mean_cosine"] > before["mean_cosine"] + 0.3
    assert report["trained"]["fit"]["mean_cosine"] > after["mean_cosine"] - 0.1
    mapped = F.normalize(head(torch.from_numpy(source[:5])), dim=-1).detach().numpy()
    assert mapped.shape == (5, starter.embed_dim)


def test_a_crossmodal_audio_text_model_is_bridged_with_its_audio_tower_inside(tmp_path, starter):
    torch.manual_seed(0)
    source = Aligner(AlignerCfg.from_dict(AUDIO_TEXT))
    save_aligner(source, tmp_path / "audio-text")
    source = load_aligner(tmp_path / "audio-text")
    captions = write_captions(tmp_path / "captions.txt")
    summary = bridge_models("starter", tmp_path / "audio-text", tmp_path / "bridged", captions,
                            BridgeCfg(hidden_dim=32, steps=50), progress=False)
    assert summary["replaced_audio_tower"] and summary["captions"] == len(CAPTIONS)
    assert summary["image_text"] == starter.model_id and summary["audio_text"] == source.model_id
    bridged = load_aligner(tmp_path / "bridged")
    assert bridged.modalities == ("text", "image", "audio")
    config = json.loads((tmp_path / "bridged" / "config.json").read_text())
    audio = config["aligner"]["towers"]["audio"]
    assert audio["backbone"]["type"] == "tower" and audio["backbone"]["source"] == source.model_id
    assert config["trained_on"]["route"] == "bridge through text" and config["weights"]["external"] == []
    # Text and images are the starter's own; a sound is the source's audio vector under the head.
    assert np.array_equal(bridged.embed_texts(["seven"]), starter.embed_texts(["seven"]))
    clip = [Waveform(np.sin(np.arange(8000) / 3).astype(np.float32) * 0.3, 8000)]
    head = bridged.tower("audio").head
    expected = F.normalize(head(torch.from_numpy(source.embed_audio_clips(clip))), dim=-1).detach().numpy()
    assert np.allclose(bridged.embed_audio_clips(clip), expected, atol=1e-5)
    with pytest.raises(ConfigError, match="its audio tower is already a bridge; bridge the model it came from"):
        bridge_models("starter", tmp_path / "bridged", tmp_path / "again", captions, BridgeCfg(steps=5),
                      progress=False)
