"""Tests for the digits world: IDX reading, captions, FSDD names and item-list writing.

Every test builds its own tiny MNIST/FSDD look-alike in tmp_path, so the suite runs without
the real datasets.
"""

from __future__ import annotations

import gzip
import json
import logging
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image
from starter.digits_world import (
    DIGIT_WORDS,
    HELDOUT_TEMPLATES,
    TRAIN_TEMPLATES,
    FsddRecording,
    captions,
    fsdd_recordings,
    fsdd_speakers,
    select_class_balanced,
    write_digits_lists,
)
from starter.mnist import load_mnist, read_idx_images, read_idx_labels
from starter.multilingual import multilingual_captions

from crossmodal.errors import ConfigError, DecodeError
from crossmodal.ingest.item_list import read_item_list

REPO = Path(__file__).resolve().parents[2]


# ------------------------------------------------------------------------------- fixtures


def write_idx(path: Path, magic: int, dims: tuple[int, ...], data: bytes, gz: bool) -> Path:
    """Write an IDX file by hand: big-endian magic, big-endian uint32 dims, then the bytes."""
    payload = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in dims) + data
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        with gzip.open(path, "wb") as out:
            out.write(payload)
    else:
        path.write_bytes(payload)
    return path


def fake_images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, 28, 28), dtype=np.uint8)


def write_mnist_split(mnist_dir: Path, split: str, images: np.ndarray, labels: np.ndarray,
                      gz: bool = True) -> None:
    suffix = ".gz" if gz else ""
    write_idx(mnist_dir / f"{split}-images-idx3-ubyte{suffix}", 0x803, images.shape,
              images.tobytes(), gz)
    write_idx(mnist_dir / f"{split}-labels-idx1-ubyte{suffix}", 0x801, labels.shape,
              labels.astype(np.uint8).tobytes(), gz)


def write_wav(path: Path, seconds: float = 0.01) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(8000 * seconds)) / 8000.0
    sf.write(path, 0.3 * np.sin(2 * np.pi * 440 * t), 8000, subtype="PCM_16")
    return path


FAKE_SPEAKERS = ("alice", "bob")
FAKE_DIGITS = ("3", "8")
FAKE_INDEXES = (0, 4, 5, 49)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """A miniature of ../shared/data: 12 train + 7 t10k images, 16 FSDD clips, one stray file."""
    root = tmp_path / "data"
    write_mnist_split(root / "mnist", "train", fake_images(12, 1), np.arange(12) % 10)
    write_mnist_split(root / "mnist", "t10k", fake_images(7, 2), (np.arange(7) * 3) % 10)
    rec_dir = root / "fsdd" / "recordings"
    for speaker in FAKE_SPEAKERS:
        for digit in FAKE_DIGITS:
            for index in FAKE_INDEXES:
                write_wav(rec_dir / f"{digit}_{speaker}_{index}.wav")
    (rec_dir / "README.txt").write_text("not a recording\n")
    return root


def by_modality(items: list) -> dict[str, list]:
    groups: dict[str, list] = {"image": [], "audio": [], "text": []}
    for item in items:
        groups[item.modality].append(item)
    return groups


# ------------------------------------------------------------------------------------ IDX


@pytest.mark.parametrize("gz", [True, False])
def test_read_idx_images_and_labels_round_trip(tmp_path: Path, gz: bool) -> None:
    images = fake_images(3)
    labels = np.array([7, 0, 9], dtype=np.uint8)
    img_path = write_idx(tmp_path / "img.idx", 0x803, (3, 28, 28), images.tobytes(), gz)
    lbl_path = write_idx(tmp_path / "lbl.idx", 0x801, (3,), labels.tobytes(), gz)

    got_images = read_idx_images(img_path)
    got_labels = read_idx_labels(str(lbl_path))

    assert got_images.dtype == np.uint8 and got_images.shape == (3, 28, 28)
    np.testing.assert_array_equal(got_images, images)
    assert got_labels.dtype == np.uint8
    np.testing.assert_array_equal(got_labels, labels)
    got_images[0, 0, 0] ^= 1  # results must be writable copies, not views of a bytes buffer


def test_read_idx_empty_file_set(tmp_path: Path) -> None:
    path = write_idx(tmp_path / "empty.idx", 0x803, (0, 28, 28), b"", gz=False)
    assert read_idx_images(path).shape == (0, 28, 28)


@pytest.mark.parametrize(
    ("name", "magic", "dims", "data", "gz", "reason"),
    [
        ("labels-as-images.gz", 0x801, (2,), b"\x01\x02", True, "magic"),
        ("truncated.idx", 0x803, (2, 28, 28), bytes(28 * 28 + 5), False, "truncated"),
        ("trailing.idx", 0x803, (1, 28, 28), bytes(28 * 28 + 1), False, "trailing"),
        ("small.idx", 0x803, (1, 27, 28), bytes(27 * 28), False, "27x28"),
    ],
)
def test_bad_image_files_raise_decode_error_naming_the_file(
    tmp_path: Path, name: str, magic: int, dims: tuple[int, ...], data: bytes, gz: bool,
    reason: str,
) -> None:
    path = write_idx(tmp_path / name, magic, dims, data, gz)
    with pytest.raises(DecodeError) as info:
        read_idx_images(path)
    assert info.value.path == str(path)
    assert name in str(info.value)
    assert reason in info.value.reason


def test_truncated_header_and_tiny_file(tmp_path: Path) -> None:
    header_only = tmp_path / "header.idx"
    header_only.write_bytes((0x803).to_bytes(4, "big") + (1).to_bytes(4, "big"))
    with pytest.raises(DecodeError, match="header.idx.*header"):
        read_idx_images(header_only)
    tiny = tmp_path / "tiny.idx"
    tiny.write_bytes(b"\x00\x00")
    with pytest.raises(DecodeError, match="tiny.idx"):
        read_idx_labels(tiny)


def test_cut_gzip_stream_raises_decode_error(tmp_path: Path) -> None:
    whole = write_idx(tmp_path / "whole.gz", 0x803, (2, 28, 28), fake_images(2).tobytes(), True)
    cut = tmp_path / "cut.gz"
    cut.write_bytes(whole.read_bytes()[:60])
    with pytest.raises(DecodeError, match="cut.gz"):
        read_idx_images(cut)


def test_missing_file_and_non_digit_label(tmp_path: Path) -> None:
    with pytest.raises(DecodeError, match="absent.gz"):
        read_idx_labels(tmp_path / "absent.gz")
    bad = write_idx(tmp_path / "labels.idx", 0x801, (2,), bytes([3, 12]), gz=False)
    with pytest.raises(DecodeError, match="labels.idx.*12"):
        read_idx_labels(bad)


def test_load_mnist_accepts_plain_files_and_checks_counts(tmp_path: Path) -> None:
    write_mnist_split(tmp_path, "t10k", fake_images(4), np.array([1, 2, 3, 4]), gz=False)
    images, labels = load_mnist(tmp_path, "t10k")
    assert images.shape == (4, 28, 28) and labels.tolist() == [1, 2, 3, 4]

    write_mnist_split(tmp_path, "train", fake_images(4), np.array([1, 2, 3]))
    with pytest.raises(DecodeError, match="3 labels for 4 images"):
        load_mnist(tmp_path, "train")
    with pytest.raises(ConfigError):
        load_mnist(tmp_path, "validation")


# ------------------------------------------------------------------------------- captions


def test_template_sets_are_large_and_disjoint() -> None:
    assert len(TRAIN_TEMPLATES) >= 40 and len(HELDOUT_TEMPLATES) >= 15
    assert len(set(TRAIN_TEMPLATES)) == len(TRAIN_TEMPLATES)
    assert len(set(HELDOUT_TEMPLATES)) == len(HELDOUT_TEMPLATES)
    assert not set(TRAIN_TEMPLATES) & set(HELDOUT_TEMPLATES)
    train_texts = {text for text, _ in captions("train")}
    heldout_texts = {text for text, _ in captions("heldout")}
    assert not train_texts & heldout_texts
    for template in TRAIN_TEMPLATES + HELDOUT_TEMPLATES:
        assert "{" in template, template


@pytest.mark.parametrize("split", ["train", "heldout"])
def test_captions_cover_every_digit_with_numerals_and_words(split: str) -> None:
    pairs = captions(split)
    templates = TRAIN_TEMPLATES if split == "train" else HELDOUT_TEMPLATES
    assert len(pairs) == 10 * len(templates)
    assert pairs == captions(split)  # deterministic order
    assert {label for _, label in pairs} == {str(d) for d in range(10)}
    for digit, word in enumerate(DIGIT_WORDS):
        texts = [text for text, label in pairs if label == str(digit)]
        assert len(texts) == len(templates)
        assert any(word in text.lower().split() or f"{word}," in text.lower() for text in texts)
        assert any(str(digit) in text for text in texts)
        for text in texts:
            assert word in text.lower() or str(digit) in text, text
            other = [w for w in DIGIT_WORDS if w != word]
            assert not any(w in text.lower().split() for w in other), text


def test_captions_include_the_core_phrasings_and_good_grammar() -> None:
    texts = {text for text, _ in captions("train")} | {text for text, _ in captions("heldout")}
    for expected in ("7", "seven", "the digit seven", "a handwritten seven",
                     "someone saying seven", "the number 7", "a photo of a 7",
                     "a spoken seven", "a recording of a person saying seven", "digit: 7",
                     "it's a seven", "handwritten numeral 7", "the word seven",
                     "it's an eight", "a photo of an 8"):
        assert expected in texts, expected
    assert not [t for t in texts if re.search(r"\ba (eight|8)\b", t)]
    labels = {label for text, label in captions("train") if text == "seven"}
    assert labels == {"7"}


def test_captions_unknown_split() -> None:
    with pytest.raises(ConfigError, match="test"):
        captions("test")


# ----------------------------------------------------------------------------------- FSDD


def test_fsdd_recordings_parse_names_and_skip_strays(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    for name in ("7_theo_12.wav", "0_george_3.wav", "7_theo_2.wav", "9_yweweler_49.wav"):
        write_wav(tmp_path / name)
    for stray in ("notes.txt", "7_theo.wav", "x_theo_1.wav", "12_theo_1.wav", "7_theo_1.WAV"):
        (tmp_path / stray).write_bytes(b"")
    (tmp_path / "3_lucas_1.wav").mkdir()  # a folder, not a recording

    with caplog.at_level(logging.WARNING, logger="starter.digits_world"):
        recs = fsdd_recordings(tmp_path)

    assert [r.path.name for r in recs] == ["0_george_3.wav", "7_theo_12.wav", "7_theo_2.wav",
                                           "9_yweweler_49.wav"]
    assert recs[1] == FsddRecording(tmp_path / "7_theo_12.wav", "7", "theo", 12)
    assert recs[0].digit == "0" and recs[0].speaker == "george" and recs[0].index == 3
    assert fsdd_speakers(recs) == ["george", "theo", "yweweler"]
    assert "ignored 5 file(s)" in caplog.text and "notes.txt" in caplog.text
    recs[0].path.stat()  # the paths point at real files


def test_fsdd_recordings_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="nowhere"):
        fsdd_recordings(tmp_path / "nowhere")


# ------------------------------------------------------------------------ class balancing


def test_select_class_balanced() -> None:
    labels = np.array([0, 1, 2] * 10 + [2] * 5)
    picked = select_class_balanced(labels, 4, seed=3)
    assert picked.tolist() == sorted(picked.tolist())
    assert len(set(picked.tolist())) == 12
    assert np.bincount(labels[picked]).tolist() == [4, 4, 4]
    np.testing.assert_array_equal(picked, select_class_balanced(labels, 4, seed=3))
    assert not np.array_equal(picked, select_class_balanced(labels, 4, seed=4))
    with pytest.raises(ConfigError, match="fewer than 11"):
        select_class_balanced(labels, 11, seed=0)


# ---------------------------------------------------------------------------- lists


def test_write_digits_lists_splits_and_counts(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    paths = write_digits_lists(data_dir, out, holdout_speakers=["bob"])
    assert set(paths) == {"train", "eval", "eval_multilingual", "holdout_bob"}
    assert paths["train"] == out / "train.jsonl"

    train = by_modality(read_item_list(paths["train"]))
    assert len(train["image"]) == 12
    multilingual = multilingual_captions("train")
    assert len(train["text"]) == len(captions("train")) + len(multilingual)
    assert {(a.meta["speaker"], a.meta["index"]) for a in train["audio"]} == {
        ("alice", 5), ("alice", 49)}
    assert len(train["audio"]) == 4
    assert {t.text for t in train["text"]} == {text for text, _ in captions("train")} | {t for t, _, _ in multilingual}
    heldout = by_modality(read_item_list(paths["eval_multilingual"]))["text"]
    assert {t.meta["lang"] for t in heldout} == {"en", "zh-Hans", "zh-Hant", "es", "fr", "de"}
    assert not {t.text for t in heldout} & {t.text for t in train["text"]}

    evaluation = by_modality(read_item_list(paths["eval"]))
    assert len(evaluation["image"]) == 7
    assert len(evaluation["audio"]) == 8  # index 0-4 of both speakers, held out or not
    assert {a.meta["index"] for a in evaluation["audio"]} == {0, 4}
    assert {a.meta["speaker"] for a in evaluation["audio"]} == {"alice", "bob"}
    assert len(evaluation["text"]) == len(captions("heldout"))

    holdout = by_modality(read_item_list(paths["holdout_bob"]))
    assert len(holdout["audio"]) == 8
    assert {a.meta["speaker"] for a in holdout["audio"]} == {"bob"}
    assert {a.meta["index"] for a in holdout["audio"]} == set(FAKE_INDEXES)
    assert len(holdout["image"]) == 7
    assert len(holdout["text"]) == len(captions("heldout"))

    for items in (train, evaluation, holdout):
        for audio in items["audio"]:
            assert audio.path.is_file()
            assert audio.label == audio.path.name.split("_")[0]
        for image in items["image"]:
            assert image.path.is_file()


def test_item_list_paths_and_png_contents(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    paths = write_digits_lists(data_dir, out)
    assert set(paths) == {"train", "eval", "eval_multilingual"}
    rows = [json.loads(line) for line in paths["eval"].read_text().splitlines()]
    image_rows = [r for r in rows if r["modality"] == "image"]
    audio_rows = [r for r in rows if r["modality"] == "audio"]
    assert all(not Path(r["path"]).is_absolute() for r in image_rows)
    assert all(Path(r["path"]).is_absolute() for r in audio_rows)
    assert image_rows[0]["path"] == "mnist/t10k/00000_0.png"

    images, labels = load_mnist(data_dir / "mnist", "t10k")
    items = [i for i in read_item_list(paths["eval"]) if i.modality == "image"]
    for index, item in enumerate(items):
        assert item.label == str(labels[index])
        with Image.open(item.path) as img:
            assert img.size == (28, 28) and img.mode == "L"
            np.testing.assert_array_equal(np.asarray(img), images[index])
    assert not list(out.rglob("*.tmp"))


def test_rerun_keeps_existing_pngs_and_replaces_wrong_ones(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    write_digits_lists(data_dir, out)
    first = out / "mnist" / "train" / "00000_0.png"
    second = out / "mnist" / "train" / "00001_1.png"
    mtime = first.stat().st_mtime_ns
    Image.new("L", (5, 5)).save(second)  # a stale PNG of the wrong size must be rewritten
    write_digits_lists(data_dir, out)
    assert first.stat().st_mtime_ns == mtime
    with Image.open(second) as img:
        assert img.size == (28, 28)


def test_limits_and_bad_arguments(data_dir: Path, tmp_path: Path) -> None:
    paths = write_digits_lists(data_dir, tmp_path / "out", mnist_train_limit=5,
                                   mnist_test_limit=3)
    assert len(by_modality(read_item_list(paths["train"]))["image"]) == 5
    assert len(by_modality(read_item_list(paths["eval"]))["image"]) == 3
    # with no holdout, every speaker's training takes are in train.jsonl
    assert len(by_modality(read_item_list(paths["train"]))["audio"]) == 8

    with pytest.raises(ConfigError, match="carol"):
        write_digits_lists(data_dir, tmp_path / "out2", holdout_speakers=["carol"])
    with pytest.raises(ConfigError, match="mnist_test_limit"):
        write_digits_lists(data_dir, tmp_path / "out3", mnist_test_limit=-1)


def test_missing_mnist_file_raises_decode_error(data_dir: Path, tmp_path: Path) -> None:
    (data_dir / "mnist" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DecodeError, match="t10k-labels-idx1-ubyte"):
        write_digits_lists(data_dir, tmp_path / "out")


# ------------------------------------------------------------------------------- scripts


def run_script(name: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "scripts" / name), *args], cwd=cwd,
                          capture_output=True, text=True, check=False, timeout=120)


def test_prepare_script_prints_summary(data_dir: Path, tmp_path: Path) -> None:
    assert run_script("prepare_digits_data.py", "--help", cwd=tmp_path).returncode == 0
    done = run_script("prepare_digits_data.py", "--data", str(data_dir), "--out",
                      str(tmp_path / "out"), "--holdout-speakers", "alice,bob",
                      "--mnist-train-limit", "4", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    lists = summary["lists"]
    assert set(lists) == {"train", "eval", "eval_multilingual", "holdout_alice", "holdout_bob"}
    texts = len(captions("train")) + len(multilingual_captions("train"))
    assert lists["train"]["by_modality"] == {"image": 4, "text": texts}
    assert lists["holdout_bob"]["by_modality"]["audio"] == 8

    failed = run_script("prepare_digits_data.py", "--data", str(data_dir), "--out",
                        str(tmp_path / "out"), "--holdout-speakers", "zed", cwd=tmp_path)
    assert failed.returncode == 2 and "zed" in failed.stderr


def test_build_demo_corpus_script(tmp_path: Path) -> None:
    data = tmp_path / "data"
    labels = np.arange(320) % 10
    write_mnist_split(data / "mnist", "t10k", fake_images(320), labels)
    for index in (0, 4, 5):
        write_wav(data / "fsdd" / "recordings" / f"2_alice_{index}.wav")
    out = tmp_path / "corpus"
    done = run_script("build_demo_corpus.py", "--data", str(data), "--out", str(out),
                      cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    items = by_modality(read_item_list(out / "items.jsonl"))
    assert len(items["image"]) == 300
    assert sorted(p.name for p in (out / "audio").iterdir()) == ["2_alice_0.wav",
                                                                 "2_alice_4.wav"]
    notes = [it for it in items["text"] if it.meta.get("source") == "note"]
    assert len(notes) >= 30 and len({it.text for it in items["text"]}) == len(items["text"])
    assert not (out / "text").exists()  # texts live in the list only, so nothing is indexed twice
    assert "CC BY-SA 4.0" in (out / "ATTRIBUTION.md").read_text()


def test_shipped_demo_corpus_is_consistent() -> None:
    corpus = REPO / "crossmodal" / "demo" / "corpus"
    total = sum(p.stat().st_size for p in corpus.rglob("*") if p.is_file())
    assert total <= 15 * 1024 * 1024
    items = by_modality(read_item_list(corpus / "items.jsonl"))
    assert len(items["image"]) == 300 and len(items["audio"]) == 300
    assert all(item.path.is_file() for item in items["image"] + items["audio"])
    for modality in ("image", "audio", "text"):
        assert {item.label for item in items[modality]} == {str(d) for d in range(10)}
    attribution = (corpus / "ATTRIBUTION.md").read_text()
    for needle in ("Free Spoken Digit Dataset", "CC BY-SA 4.0", "LeCun", "CC BY-SA 3.0"):
        assert needle in attribution


@pytest.mark.slow
def test_starter_training_script_end_to_end(data_dir: Path, tmp_path: Path) -> None:
    """The shipped model's recipe, on miniature data: trains, keeps the best epoch, and scores it
    on the held-out split, unseen fonts and the held-out speaker."""
    done = run_script("train_starter_model.py", "--data", str(data_dir), "--out", str(tmp_path / "model"),
                      "--work", str(tmp_path / "work"), "--holdout-speakers", "alice", "--epochs", "1",
                      "--steps-per-epoch", "2", "--typeset-per-digit", "2",
                      "--batch-sizes", '{"image": 8, "audio": 4, "text": 8}', "-q", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    metrics = summary["metrics"]
    assert {"validation", "heldout", "unseen_speaker_alice"} <= set(metrics)
    assert set(metrics["unseen_speaker_alice"]) == {"audio->image", "audio->text"}
    assert metrics["unseen_speaker_alice"]["audio->text"]["queries"] == 8
    saved = json.loads((tmp_path / "model" / "config.json").read_text())
    assert saved["metrics"]["heldout"] == metrics["heldout"]
    assert saved["trained_on"]["holdout_speakers"] == ["alice"]


@pytest.mark.slow
def test_unseen_voice_probe_learns_the_digits_and_reports_the_held_out_voice(tmp_path: Path) -> None:
    """Two "digits" that differ in pitch, three speakers: a few dozen steps learn them, and the
    held-out speaker's clips (never trained on) are all scored."""
    rec_dir = tmp_path / "data" / "fsdd" / "recordings"
    rng = np.random.default_rng(0)
    for speaker in ("alice", "bob", "carol"):
        for digit, hz in (("3", 300.0), ("8", 1500.0)):
            for index in range(5, 11):
                t = np.arange(int(8000 * rng.uniform(0.3, 0.5))) / 8000.0
                tone = 0.3 * np.sin(2 * np.pi * hz * rng.uniform(0.95, 1.05) * t)
                rec_dir.mkdir(parents=True, exist_ok=True)
                sf.write(rec_dir / f"{digit}_{speaker}_{index}.wav", tone, 8000, subtype="PCM_16")
    done = run_script("probe_unseen_voice.py", "--data", str(tmp_path / "data"), "--holdout", "carol",
                      "--steps", "40", "--batch", "16", "--threads", "1", "-q",
                      "--audio-augment", '{"reverb_prob": 0.5}', cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["holdout"] == "carol" and summary["clips"] == 12
    assert summary["accuracy"] >= 0.9, summary

    unknown = run_script("probe_unseen_voice.py", "--data", str(tmp_path / "data"), "--holdout", "zed",
                         cwd=tmp_path)
    assert unknown.returncode == 1 and "zed" in unknown.stderr
    bad = run_script("probe_unseen_voice.py", "--data", str(tmp_path / "data"), "--holdout", "carol",
                     "--audio-augment", '{"no_such_option": 1}', cwd=tmp_path)
    assert bad.returncode == 2 and "--audio-augment" in bad.stderr
