"""Real media files for tests: hostile ones, and a mixed folder built from the demo corpus."""

from __future__ import annotations

import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import soundfile as sf
from PIL import Image

from crossmodal.core import Engine, IndexReport
from crossmodal.demo.showcase import CORPUS_DIR
from crossmodal.settings import Settings


def index_paths(folder: Path, paths: list, settings: Settings | None = None, *, aligner=None, model=None,
                rebuild: bool = False, **kwargs) -> IndexReport:
    """Index ``paths`` into the collection at ``folder`` (created if needed) through the engine."""
    with Engine.open(folder, create=True, settings=settings or Settings(), aligner=aligner, model=model,
                     rebuild=rebuild) as engine:
        return engine.index(paths, **kwargs)


def remove_items(folder: Path, item_ids: list, uris: list, settings: Settings | None = None) -> tuple[int, list]:
    with Engine.open(folder, settings=settings or Settings()) as engine:
        report = engine.remove(item_ids, uris)
    return report.removed, report.not_found


def png_with_claimed_size(path: Path, width: int, height: int) -> None:
    """A tiny valid PNG whose IHDR is patched to claim a huge size (with a correct CRC)."""
    Image.new("L", (4, 4), 0).save(path)
    data = bytearray(path.read_bytes())
    assert data[12:16] == b"IHDR"
    body = b"IHDR" + struct.pack(">II", width, height) + bytes(data[24:29])
    data[12:29] = body
    data[29:33] = struct.pack(">I", zlib.crc32(body))
    path.write_bytes(bytes(data))


def corpus_files(modality: str, label: str, count: int) -> list[Path]:
    """Demo corpus files of one class (file names end in _<label>.png or start with <label>_)."""
    if modality == "image":
        files = sorted((CORPUS_DIR / "images").glob(f"*_{label}.png"))
    else:
        files = sorted((CORPUS_DIR / "audio").glob(f"{label}_*.wav"))
    assert len(files) >= count
    return files[:count]


def copy_digits(media: Path, images_per_label: int, audio_per_label: int) -> Path:
    """``media/images`` and ``media/audio`` holding the first few demo files of every digit."""
    for modality, sub, count in (("image", "images", images_per_label), ("audio", "audio", audio_per_label)):
        (media / sub).mkdir(parents=True, exist_ok=True)
        for label in "0123456789":
            for src in corpus_files(modality, label, count):
                shutil.copy(src, media / sub / src.name)
    return media


def allowed_item_ids(catalog, filters) -> set[int]:
    """The items a search with ``filters`` may return, straight from the catalog."""
    allowed_vectors = catalog.filter_vector_ids(
        modalities=filters.modalities or None, uri_glob=filters.uri_glob, meta=filters.meta or None,
        time_range=None if filters.after is None else (filters.after, filters.before))
    return {h.item_id for h in catalog.describe(allowed_vectors).values()}


def brute_force_top(catalog, vector, allowed_items: set[int], targets, k: int, calibration=None,
                    modality: str = "text") -> list[int]:
    """Item ids of the exact top k by best-vector cosine among ``allowed_items``: the reference
    the planner's filtered results must equal. With a ``calibration``, by calibrated z of a
    ``modality`` query in each vector's own index, in the planner's mixed order."""
    from crossmodal.search.scoring import mixed_order

    ids, mat = catalog.vectors(list(targets))
    hits = catalog.describe(ids)
    best: dict[int, float] = {}
    kind_of: dict[int, str] = {}
    for vid, score in zip(ids, mat @ vector):
        hit = hits[int(vid)]
        if calibration is not None:
            score = calibration.anchor(modality, hit.kind).z(score)
        if hit.item_id in allowed_items and score > best.get(hit.item_id, -1e9):
            best[hit.item_id], kind_of[hit.item_id] = float(score), hit.kind
    if calibration is None:
        return [i for i, _ in sorted(best.items(), key=lambda kv: -kv[1])[:k]]
    items = sorted(best)
    kinds = sorted(set(kind_of.values()))
    order = mixed_order(np.array([best[i] for i in items]), np.array([kinds.index(kind_of[i]) for i in items]), k)
    return [items[i] for i in order]


HOSTILE = {
    "truncated.png": "corrupt or truncated image",
    "empty.png": "file is empty",
    "fake.wav": "unsupported file type",
    "noise.jpg": "unsupported file type",
    "empty.txt": "file is empty",
    "binary.txt": "unsupported file type",
    "latin1.txt": "not UTF-8 text",
    "bomb.png": "too large",
    "corrupt.wav": "audio",
    "notes.py": "unsupported file type",
    "nan.wav": "NaN",
    "whitespace.md": "only whitespace",
}


def write_hostile(folder: Path) -> None:
    """A dozen files that must each be skipped with a reason naming them (see HOSTILE)."""
    folder.mkdir(parents=True, exist_ok=True)
    good_png = corpus_files("image", "1", 1)[0].read_bytes()
    (folder / "truncated.png").write_bytes(good_png[: len(good_png) // 2])
    (folder / "empty.png").write_bytes(b"")
    (folder / "fake.wav").write_text("this is text pretending to be audio\n")
    (folder / "noise.jpg").write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    (folder / "empty.txt").write_bytes(b"")
    (folder / "binary.txt").write_bytes(b"\x00\x01\x02binary\x00" * 50)
    (folder / "latin1.txt").write_bytes("caf\xe9 cr\xe8me br\xfbl\xe9e".encode("latin-1"))
    png_with_claimed_size(folder / "bomb.png", 20_000, 20_000)
    (folder / "corrupt.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + b"\xff" * 64)
    (folder / "notes.py").write_text("print('not indexable')\n")
    samples = np.zeros(4000, dtype=np.float32)
    samples[100] = np.nan
    sf.write(folder / "nan.wav", samples, 8000, subtype="FLOAT")
    (folder / "whitespace.md").write_text("   \n\n   \n")


def write_good(folder: Path) -> dict[str, int]:
    """Good files of every supported kind; returns the expected item counts by modality."""
    images, audio, text = folder / "images", folder / "audio", folder / "text"
    for d in (images, audio, text):
        d.mkdir(parents=True, exist_ok=True)
    for label in "0123":
        src = corpus_files("image", label, 1)[0]
        shutil.copy(src, images / f"digit_{label}.png")
    base = Image.open(corpus_files("image", "4", 1)[0]).convert("L").resize((56, 56))
    exif = Image.Exif()
    exif[0x0112] = 6
    base.rotate(90, expand=True).convert("RGB").save(images / "rotated.jpg", exif=exif)
    rgba = Image.merge("RGBA", [base] * 3 + [base])
    rgba.save(images / "alpha.png")
    frames = [base.convert("P"), Image.new("P", base.size, 0)]
    frames[0].save(images / "anim.gif", save_all=True, append_images=frames[1:], duration=100)
    Image.fromarray(np.asarray(base, dtype=np.uint16) * 257).save(images / "deep.png")
    Image.merge("RGB", [base] * 3).convert("CMYK").save(images / "cmyk.jpg")
    base.convert("RGB").save(images / "digit.webp")
    base.convert("RGB").save(images / "digit.bmp")
    base.save(images / "digit.tiff")
    shutil.copy(corpus_files("image", "7", 1)[0], folder / "seven.png")
    (folder / "seven.txt").write_text("a handwritten seven")
    shutil.copy(images / "digit_0.png", images / "copy_of_digit_0.png")

    clips = corpus_files("audio", "5", 3)
    for i, src in enumerate(clips):
        shutil.copy(src, audio / f"five_{i}.wav")
    wave, rate = sf.read(corpus_files("audio", "6", 1)[0], dtype="float32")
    sf.write(audio / "six.flac", wave, rate)
    sf.write(audio / "six.ogg", wave, rate, format="OGG", subtype="VORBIS")
    sf.write(audio / "six.mp3", wave, rate, format="MP3")
    import soxr

    hi = soxr.resample(wave, rate, 44100)
    sf.write(audio / "six_stereo_44k.wav", np.stack([hi, 0.5 * hi], axis=1), 44100)
    silence = np.zeros(int(1.5 * rate), dtype=np.float32)
    parts = []
    for label in "289":
        w, _ = sf.read(corpus_files("audio", label, 1)[0], dtype="float32")
        parts += [w, silence]
    sf.write(audio / "long.wav", np.concatenate(parts), rate)

    (text / "notes.txt").write_text("The digit seven.\n\nSomeone saying three.\n\n" + "A long paragraph. " * 80)
    (text / "readme.md").write_text("# Digits\n\nHandwritten and spoken digits from zero to nine.\n")
    return {"image": 13, "audio": 8, "text": 2, "files": 24}
