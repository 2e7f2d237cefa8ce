"""`--model open_clip:ARCH/PRETRAINED` and configs that need no training, on crossmodal's tiny
open_clip architecture: parsing, the registry's routes and errors, and the identity a model
made of pretrained weights carries (file checksum or tag). Real open_clip, real files; only
the download of a tag is replaced (there is no network here)."""

from __future__ import annotations

import json

import open_clip
import pytest
import torch
from safetensors.torch import save_file

from crossmodal.aligner.registry import (
    canonical_ref,
    list_aligner_configs,
    load_aligner,
    missing_tower_reason,
    needs_training,
    parse_open_clip_ref,
    read_aligner_config,
    ready_configs,
    source_identity,
)
from crossmodal.errors import CheckpointError, ConfigError

ARCH = "crossmodal-tiny-vit"


def _write_clip(path, seed: int, arch: str = ARCH):
    from crossmodal.aligner.open_clip_source import list_open_clip_models

    assert arch in list_open_clip_models()
    torch.manual_seed(seed)
    model = open_clip.create_model(arch)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    folder = tmp_path_factory.mktemp("weights")
    return _write_clip(folder / "tiny.safetensors", 0), _write_clip(folder / "other.safetensors", 1)


@pytest.mark.parametrize("ref, expected", [
    ("open_clip:ViT-B-32/laion2b_s34b_b79k", ("ViT-B-32", "laion2b_s34b_b79k")),
    ("open_clip:ViT-B-32/models/vit-b-32.safetensors", ("ViT-B-32", "models/vit-b-32.safetensors")),
    ("open_clip:ViT-B-32//abs/w.pt", ("ViT-B-32", "/abs/w.pt")),
])
def test_pretrained_is_everything_after_the_first_slash(ref, expected):
    assert parse_open_clip_ref(ref) == expected


@pytest.mark.parametrize("ref", ["open_clip:ViT-B-32", "open_clip:/laion2b_s34b_b79k", "open_clip:ViT-B-32/"])
def test_a_malformed_reference_shows_the_form(ref):
    with pytest.raises(ConfigError, match=r"expected open_clip:ARCH/PRETRAINED.*crossmodal models --open-clip"):
        load_aligner(ref)


def test_unknown_architecture_tag_and_file_are_named(tmp_path):
    with pytest.raises(ConfigError, match="unknown open_clip architecture 'no-such-arch'"):
        load_aligner("open_clip:no-such-arch/x")
    with pytest.raises(ConfigError, match="no pretrained tag 'laion9'.*laion2b_s34b_b79k"):
        load_aligner("open_clip:ViT-B-32/laion9")
    with pytest.raises(CheckpointError, match="weights file .*missing.safetensors does not exist"):
        load_aligner(f"open_clip:{ARCH}/{tmp_path / 'missing.safetensors'}")


def test_a_local_file_gives_text_and_image_towers_tied_to_its_checksum(weights, tmp_path, monkeypatch):
    tiny, _ = weights
    monkeypatch.chdir(tiny.parent)
    aligner = load_aligner(f"open_clip:{ARCH}/{tiny.name}")
    assert aligner.modalities == ("text", "image") and aligner.embed_dim == 64
    sha = aligner.weights_sha256
    assert len(sha) == 64 and aligner.model_id == f"open_clip:{ARCH}/tiny.safetensors@{sha[:12]}"
    assert {s["sha256"] for s in aligner.weights_source.values()} == {sha}
    assert {s["pretrained"] for s in aligner.weights_source.values()} == {str(tiny)}
    # The same model, exactly as open_clip computes it.
    reference = open_clip.create_model(ARCH, pretrained=str(tiny)).eval()
    tokens = open_clip.get_tokenizer(ARCH)(["a dog barking"])
    with torch.no_grad():
        expected = reference.encode_text(tokens, normalize=True).numpy()
    assert aligner.embed_texts(["a dog barking"]) == pytest.approx(expected, abs=1e-6)
    # Recorded from anywhere as the absolute path.
    assert canonical_ref(f"open_clip:{ARCH}/{tiny.name}") == f"open_clip:{ARCH}/{tiny}"


def test_a_moved_copy_is_the_same_weights_and_another_file_is_not(weights, tmp_path):
    tiny, other = weights
    copy = tmp_path / "renamed.safetensors"
    copy.write_bytes(tiny.read_bytes())
    a, b, c = (load_aligner(f"open_clip:{ARCH}/{p}") for p in (tiny, copy, other))
    assert a.weights_sha256 == b.weights_sha256 != c.weights_sha256
    assert source_identity(a.weights_source) == source_identity(b.weights_source) != source_identity(c.weights_source)


def test_the_same_file_read_as_another_architecture_is_another_model(tmp_path):
    """Equal checksums are not enough: the architecture is part of the identity."""
    path = _write_clip(tmp_path / "w.safetensors", 0)
    config = open_clip.get_model_config(ARCH)
    config["quick_gelu"] = True  # the same tensors, another activation
    (tmp_path / "crossmodal-test-quickgelu.json").write_text(json.dumps(config))
    from crossmodal.aligner.open_clip_source import list_open_clip_models

    list_open_clip_models()
    open_clip.add_model_config(tmp_path / "crossmodal-test-quickgelu.json")
    a = load_aligner(f"open_clip:{ARCH}/{path}")
    b = load_aligner(f"open_clip:crossmodal-test-quickgelu/{path}")
    assert a.weights_sha256 == b.weights_sha256
    assert source_identity(a.weights_source) != source_identity(b.weights_source)
    assert a.embed_texts(["seven"]) != pytest.approx(b.embed_texts(["seven"]), abs=1e-4)


def test_a_tag_is_the_identity_of_downloaded_weights(weights, tmp_path, monkeypatch):
    tiny, _ = weights
    url = "https://weights.invalid/tiny/test.safetensors"
    monkeypatch.setitem(open_clip.pretrained._PRETRAINED, ARCH, {"testtag": open_clip.pretrained._pcfg(url=url)})
    monkeypatch.setattr(open_clip.pretrained, "download_pretrained_from_url", lambda *a, **k: str(tiny))
    aligner = load_aligner(f"open_clip:{ARCH}/testtag")
    assert aligner.model_id == f"open_clip:{ARCH}/testtag" and aligner.weights_sha256 is None
    assert aligner.weights_source["image"] == {"architecture": ARCH, "pretrained": "testtag", "sha256": None}
    assert canonical_ref(f"open_clip:{ARCH}/testtag") == f"open_clip:{ARCH}/testtag"
    by_config = load_aligner(_config(tmp_path, "testtag", audio=False))  # as clip-vit-b-32 is to its tag
    assert (by_config.model_id, by_config.weights_sha256) == (aligner.model_id, None)
    assert source_identity(by_config.weights_source) == source_identity(aligner.weights_source)


def _config(tmp_path, pretrained: str, audio: bool) -> str:
    backbone = {"type": "open_clip", "model": ARCH, "pretrained": pretrained, "frozen": True}
    towers = {m: {"backbone": dict(backbone), "head": {"type": "identity"}} for m in ("text", "image")}
    if audio:
        towers["audio"] = {"backbone": {"type": "audio_cnn", "channels": [8, 8], "output_dim": 16},
                           "head": {"type": "mlp", "hidden_dim": 16}}
    path = tmp_path / ("with-audio.json" if audio else "ready.json")
    path.write_text(json.dumps({"name": path.stem, "embed_dim": 64, "towers": towers}))
    return str(path)


def test_a_config_of_pretrained_towers_is_a_model_and_the_same_as_its_open_clip_ref(weights, tmp_path):
    tiny, _ = weights
    by_config = load_aligner(_config(tmp_path, str(tiny), audio=False))
    by_ref = load_aligner(f"open_clip:{ARCH}/{tiny}")
    assert (by_config.model_id, by_config.weights_sha256) == (by_ref.model_id, by_ref.weights_sha256)
    assert by_config.embed_texts(["rain"]) == pytest.approx(by_ref.embed_texts(["rain"]), abs=1e-6)


def test_a_config_that_needs_training_says_how(weights, tmp_path):
    tiny, _ = weights
    path = _config(tmp_path, str(tiny), audio=True)
    with pytest.raises(CheckpointError, match=r"needs training .*audio tower \(audio_cnn\).*crossmodal train "
                                              r"--config .*with-audio.json --list pairs.jsonl --freeze-backbones "
                                              r"text,image"):
        load_aligner(path)
    with pytest.raises(CheckpointError, match="crossmodal train --config clip-vit-b-32-audio"):
        load_aligner("clip-vit-b-32-audio")


def test_shipped_configs_split_into_ready_and_to_train():
    assert "clip-vit-b-32" in list_aligner_configs() and ready_configs() == ["clip-vit-b-32"]
    cfg = read_aligner_config("clip-vit-b-32")
    assert cfg.modalities == ("text", "image") and cfg.embed_dim == 512 and not needs_training(cfg)
    assert all(t.backbone.model == "ViT-B-32" and t.head.type == "identity" for t in cfg.towers.values())
    assert needs_training(read_aligner_config("clip-vit-b-32-audio")) == [
        "its audio tower (audio_cnn) starts from scratch"]


def test_an_unknown_model_lists_the_routes():
    with pytest.raises(CheckpointError, match=r"no trained aligner 'nothing'.*starter.*open_clip:ARCH/PRETRAINED"
                                              r".*crossmodal models"):
        load_aligner("nothing")


def test_the_missing_tower_reason_says_how_to_add_one(weights):
    aligner = load_aligner(f"open_clip:{ARCH}/{weights[0]}")
    reason = missing_tower_reason(aligner, "audio")
    assert reason.startswith(f"the model {aligner.model_id} has no audio tower (it embeds text and image only)")
    assert "crossmodal train --config clip-vit-b-32-audio" in reason and "crossmodal models" in reason


def test_a_tag_that_cannot_be_downloaded_says_how_to_work_offline(monkeypatch):
    url = "https://weights.invalid/tiny/test.safetensors"
    monkeypatch.setitem(open_clip.pretrained._PRETRAINED, ARCH, {"testtag": open_clip.pretrained._pcfg(url=url)})

    def unreachable(*args, **kwargs):
        raise OSError("Name or service not known")

    monkeypatch.setattr(open_clip.pretrained, "download_pretrained_from_url", unreachable)
    with pytest.raises(CheckpointError, match=r"needs the network once.*open_clip:ARCH/path/to/weights.safetensors"):
        load_aligner(f"open_clip:{ARCH}/testtag")
