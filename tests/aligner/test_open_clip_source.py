"""Pretrained open_clip models: the loading code runs for real on checkpoints the tests write.

Only the network fetch of a tag is replaced (no network exists here); open_clip's own tag
resolution, checkpoint reading and model building all run.
"""

from __future__ import annotations

import json
import pickle

import numpy as np
import open_clip
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from crossmodal.aligner import AlignerCfg, create_aligner, load_aligner, save_aligner
from crossmodal.aligner.open_clip_source import load_open_clip
from crossmodal.errors import CheckpointError, ConfigError
from crossmodal.media import Waveform

ARCH = "crossmodal-tiny-vit"


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """A randomly initialised tiny CLIP saved as safetensors and as a torch state dict."""
    from crossmodal.aligner.open_clip_source import list_open_clip_models

    assert ARCH in list_open_clip_models()
    torch.manual_seed(0)
    model, _, preprocess = open_clip.create_model_and_transforms(ARCH)
    model.eval()
    folder = tmp_path_factory.mktemp("clip")
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "tiny.safetensors"))
    torch.save(model.state_dict(), folder / "tiny.pt")
    return model, preprocess, folder


def _pictures() -> list[Image.Image]:
    rng = np.random.default_rng(3)
    return [Image.fromarray((rng.random((40, 50, 3)) * 255).astype(np.uint8)) for _ in range(2)]


def _reference_embeddings(model, preprocess, texts, images):
    tokenizer = open_clip.get_tokenizer(ARCH)
    with torch.no_grad():
        t = model.encode_text(tokenizer(texts), normalize=True).numpy()
        i = model.encode_image(torch.stack([preprocess(im) for im in images]), normalize=True).numpy()
    return t, i


@pytest.mark.parametrize("filename", ["tiny.safetensors", "tiny.pt"])
def test_local_checkpoint_loads_with_identical_outputs(reference, filename):
    model, preprocess, folder = reference
    bundle = load_open_clip(ARCH, str(folder / filename))
    tokens = bundle.tokenizer(["a photo of a cat", "seven"])
    with torch.no_grad():
        assert torch.equal(bundle.model.encode_text(tokens), model.encode_text(tokens))
        pixels = torch.stack([preprocess(im) for im in _pictures()])
        assert torch.equal(bundle.model.encode_image(pixels), model.encode_image(pixels))
    assert len(bundle.pretrained_sha256) == 64


def test_local_checkpoint_keeps_one_copy_of_the_weights_dtype_and_key_check(reference, tmp_path):
    """The file's tensors become the parameters (no random copy kept), in the dtype the model is
    built in, and a file missing a weight is refused rather than leaving a placeholder behind."""
    model, _, _ = reference
    state = model.state_dict()
    torch.save({k: v.half() for k, v in state.items()}, tmp_path / "half.pt")
    bundle = load_open_clip(ARCH, str(tmp_path / "half.pt"))
    params = dict(bundle.model.named_parameters())
    assert {p.dtype for p in params.values()} == {torch.float32}
    assert all(p.stride() != (0,) * p.dim() or p.numel() <= 1 for p in params.values())
    for key, param in params.items():
        assert torch.equal(param, state[key].half().float()), key
    torch.save({k: v for k, v in state.items() if k != "text_projection"}, tmp_path / "short.pt")
    with pytest.raises(CheckpointError, match="text_projection"):
        load_open_clip(ARCH, str(tmp_path / "short.pt"))


def _clip_aligner_cfg(path: str) -> AlignerCfg:
    backbone = {"type": "open_clip", "model": ARCH, "pretrained": path, "frozen": True}
    return AlignerCfg.from_dict({
        "name": "tiny-clip-audio", "embed_dim": 64,
        "towers": {
            "text": {"backbone": dict(backbone), "head": {"type": "identity"}},
            "image": {"backbone": dict(backbone), "head": {"type": "identity"}},
            "audio": {"backbone": {"type": "audio_cnn", "channels": [8, 16, 16, 16], "output_dim": 32},
                      "head": {"type": "mlp", "hidden_dim": 32}},
        }})


def test_aligner_on_pretrained_path_matches_open_clip_space(reference, tmp_path):
    model, preprocess, folder = reference
    aligner = create_aligner(_clip_aligner_cfg(str(folder / "tiny.safetensors")))
    texts, images = ["a dog", "rain on a window"], _pictures()
    ref_t, ref_i = _reference_embeddings(model, preprocess, texts, images)
    np.testing.assert_allclose(aligner.embed_texts(texts), ref_t, atol=1e-6)
    np.testing.assert_allclose(aligner.embed_images(images), ref_i, atol=1e-6)


def test_checkpoint_keeps_heads_and_references_frozen_backbone(reference, tmp_path):
    _, _, folder = reference
    source = tmp_path / "clip.safetensors"
    source.write_bytes((folder / "tiny.safetensors").read_bytes())
    aligner = create_aligner(_clip_aligner_cfg(str(source)))
    save_aligner(aligner, tmp_path / "ck")
    from safetensors import safe_open

    with safe_open(str(tmp_path / "ck" / "model.safetensors"), "pt") as f:
        keys = list(f.keys())
    assert keys and all(k.startswith(("towers.audio.", "logit_scale")) for k in keys)
    config = json.loads((tmp_path / "ck" / "config.json").read_text())
    assert len(config["aligner"]["towers"]["text"]["backbone"]["pretrained_sha256"]) == 64
    again = load_aligner(tmp_path / "ck")
    clip = Waveform(np.sin(np.linspace(0, 800, 16000)).astype(np.float32), 16000)
    assert np.array_equal(aligner.embed_texts(["x y"]), again.embed_texts(["x y"]))
    assert np.array_equal(aligner.embed_audio_clips([clip]), again.embed_audio_clips([clip]))

    torch.manual_seed(1)
    other, _, _ = open_clip.create_model_and_transforms(ARCH)
    save_file({k: v.contiguous() for k, v in other.state_dict().items()}, str(source))
    with pytest.raises(CheckpointError, match="sha256"):
        load_aligner(tmp_path / "ck")


def test_pretrained_tag_route_runs_open_clips_loader(reference, monkeypatch):
    """A tag resolves through open_clip's registry; only the download is replaced."""
    model, preprocess, folder = reference
    url = "https://weights.invalid/crossmodal-tiny-vit/test.safetensors"
    monkeypatch.setitem(open_clip.pretrained._PRETRAINED, ARCH, {"testtag": open_clip.pretrained._pcfg(url=url)})
    fetched = []

    def fake_download(requested_url, cache_dir=None):
        fetched.append(requested_url)
        return str(folder / "tiny.safetensors")

    monkeypatch.setattr(open_clip.pretrained, "download_pretrained_from_url", fake_download)
    bundle = load_open_clip(ARCH, "testtag")
    assert fetched == [url]
    tokens = bundle.tokenizer(["hello"])
    with torch.no_grad():
        assert torch.equal(bundle.model.encode_text(tokens), model.encode_text(tokens))


def test_unknown_architecture_and_missing_file_are_clear(tmp_path):
    with pytest.raises(ConfigError, match="unknown open_clip model"):
        load_open_clip("no-such-arch", None)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_open_clip(ARCH, str(tmp_path / "missing" / "weights.pt"))


class _Payload:
    def __reduce__(self):
        return (print, ("pickle executed",))


def test_pickled_code_is_refused(tmp_path, capsys):
    evil = tmp_path / "evil.pt"
    with open(evil, "wb") as handle:
        pickle.dump({"state_dict": _Payload()}, handle, protocol=2)
    with pytest.raises(CheckpointError):
        load_open_clip(ARCH, str(evil))
    assert "pickle executed" not in capsys.readouterr().out
