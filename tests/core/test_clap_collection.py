"""A pretrained CLAP audio tower in a collection, by both routes: bridged through text alone
into an open_clip image–text model (`crossmodal bridge`), and trained on audio–text pairs
(`crossmodal train` with a config whose audio tower is CLAP). Then index, search and serve.

The models are random-init ones of the real architectures, written offline (tests/support/
clap.py), so rankings mean nothing: only what is deterministic is checked (counts, a sound
finding itself, results of the asked modality, provenance, refusals).
"""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pytest
from support.clap import TINY_CLIP, write_captions, write_tiny_clap, write_tiny_clip
from support.cli import run_cli
from support.media import corpus_files

from crossmodal.cli.output import EXIT_ERROR, EXIT_OK
from crossmodal.core import Engine, query_from_fields
from crossmodal.errors import CheckpointError
from crossmodal.settings import Settings


def media_folder(root: Path) -> Path:
    media = root / "media"
    for sub, files in (("images", corpus_files("image", "3", 2) + corpus_files("image", "8", 2)),
                       ("sounds", corpus_files("audio", "3", 2) + corpus_files("audio", "8", 1))):
        (media / sub).mkdir(parents=True)
        for path in files:
            shutil.copy(path, media / sub / path.name)
    return media


@pytest.fixture(scope="module")
def bridged_world(tmp_path_factory):
    """A tiny CLAP folder bridged through captions into a tiny open_clip file, and a media folder."""
    root = tmp_path_factory.mktemp("clap-bridge")
    clap = write_tiny_clap(root / "clap")
    clip = write_tiny_clip(root / "clip.safetensors")
    captions = write_captions(root / "captions.txt")
    return root, clap, clip, captions, media_folder(root)


@pytest.mark.slow
def test_a_clap_folder_bridged_through_text_indexes_and_searches_audio_against_images(capsys, bridged_world):
    root, clap, clip, captions, media = bridged_world
    model = root / "bridged"
    code, out, err = run_cli(capsys, "bridge", "--image-text", f"open_clip:{TINY_CLIP}/{clip}", "--audio-text",
                             str(clap), "--captions", str(captions), "--out", str(model), "--steps", "100",
                             "--hidden-dim", "32", "--json", "-q")
    assert code == EXIT_OK, err
    summary = json.loads(out)
    assert summary["modalities"] == ["text", "image", "audio"] and not summary["replaced_audio_tower"]
    assert summary["audio_text"].startswith("clap:clap@") and summary["captions"] == 72
    bridge = summary["bridge"]
    assert bridge["trained"]["validation"]["mean_cosine"] > bridge["untrained"]["validation"]["mean_cosine"]
    coll = str(root / "coll")
    code, out, err = run_cli(capsys, "index", str(media), "-c", coll, "--model", str(model), "--json", "-q")
    assert code == EXIT_OK, err
    assert json.loads(out)["added"] == 7
    manifest = json.loads((root / "coll" / "manifest.json").read_text())["model"]
    assert manifest["ref"] == str(model.resolve()) and manifest["id"] == summary["model_id"]
    sounds = sorted((media / "sounds").iterdir())
    code, out, err = run_cli(capsys, "search", "-c", coll, "--audio", str(sounds[0]), "--target", "images",
                             "-k", "3", "--json")
    assert code == EXIT_OK, err
    hits = json.loads(out)["results"]
    assert len(hits) == 3 and {h["modality"] for h in hits} == {"image"}
    with Engine.open(root / "coll") as engine:
        for sound in sounds:
            hits = engine.search(query_from_fields({"audio": str(sound), "targets": "audio", "k": 3})).results
            assert Path(hits[0].uri).name == sound.name
        hits = engine.search(query_from_fields({"text": "a dog barking", "targets": "audio", "k": 2})).results
        assert len(hits) == 2 and {h.modality for h in hits} == {"audio"}


def test_the_server_answers_an_audio_upload_with_the_bridged_model(bridged_world, tmp_path):
    from crossmodal.server import create_app

    root, clap, clip, captions, media = bridged_world
    from crossmodal.training.bridge import BridgeCfg, bridge_models

    bridge_models(f"open_clip:{TINY_CLIP}/{clip}", str(clap), tmp_path / "m", captions,
                  BridgeCfg(hidden_dim=32, steps=20), progress=False)
    sound = next((media / "sounds").iterdir())
    with Engine.open(tmp_path / "c", create=True, settings=Settings(), model=str(tmp_path / "m")) as engine:
        engine.index([media], progress=False)
        client = create_app(engine).test_client()
        r = client.post("/api/search", data={"audio": (io.BytesIO(sound.read_bytes()), sound.name), "k": "2",
                                             "targets": "images"}, content_type="multipart/form-data")
        assert r.status_code == 200, r.get_json()
        assert [h["modality"] for h in r.get_json()["results"]] == ["image", "image"]


def test_other_clap_weights_in_the_folder_are_refused_until_the_originals_are_back(bridged_world, tmp_path):
    root, clap, clip, captions, media = bridged_world
    from crossmodal.training.bridge import BridgeCfg, bridge_models

    folder = write_tiny_clap(tmp_path / "clap")
    bridge_models(f"open_clip:{TINY_CLIP}/{clip}", str(folder), tmp_path / "m", captions,
                  BridgeCfg(hidden_dim=32, steps=10), progress=False)
    with Engine.open(tmp_path / "c", create=True, settings=Settings(), model=str(tmp_path / "m")) as engine:
        engine.index([media / "sounds"], progress=False)
    shutil.rmtree(folder)
    write_tiny_clap(folder, seed=1)
    with pytest.raises(CheckpointError, match=r"CLAP weights in .*clap have sha256 .*this model's head was trained"):
        with Engine.open(tmp_path / "c") as engine:
            engine.search(query_from_fields({"text": "rain"}))
    shutil.rmtree(folder)
    write_tiny_clap(folder, seed=0)
    with Engine.open(tmp_path / "c") as engine:
        assert len(engine.search(query_from_fields({"text": "rain", "k": 3})).results) == 3


def test_a_clap_audio_tower_trained_on_pairs(capsys, bridged_world, tmp_path):
    """The pairs route: CLAP frozen (features cached, whatever --freeze-backbones says), its
    head trained into the frozen open_clip space on audio–text pairs."""
    root, clap, clip, _, media = bridged_world
    backbone = {"type": "open_clip", "model": TINY_CLIP, "pretrained": str(clip), "frozen": True}
    config = tmp_path / "clip-clap.json"
    config.write_text(json.dumps({"name": "clip-clap", "embed_dim": 64, "towers": {
        "text": {"backbone": backbone, "head": {"type": "identity"}},
        "image": {"backbone": backbone, "head": {"type": "identity"}},
        "audio": {"backbone": {"type": "clap_audio", "model": str(clap)}, "head": {"type": "mlp", "hidden_dim": 32}}}}))
    rows = []
    for label, word in (("3", "three"), ("8", "eight")):
        rows += [{"modality": "audio", "path": str(p), "label": label} for p in corpus_files("audio", label, 3)]
        rows += [{"modality": "text", "text": f"someone saying {word}", "label": label},
                 {"modality": "text", "text": f"the spoken word {word}", "label": label}]
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "clip-clap"
    code, stdout, err = run_cli(capsys, "train", "--config", str(config), "--list", str(pairs), "--val", str(pairs),
                                "--out", str(out), "--freeze-backbones", "text,image", "--epochs", "2",
                                "--steps-per-epoch", "3", "--batch-sizes", "audio=4,text=4", "--json", "-q")
    assert code == EXIT_OK, err
    saved = json.loads((out / "config.json").read_text())
    assert saved["trained_on"]["frozen_backbones"] == ["text", "image", "audio"]
    assert "towers.audio.backbone.clap." in saved["weights"]["external"]
    assert (out / "model.safetensors").stat().st_size < 64_000  # the head only, not CLAP or open_clip
    code, _, err = run_cli(capsys, "index", str(media), "-c", str(tmp_path / "c"), "--model", str(out), "-q")
    assert code == EXIT_OK, err
    sound = sorted((media / "sounds").iterdir())[1]
    code, stdout, err = run_cli(capsys, "search", "-c", str(tmp_path / "c"), "--audio", str(sound), "--target",
                                "audio", "-k", "1", "--json")
    assert code == EXIT_OK and Path(json.loads(stdout)["results"][0]["uri"]).name == sound.name
    code, _, err = run_cli(capsys, "index", str(media), "-c", str(tmp_path / "c"), "--model", str(root / "clap"))
    assert code == EXIT_ERROR and "is a CLAP model (transformers), not a crossmodal model" in err
    assert f"crossmodal bridge --image-text open_clip:ViT-B-32/laion2b_s34b_b79k --audio-text {root / 'clap'}" in err
