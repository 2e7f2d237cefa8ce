"""Modality sniffing, text chunking and source discovery on real files (no model needed)."""

from __future__ import annotations

import io
import json
import wave

import numpy as np
import pytest
from PIL import Image

from crossmodal.errors import DecodeError
from crossmodal.ingest.chunk_text import chunk_text
from crossmodal.ingest.discover import discover
from crossmodal.ingest.sniff import sniff_bytes, sniff_file


def _image_bytes(fmt: str, mode: str = "L") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, (8, 8), 128 if mode in ("L", "P") else None).save(buf, format=fmt)
    return buf.getvalue()


def _wav_bytes(rate: int = 8000, seconds: float = 0.2) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        t = np.arange(int(rate * seconds)) / rate
        w.writeframes((np.sin(2 * np.pi * 440 * t) * 8000).astype("<i2").tobytes())
    return buf.getvalue()


@pytest.mark.parametrize("fmt,mode", [("PNG", "L"), ("JPEG", "RGB"), ("GIF", "P"), ("WEBP", "RGB"),
                                      ("BMP", "RGB"), ("TIFF", "RGB")])
def test_every_image_format_is_sniffed_by_content_whatever_the_name(tmp_path, fmt, mode):
    path = tmp_path / "misnamed.wav"
    path.write_bytes(_image_bytes(fmt, mode))
    assert sniff_file(path) == "image"


def test_audio_and_text_sniffing(tmp_path):
    (tmp_path / "a.png").write_bytes(_wav_bytes())
    assert sniff_file(tmp_path / "a.png") == "audio"
    assert sniff_bytes(b"fLaC\x00\x00") == "audio"
    assert sniff_bytes(b"OggS\x00\x02") == "audio"
    assert sniff_bytes(b"ID3\x04\x00") == "audio"
    assert sniff_bytes(b"hello world", ".txt") == "text"
    assert sniff_bytes(b"# Title", ".md") == "text"
    assert sniff_bytes(b"hello world", ".py") is None
    assert sniff_bytes(b"hel\x00lo", ".txt") is None
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(DecodeError, match="empty.png: file is empty"):
        sniff_file(tmp_path / "empty.png")


def test_chunks_follow_paragraphs_and_respect_the_size_limit():
    paragraphs = [f"Paragraph {i}. " + "word " * (30 + 40 * (i % 3)) for i in range(8)]
    text = "\n\n".join(paragraphs)
    chunks = chunk_text(text, max_chars=300, min_chars=100)
    assert all(len(c.text) <= 300 for c in chunks)
    assert all(text[c.start:c.end] == c.text for c in chunks)
    assert "".join("".join(c.text for c in chunks).split()) == "".join(text.split())
    assert len(chunks) > 3
    single = chunk_text("one short line")
    assert [c.text for c in single] == ["one short line"]
    assert chunk_text("   \n\n  ") == []
    hard = chunk_text("x" * 1000, max_chars=300)
    assert [len(c.text) for c in hard] == [300, 300, 300, 100]


def test_discover_pairs_sidecar_captions_reads_manifests_and_reports_bad_inputs(tmp_path):
    root = tmp_path / "media"
    (root / "sub").mkdir(parents=True)
    (root / "cat.png").write_bytes(_image_bytes("PNG"))
    (root / "cat.txt").write_text("a grey cat")
    (root / "notes.md").write_text("# notes\n\nsome text")
    (root / "sub" / "clip.flac.wav").write_bytes(_wav_bytes())
    (root / "script.py").write_text("print(1)")
    (root / "empty.jpg").write_bytes(b"")
    (root / ".hidden.png").write_bytes(_image_bytes("PNG"))
    (root / "listed.png").write_bytes(_image_bytes("PNG"))
    (root / "dog.png").write_bytes(_image_bytes("PNG"))
    (root / "m.jsonl").write_text("\n".join([
        json.dumps({"modality": "image", "path": "listed.png", "label": "4"}),
        json.dumps({"modality": "text", "text": "four", "label": "4"}),
        json.dumps({"image": "dog.png", "text": "a dog"}),
        "{not json",
        json.dumps({"modality": "audio", "path": "missing.wav"}),
        json.dumps({"modality": "audio", "path": "listed.png"}),
    ]) + "\n")
    cands, skipped = discover([root, tmp_path / "nowhere"])
    by_uri = {c.uri: c for c in cands}
    cat = by_uri[str(root / "cat.png")]
    assert cat.modalities == ("image", "text") and cat.text_path == root / "cat.txt"
    assert str(root / "cat.txt") not in by_uri
    assert by_uri[str(root / "notes.md")].modality == "text"
    assert by_uri[str(root / "sub" / "clip.flac.wav")].modality == "audio"
    listed = by_uri[str(root / "listed.png")]
    assert listed.meta == {"label": "4"} and listed.source == str(root / "m.jsonl")
    assert by_uri[f"{root / 'm.jsonl'}#L2"].text == "four"
    pair = by_uri[f"{root / 'm.jsonl'}#L3"]
    assert pair.modalities == ("image", "text") and pair.text == "a dog"
    assert str(root / "dog.png") not in by_uri
    assert not any(".hidden" in u for u in by_uri)
    reasons = {s.source: s.reason for s in skipped}
    assert "unsupported file type" in reasons[str(root / "script.py")]
    assert reasons[str(root / "empty.jpg")] == "file is empty"
    assert "not valid JSON" in reasons[f"{root / 'm.jsonl'}:4"]
    assert "does not exist" in reasons[f"{root / 'm.jsonl'}:5"] or "cannot read" in reasons[f"{root / 'm.jsonl'}:5"]
    assert "listed as audio but its content is image" in reasons[f"{root / 'm.jsonl'}:6"]
    assert reasons[str(tmp_path / "nowhere")] == "no such file or folder"
    assert len(cands) == 6


def test_signature_changes_when_a_file_or_its_caption_changes(tmp_path):
    (tmp_path / "a.png").write_bytes(_image_bytes("PNG"))
    (tmp_path / "a.txt").write_text("first")
    (cand,), _ = discover([tmp_path])
    before = cand.signature()
    assert cand.signature() == before
    (tmp_path / "a.txt").write_text("second caption")
    assert cand.signature() != before


def test_pipes_devices_and_broken_links_are_skipped_without_blocking(tmp_path):
    import os

    os.mkfifo(tmp_path / "pipe.wav")
    (tmp_path / "gone.png").symlink_to(tmp_path / "nowhere.png")
    (tmp_path / "loop").symlink_to(tmp_path, target_is_directory=True)
    (tmp_path / "ok.txt").write_text("fine")
    (tmp_path / "m.jsonl").write_text('{"modality": "audio", "path": "pipe.wav"}\n')
    cands, skipped = discover([tmp_path, "/dev/null"])
    assert [c.uri for c in cands] == [str(tmp_path / "ok.txt")]
    assert "not a regular file" in {s.source: s.reason for s in skipped}[f"{tmp_path / 'm.jsonl'}:1"]
    reasons = {s.source: s.reason for s in skipped}
    assert "not a regular file" in reasons[str(tmp_path / "pipe.wav")]
    assert "not a regular file" in reasons[str(tmp_path / "gone.png")]
    assert "not a regular file" in reasons["/dev/null"]


def test_links_to_files_are_indexed_and_links_to_folders_are_not_followed(tmp_path):
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "far.txt").write_text("far away")
    (root / "sub" / "near.txt").write_text("near")
    (root / "alias.txt").symlink_to(root / "sub" / "near.txt")
    (root / "elsewhere").symlink_to(outside, target_is_directory=True)
    cands, skipped = discover([root])
    assert [c.uri for c in cands] == [str(root / "alias.txt"), str(root / "sub" / "near.txt")]
    assert skipped == []
