"""Collections over a pretrained open_clip model with no training: index, search, serve and
eval with `--model open_clip:ARCH/FILE`; sounds skipped and audio queries refused with the way
to add an audio tower; the weights recorded and any other weights refused.

The fast tests use crossmodal's tiny open_clip architecture; the slow one writes a real
ViT-B-32 with random weights to a local file and goes through the command line and the engine.
Random weights rank nothing meaningfully, so only what is deterministic is checked: counts,
skips, errors, provenance, and that an image finds itself first (its own vector is identical).
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
from pathlib import Path

import open_clip
import pytest
import torch
from safetensors.torch import save_file
from support.cli import run_cli
from support.media import corpus_files

from crossmodal.cli import main
from crossmodal.cli.output import EXIT_ERROR, EXIT_OK, EXIT_SKIPPED
from crossmodal.core import Engine, query_from_fields
from crossmodal.errors import CollectionError, QueryError
from crossmodal.settings import Settings

TINY = "crossmodal-tiny-vit"
NOTES = {"dog.txt": "A dog barking in the park.\n", "rain.txt": "Rain on a window at night.\n",
         "seven.md": "Someone saying seven, twice.\n"}


def write_clip(path: Path, arch: str, seed: int) -> Path:
    """A randomly initialised open_clip model of ``arch`` saved as safetensors."""
    from crossmodal.aligner.open_clip_source import list_open_clip_models

    assert arch in list_open_clip_models()
    torch.manual_seed(seed)
    model = open_clip.create_model(arch)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


def media_folder(root: Path) -> Path:
    """Images and sounds from the demo corpus, and notes."""
    media = root / "media"
    for sub, files in (("images", corpus_files("image", "3", 2) + corpus_files("image", "8", 2)),
                       ("sounds", corpus_files("audio", "3", 1) + corpus_files("audio", "8", 1))):
        (media / sub).mkdir(parents=True)
        for path in files:
            shutil.copy(path, media / sub / path.name)
    (media / "notes").mkdir()
    for name, text in NOTES.items():
        (media / "notes" / name).write_text(text)
    return media


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def tiny_world(tmp_path_factory):
    """Two tiny open_clip weights files, a media folder, and a collection indexed with the first."""
    root = tmp_path_factory.mktemp("tiny-clip")
    weights = write_clip(root / "clip.safetensors", TINY, 0)
    other = write_clip(root / "other.safetensors", TINY, 1)
    media = media_folder(root)
    with Engine.open(root / "coll", create=True, settings=Settings(), model=f"open_clip:{TINY}/{weights}") as engine:
        report = engine.index([media], progress=False)
    return root, weights, other, media, report


def test_sounds_are_skipped_with_the_way_to_add_an_audio_tower(tiny_world):
    _, _, _, media, report = tiny_world
    assert report.added == 7 and report.counts["items"] == 7
    skipped = {Path(s.source).name: s.reason for s in report.skipped}
    assert sorted(skipped) == sorted(p.name for p in (media / "sounds").iterdir())
    for reason in skipped.values():
        assert "has no audio tower (it embeds text and image only)" in reason
        assert "crossmodal train --config clip-vit-b-32-audio" in reason and "crossmodal models" in reason


def test_the_manifest_ties_the_collection_to_the_file(tiny_world):
    root, weights, _, _, _ = tiny_world
    model = json.loads((root / "coll" / "manifest.json").read_text())["model"]
    digest = sha256(weights)
    assert model["sha256"] == digest and model["id"] == f"open_clip:{TINY}/clip.safetensors@{digest[:12]}"
    assert model["ref"] == f"open_clip:{TINY}/{weights}" and model["embed_dim"] == 64
    assert model["source"] == {m: {"architecture": TINY, "pretrained": str(weights), "sha256": digest}
                               for m in ("text", "image")}


def test_text_and_image_search_and_an_image_finds_itself(tiny_world):
    root, _, _, media, _ = tiny_world
    with Engine.open(root / "coll") as engine:
        hits = engine.search(query_from_fields({"text": "a dog barking", "k": 7})).results
        assert len(hits) == 7 and {h.modality for h in hits} == {"text", "image"}
        for query in sorted((media / "images").iterdir()):
            hits = engine.search(query_from_fields({"image": str(query), "targets": "images", "k": 4})).results
            assert Path(hits[0].uri).name == query.name and len(hits) == 4


def test_audio_queries_and_audio_targets_are_refused(tiny_world):
    root, _, _, media, _ = tiny_world
    clip = next((media / "sounds").iterdir())
    with Engine.open(root / "coll") as engine:
        with pytest.raises(QueryError, match=r"^audio: the model .* has no audio tower.*crossmodal train --config"):
            engine.search(query_from_fields({"audio": str(clip)}))
        with pytest.raises(QueryError, match=r"^targets: nothing to search in audio: .*no audio tower"):
            engine.search(query_from_fields({"text": "seven", "targets": "audio"}))
        with pytest.raises(QueryError, match="no audio tower"):
            engine.search(query_from_fields({"text": "seven", "targets": "images,audio"}))
        assert engine.search(query_from_fields({"text": "seven", "targets": "text,image,audio"})).results


def test_the_server_answers_an_audio_query_with_400(tiny_world):
    from crossmodal.server import create_app

    root, _, _, media, _ = tiny_world
    clip = next((media / "sounds").iterdir())
    with Engine.open(root / "coll") as engine:
        client = create_app(engine).test_client()
        r = client.post("/api/search", data={"audio": (io.BytesIO(clip.read_bytes()), clip.name)},
                        content_type="multipart/form-data")
        assert r.status_code == 400 and "has no audio tower" in r.get_json()["error"]
        r = client.post("/api/search", json={"text": "rain", "k": 3})
        assert r.status_code == 200 and len(r.get_json()["results"]) == 3


def test_other_weights_are_refused_and_a_copy_of_the_same_is_not(tiny_world, tmp_path):
    root, weights, other, _, _ = tiny_world
    with pytest.raises(CollectionError, match=r"built with open_clip crossmodal-tiny-vit weights file .*clip"
                                              r"\.safetensors \(SHA-256 .*not open_clip .*other\.safetensors"):
        Engine.open(root / "coll", model=f"open_clip:{TINY}/{other}")
    copy = shutil.copy(weights, tmp_path / "clip.safetensors")
    with Engine.open(root / "coll", model=f"open_clip:{TINY}/{copy}") as engine:
        assert engine.search(query_from_fields({"text": "rain", "k": 1})).results


def test_a_different_file_under_the_same_name_is_refused(tmp_path):
    """The collection's own reference, with other weights put in its place since."""
    weights = write_clip(tmp_path / "clip.safetensors", TINY, 0)
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "a.txt").write_text("a note\n")
    with Engine.open(tmp_path / "coll", create=True, model=f"open_clip:{TINY}/{weights}") as engine:
        engine.index([notes], progress=False)
    write_clip(weights, TINY, 1)
    for model in (None, f"open_clip:{TINY}/{weights}"):
        with pytest.raises(CollectionError, match="a different file under the same name"):
            with Engine.open(tmp_path / "coll", model=model) as engine:
                engine.search(query_from_fields({"text": "note"}))


def test_the_same_file_as_another_architecture_is_refused(tiny_world, tmp_path):
    root, weights, _, _, _ = tiny_world
    config = open_clip.get_model_config(TINY)
    config["quick_gelu"] = True
    (tmp_path / "crossmodal-test-tiny-qg.json").write_text(json.dumps(config))
    open_clip.add_model_config(tmp_path / "crossmodal-test-tiny-qg.json")
    with pytest.raises(CollectionError, match="not open_clip crossmodal-test-tiny-qg weights file"):
        Engine.open(root / "coll", model=f"open_clip:crossmodal-test-tiny-qg/{weights}")


def test_a_config_of_the_same_weights_is_the_same_model(tiny_world, tmp_path):
    root, weights, _, _, _ = tiny_world
    backbone = {"type": "open_clip", "model": TINY, "pretrained": str(weights)}
    (tmp_path / "mine.json").write_text(json.dumps({"name": "mine", "embed_dim": 64, "towers": {
        m: {"backbone": backbone, "head": {"type": "identity"}} for m in ("text", "image")}}))
    with Engine.open(root / "coll", model=str(tmp_path / "mine.json")) as engine:
        assert engine.search(query_from_fields({"text": "rain", "k": 2})).results


def test_the_command_line_indexes_searches_and_evaluates(capsys, tiny_world, tmp_path):
    root, weights, _, media, _ = tiny_world
    model = f"open_clip:{TINY}/{weights}"
    code, out, err = run_cli(capsys, "index", str(media), "-c", str(tmp_path / "c"), "--model", model, "--json", "-q")
    assert code == EXIT_SKIPPED and json.loads(out)["added"] == 7 and err.count("has no audio tower") == 2
    code, out, err = run_cli(capsys, "search", "-c", str(tmp_path / "c"), "--audio",
                             str(next((media / "sounds").iterdir())))
    assert code == EXIT_ERROR and "no audio tower" in err and "Traceback" not in err
    lines = [json.dumps({"modality": "image", "path": str(p), "label": p.stem[-1]})
             for p in sorted((media / "images").iterdir())]
    lines += [json.dumps({"modality": "text", "text": t, "label": d}) for t, d in (("three", "3"), ("eight", "8"))]
    lines.append(json.dumps({"modality": "audio", "path": str(next((media / "sounds").iterdir())), "label": "3"}))
    (tmp_path / "eval.jsonl").write_text("\n".join(lines) + "\n")
    code, out, err = run_cli(capsys, "eval", "--list", str(tmp_path / "eval.jsonl"), "--model", model, "--json", "-q")
    assert code == EXIT_SKIPPED and "no audio tower" in err
    assert set(json.loads(out)) == {"text->image", "image->text", "text->text", "image->image"}


def test_models_shows_the_routes_with_an_example_each(capsys):
    code, out, _ = run_cli(capsys, "models", "--json")
    assert code == EXIT_OK
    listing = json.loads(out)
    routes = listing["routes"]
    assert list(routes) == ["shipped", "open_clip", "train", "bridge", "open_clip_architectures"]
    assert all(r["example"].startswith("crossmodal ") for r in routes.values())
    assert "starter" in routes["shipped"]["models"] and "clip-vit-b-32" in routes["open_clip"]["models"]
    assert "--model open_clip:ViT-B-32/laion2b_s34b_b79k" in routes["open_clip"]["example"]
    assert routes["train"]["configs"] == ["clip-vit-b-32-audio", "clip-vit-b-32-clap", "starter-digits"]
    assert "crossmodal bridge --image-text open_clip:" in routes["bridge"]["example"]
    assert "open_clip" not in listing
    code, out, _ = run_cli(capsys, "models")
    assert code == EXIT_OK and out.count("  example: crossmodal ") == 5 and "open_clip:ARCH/TAG" in out
    code, out, _ = run_cli(capsys, "models", "--open-clip", "--json")
    architectures = json.loads(out)["routes"]["open_clip_architectures"]["architectures"]
    assert "laion2b_s34b_b79k" in architectures["ViT-B-32"] and architectures[TINY] == []
    code, out, _ = run_cli(capsys, "models", "--open-clip")
    assert "  ViT-B-32: openai, " in out


@pytest.mark.slow
def test_a_real_vit_b_32_from_a_local_file_with_no_training(capsys, tmp_path):
    """The issue's acceptance test: open_clip ViT-B-32 (random weights, the real architecture and
    loading path) from a file the test writes, through the command line and the engine."""
    weights = write_clip(tmp_path / "vit-b-32.safetensors", "ViT-B-32", 0)
    media = media_folder(tmp_path)
    model = f"open_clip:ViT-B-32/{weights}"
    coll = str(tmp_path / "photos")
    code, out, err = run_cli(capsys, "index", str(media), "-c", coll, "--model", model, "--json", "-q")
    report = json.loads(out)
    assert code == EXIT_SKIPPED and report["added"] == 7 and report["counts"]["items"] == 7
    assert sorted(Path(s["source"]).parent.name for s in report["skipped"]) == ["sounds", "sounds"]
    assert all("no audio tower" in s["reason"] and "crossmodal train --config clip-vit-b-32-audio" in s["reason"]
               for s in report["skipped"])
    manifest = json.loads((tmp_path / "photos" / "manifest.json").read_text())["model"]
    assert manifest["sha256"] == sha256(weights) and manifest["embed_dim"] == 512
    assert manifest["ref"] == model and manifest["source"]["image"]["architecture"] == "ViT-B-32"

    code, out, err = run_cli(capsys, "search", "-c", coll, "--text", "a dog barking", "-k", "5", "--json")
    assert code == EXIT_OK and len(json.loads(out)["results"]) == 5
    query = sorted((media / "images").iterdir())[1]
    code, out, err = run_cli(capsys, "search", "-c", coll, "--image", str(query), "--target", "images", "--json")
    hits = json.loads(out)["results"]
    assert code == EXIT_OK and len(hits) == 4 and Path(hits[0]["uri"]).name == query.name
    code, out, err = run_cli(capsys, "search", "-c", coll, "--audio", str(next((media / "sounds").iterdir())))
    assert code == EXIT_ERROR and "has no audio tower" in err and out == ""
    code, out, err = run_cli(capsys, "search", "-c", coll, "--text", "seven", "--target", "audio")
    assert code == EXIT_ERROR and "nothing to search in audio" in err

    with Engine.open(coll, model=model) as engine:
        hits = engine.search(query_from_fields({"image": str(query), "targets": "images", "k": 2})).results
        assert Path(hits[0].uri).name == query.name
        assert engine.search(query_from_fields({"text": "rain", "targets": "text", "k": 3})).results

    state = open_clip.create_model("ViT-B-32").state_dict()  # other weights, same architecture
    other = tmp_path / "other.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(other))
    code, out, err = run_cli(capsys, "search", "-c", coll, "--text", "rain", "--model", f"open_clip:ViT-B-32/{other}")
    assert code == EXIT_ERROR and "vit-b-32.safetensors" in err and "other.safetensors" in err
    with pytest.raises(CollectionError, match="not comparable"):
        Engine.open(coll, model=f"open_clip:ViT-B-32/{other}")


def test_a_rebuild_keeps_the_collections_own_model_and_the_demo_skips_audio(tiny_world, tmp_path, capsys):
    root, weights, _, media, _ = tiny_world
    ref = f"open_clip:{TINY}/{weights}"
    with Engine.open(tmp_path / "c", create=True, settings=Settings(), model=ref) as engine:
        engine.index([media / "images"], progress=False)
    with Engine.open(tmp_path / "c", settings=Settings(), rebuild=True) as engine:
        assert engine.model.sha256 == sha256(weights) and engine.counts()["items"] == 0
    code = main(["demo", "--collection", str(tmp_path / "demo"), "--model", ref, "--no-serve", "--json", "-q",
                 "-k", "1"])
    out, err = capsys.readouterr()
    assert code == 0, err
    queries = json.loads(out)["queries"]
    assert [q["modality"] for q in queries] == ["text", "image"]
    assert all(set(q["results"]) == ({"image"} if q["modality"] == "text" else {"text"}) for q in queries)


def test_an_engine_made_from_an_aligner_in_memory_records_what_loads_it_again(tiny_world, tmp_path, starter):
    with Engine.open(tmp_path / "c", create=True, settings=Settings(), aligner=starter) as engine:
        assert engine.model.ref == "starter"
