"""The CLAP audio backbone through the loading path real weights take: a random-init
``ClapModel`` of the real architecture saved with ``save_pretrained`` and read back with
``ClapModel.from_pretrained``; its weights recorded and any other weights refused; configs
with CLAP and frozen towers validated; transformers optional."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pytest
from support.clap import CLAP_DIM, write_tiny_clap

from crossmodal.aligner import AlignerCfg
from crossmodal.aligner.checkpoint import load_checkpoint, save_aligner
from crossmodal.aligner.clap_towers import (
    INSTALL_HINT,
    clap_folder_sha256,
    load_clap,
    require_transformers,
    resolve_clap_folder,
)
from crossmodal.aligner.model import Aligner
from crossmodal.aligner.registry import load_aligner, needs_training, read_aligner_config
from crossmodal.errors import CheckpointError, ConfigError
from crossmodal.media import Waveform


def tone(seconds: float, hz: float, rate: int = 16000) -> Waveform:
    t = np.arange(int(seconds * rate)) / rate
    return Waveform((0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32), rate)


def clap_cfg(folder, **backbone) -> AlignerCfg:
    return AlignerCfg.from_dict({"name": "clap-test", "embed_dim": 8, "towers": {"audio": {
        "backbone": {"type": "clap_audio", "model": str(folder), **backbone}, "head": {"type": "linear"}}}})


@pytest.fixture(scope="module")
def clap_folder(tmp_path_factory):
    return write_tiny_clap(tmp_path_factory.mktemp("clap") / "tiny-clap")


def test_the_folder_loads_through_from_pretrained_and_its_digest_is_recorded(clap_folder):
    bundle = load_clap(str(clap_folder))
    assert type(bundle.model).__name__ == "ClapModel" and bundle.sample_rate == 48000
    assert bundle.embed_dim == CLAP_DIM and bundle.revision is None
    assert bundle.sha256 == clap_folder_sha256(clap_folder)
    texts = bundle.embed_texts(["a dog barking", "rain at night"])
    assert texts.shape == (2, CLAP_DIM) and np.allclose(np.linalg.norm(texts, axis=1), 1, atol=1e-5)
    cfg = clap_cfg(clap_folder)
    aligner = Aligner(cfg)
    backbone = cfg.towers["audio"].backbone
    assert backbone.sha256 == bundle.sha256 and backbone.model == str(clap_folder.resolve())
    assert needs_training(cfg) == [f"its audio tower (CLAP {clap_folder.resolve()}) has a linear head to train "
                                   "into this space"]
    assert not any(p.requires_grad for p in aligner.tower("audio").backbone.parameters())


def test_a_sound_embeds_the_same_alone_as_in_a_batch_and_long_ones_in_windows(clap_folder):
    aligner = Aligner(clap_cfg(clap_folder))
    together = aligner.embed_audio([tone(1.0, 440), tone(0.3, 880), tone(23.0, 300)])
    alone = aligner.embed_audio([tone(0.3, 880)])
    assert np.allclose(together[1].vectors, alone[0].vectors, atol=1e-5)
    assert [len(e.vectors) for e in together] == [1, 1, 4]  # 23 s in 10 s windows every 5 s
    assert together[2].ends[-1] == pytest.approx(23.0, abs=0.06)
    aligner.tower("audio").backbone.chunk = 2  # the encoder sees at most two windows at a time
    chunked = aligner.embed_audio([tone(1.0, 440), tone(0.3, 880), tone(23.0, 300)])
    assert all(np.allclose(a.vectors, b.vectors, atol=1e-5) for a, b in zip(chunked, together))


def test_a_checkpoint_keeps_the_head_and_names_the_clap_weights_it_needs(clap_folder, tmp_path):
    aligner = Aligner(clap_cfg(clap_folder))
    save_aligner(aligner, tmp_path / "ckpt")
    config = json.loads((tmp_path / "ckpt" / "config.json").read_text())
    assert config["weights"]["external"] == ["towers.audio.backbone.clap."]
    assert config["aligner"]["towers"]["audio"]["backbone"]["sha256"] == clap_folder_sha256(clap_folder)
    assert config["preprocess"]["audio"]["sample_rate"] == 48000
    again = load_checkpoint(tmp_path / "ckpt")
    clip = [tone(1.0, 440)]
    assert np.allclose(again.embed_audio_clips(clip), aligner.embed_audio_clips(clip), atol=1e-6)


def test_other_weights_in_the_folder_are_refused(clap_folder, tmp_path):
    aligner = Aligner(clap_cfg(clap_folder))
    save_aligner(aligner, tmp_path / "ckpt")
    other = write_tiny_clap(tmp_path / "other", seed=1)
    with pytest.raises(CheckpointError, match=r"CLAP weights in .*other have sha256 .* but this model's head was "
                                              r"trained on .* with .*train the head again"):
        load_clap(str(other), expected_sha256=clap_folder_sha256(clap_folder))
    config = json.loads((tmp_path / "ckpt" / "config.json").read_text())
    config["aligner"]["towers"]["audio"]["backbone"]["model"] = str(other)
    (tmp_path / "ckpt" / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="CLAP weights in"):
        load_checkpoint(tmp_path / "ckpt")


def test_a_config_with_a_clap_tower_says_how_to_train_or_bridge_it(clap_folder, tmp_path):
    path = tmp_path / "clap-audio.json"
    path.write_text(json.dumps(clap_cfg(clap_folder).to_dict()))
    with pytest.raises(CheckpointError, match=r"needs training .*--freeze-backbones audio .*crossmodal bridge "
                                              r"--image-text .* --audio-text .*tiny-clap"):
        load_aligner(path)


def test_the_shipped_clap_config_needs_its_head_trained_and_says_how():
    cfg = read_aligner_config("clip-vit-b-32-clap")
    assert needs_training(cfg) == ["its audio tower (CLAP laion/clap-htsat-unfused) has a mlp head to train into "
                                   "this space"]
    with pytest.raises(CheckpointError, match=r"--freeze-backbones text,image,audio --out models/clip-vit-b-32-clap`"
                                              r".*crossmodal bridge --image-text open_clip:ViT-B-32/laion2b_s34b_b79k "
                                              r"--audio-text laion/clap-htsat-unfused"):
        load_aligner("clip-vit-b-32-clap")


def test_references_that_name_nothing_are_refused(tmp_path):
    with pytest.raises(CheckpointError, match=r"not a folder .* nor a Hugging Face hub id"):
        resolve_clap_folder(str(tmp_path / "missing" / "clap"))
    with pytest.raises(CheckpointError, match=r"not a folder .* nor a Hugging Face hub id"):
        resolve_clap_folder("no spaces/allowed here")


def test_a_folder_without_a_tokenizer_embeds_audio_but_cannot_bridge(tmp_path):
    folder = write_tiny_clap(tmp_path / "no-tok", tokenizer=False)
    bundle = load_clap(str(folder))
    assert bundle.tokenizer is None
    with pytest.raises(ConfigError, match="has no tokenizer: save the processor"):
        bundle.embed_texts(["a dog"])


def test_configs_validate_clap_and_frozen_towers():
    def cfg(audio: dict) -> AlignerCfg:
        return AlignerCfg.from_dict({"name": "x", "embed_dim": 8, "towers": {"audio": audio}})

    inner = {"type": "audio_cnn", "channels": [4, 8], "output_dim": 8}
    tower = cfg({"backbone": {"type": "tower", "backbone": inner, "head": {"type": "linear"}, "embed_dim": 8},
                 "head": {"type": "linear"}})
    assert tower.towers["audio"].backbone.backbone.channels == [4, 8]
    assert AlignerCfg.from_dict(tower.to_dict()).to_dict() == tower.to_dict()
    with pytest.raises(ConfigError, match=r"towers.audio.backbone.backbone: type 'tower' is not a audio backbone"):
        cfg({"backbone": {"type": "tower", "backbone": {"type": "tower", "backbone": inner}}})
    with pytest.raises(ConfigError, match=r"towers.audio.backbone.head: type 'conv' unknown"):
        cfg({"backbone": {"type": "tower", "backbone": inner, "head": {"type": "conv"}}})
    with pytest.raises(ConfigError, match=r"towers.audio.backbone: unknown key\(s\) \['pretrained'\]"):
        cfg({"backbone": {"type": "clap_audio", "pretrained": "x"}})
    with pytest.raises(ConfigError, match=r"towers.text.backbone: type 'clap_audio' is not a text backbone"):
        AlignerCfg.from_dict({"name": "x", "embed_dim": 8, "towers": {"text": {"backbone": {"type": "clap_audio"}}}})


def test_without_transformers_the_error_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)  # what Python does when it is not installed
    with pytest.raises(ConfigError, match=re.escape("need the optional package transformers: "
                                                    "pip install 'crossmodal[clap]'")):
        require_transformers()
    with pytest.raises(ConfigError, match=re.escape(INSTALL_HINT)):
        load_clap("laion/clap-htsat-unfused")


@pytest.mark.slow
def test_importing_crossmodal_does_not_import_transformers():
    done = subprocess.run([sys.executable, "-c", "import sys, crossmodal.cli, crossmodal.core, crossmodal.training."
                           "bridge; sys.exit('transformers' in sys.modules)"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
