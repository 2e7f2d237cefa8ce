"""Synthetic speakers for the digits world, from the speech synthesisers installed locally.

FSDD has six speakers; an audio tower trained on five of them learns those voices as much as
the words. Every distinct synthetic voice (engine, voice, accent, variant, pitch, tempo,
intonation) is one more speaker to average over. Three engines are used when present:
espeak-ng (formant synthesis, many accents and variants), flite and festival (diphone and
statistical voices built from recordings of real people). Voices are split by identity into
a training pool and an evaluation pool, so an evaluation never hears a voice that trained.
"""

from __future__ import annotations

import hashlib
import logging
import random
import shutil
import subprocess
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

from crossmodal.errors import ConfigError
from crossmodal.ingest.item_list import write_item_list

from .digits_world import DIGIT_WORDS

LOG = logging.getLogger(__name__)

ESPEAK_ACCENTS: tuple[str, ...] = (
    "en-gb", "en-us", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-rp", "en-gb-x-gbcwmd",
    "en-029", "en-us-nyc",
)
# Variants that stop sounding like a person (effects, announcers, test voices) are left out.
ESPEAK_SKIP_VARIANTS = frozenset({"Demonic", "Half-LifeAnnouncementSystem", "UniversalRobot", "fast_test",
                                  "croak", "Mr_Serious"})
FLITE_VOICES: tuple[str, ...] = ("kal", "kal16", "awb", "rms", "slt")
FESTIVAL_VOICES: tuple[str, ...] = ("kal_diphone", "ked_diphone", "cmu_us_slt_arctic_hts")
RECORDED_SPEAKERS = {"kal": "kal", "kal16": "kal", "kal_diphone": "kal", "slt": "slt",
                     "cmu_us_slt_arctic_hts": "slt", "ked_diphone": "ked", "awb": "awb", "rms": "rms"}
EVAL_RECORDED_SPEAKER = "rms"
PUNCTUATION: tuple[str, ...] = ("", ".", "!", "?", ",")
SYNTH_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class SyntheticVoice:
    """One synthetic speaker: an engine's voice with fixed prosody settings.

    ``pitch`` shifts espeak-ng's base pitch; the recorded voices of flite and festival keep
    their own (speed augmentation in training moves pitch for every voice alike)."""

    engine: str
    voice: str
    tempo: float
    pitch: int

    @property
    def identity(self) -> str:
        """The person or variant behind the voice, whatever the engine and prosody: the unit
        that train/eval pools split on (flite's and festival's "kal" are one man)."""
        if self.engine == "espeak-ng":
            return "espeak-ng:" + self.voice.split("+")[-1]
        return "recorded:" + RECORDED_SPEAKERS.get(self.voice, self.voice)

    @property
    def name(self) -> str:
        return f"{self.engine}-{self.voice}-t{self.tempo:.2f}-p{self.pitch}".replace("+", "_")


def installed_engines() -> dict[str, str]:
    """Engine name -> executable, for the synthesisers found on PATH."""
    found = {"espeak-ng": shutil.which("espeak-ng"), "flite": shutil.which("flite"),
             "festival": shutil.which("text2wave")}
    return {name: exe for name, exe in found.items() if exe}


def _espeak_variants(exe: str) -> list[str]:
    out = subprocess.run([exe, "--voices=variant"], capture_output=True, text=True, timeout=SYNTH_TIMEOUT_S)
    names = [line.split()[3] for line in out.stdout.splitlines()[1:] if len(line.split()) >= 5]
    return sorted(n for n in names if n not in ESPEAK_SKIP_VARIANTS)


def _festival_voices() -> list[str]:
    roots = [Path("/usr/share/festival/voices"), Path("/usr/local/share/festival/voices")]
    present = {p.name for root in roots if root.is_dir() for p in root.glob("*/*") if p.is_dir()}
    return [v for v in FESTIVAL_VOICES if v in present]


def voice_identities(engines: dict[str, str]) -> dict[str, list[str]]:
    """Engine -> the voice names it can speak English digits with here."""
    voices: dict[str, list[str]] = {}
    if "espeak-ng" in engines:
        variants = _espeak_variants(engines["espeak-ng"])
        voices["espeak-ng"] = [f"{accent}+{v}" for accent in ESPEAK_ACCENTS for v in variants]
    if "flite" in engines:
        voices["flite"] = list(FLITE_VOICES)
    if "festival" in engines:
        voices["festival"] = _festival_voices()
    return {e: v for e, v in voices.items() if v}


def in_eval_pool(identity: str, eval_fraction: float) -> bool:
    """Stable, seed-free split of voice identities: the same voice is always on the same side.

    The five recorded speakers are too few to hash; one of them is kept for evaluation."""
    if identity.startswith("recorded:"):
        return identity == f"recorded:{EVAL_RECORDED_SPEAKER}"
    digest = int(hashlib.sha256(identity.encode()).hexdigest()[:8], 16)
    return digest / 0xFFFFFFFF < eval_fraction


def draw_voices(engines: dict[str, str], count: int, pool: str, seed: int,
                eval_fraction: float = 0.2) -> list[SyntheticVoice]:
    """``count`` voices from one pool ("train" or "eval"), spread evenly over the engines.

    Engines with few voices (flite, festival) are drawn as often as espeak-ng's hundreds, each
    time with other prosody, because their voices are built from real speakers.
    """
    if pool not in ("train", "eval"):
        raise ConfigError(f"pool must be 'train' or 'eval', got {pool!r}")
    rng = random.Random(seed)
    by_engine = {}
    for engine, names in voice_identities(engines).items():
        keep = [n for n in names
                if in_eval_pool(SyntheticVoice(engine, n, 1.0, 0).identity, eval_fraction) == (pool == "eval")]
        if keep:
            by_engine[engine] = keep
    if not by_engine:
        raise ConfigError("no speech synthesiser with an English voice found for the "
                          f"{pool} pool; install one with: apt-get install espeak-ng flite festival")
    engine_order = sorted(by_engine)
    voices = []
    for i in range(count):
        engine = engine_order[i % len(engine_order)]
        pitch = rng.randint(-30, 30) if engine == "espeak-ng" else 0
        voices.append(SyntheticVoice(engine, rng.choice(by_engine[engine]), round(rng.uniform(0.75, 1.35), 2), pitch))
    return voices


def _command(voice: SyntheticVoice, exe: str, text: str, out: Path) -> tuple[list[str], str | None]:
    if voice.engine == "espeak-ng":
        speed = int(round(175 / voice.tempo))
        return [exe, "-v", voice.voice, "-s", str(speed), "-p", str(50 + voice.pitch), "-w", str(out), text], None
    if voice.engine == "flite":
        return [exe, "-voice", voice.voice, "--setf", f"duration_stretch={voice.tempo}",
                "-t", text, "-o", str(out)], None
    if voice.engine == "festival":
        setup = f"(voice_{voice.voice})(Parameter.set 'Duration_Stretch {voice.tempo})"
        return [exe, "-eval", f"(begin {setup})", "-o", str(out)], text
    raise ConfigError(f"unknown speech engine {voice.engine!r}")


def synthesize(voice: SyntheticVoice, engines: dict[str, str], text: str, out: Path) -> None:
    """Speak ``text`` into the WAV file ``out``; raises RuntimeError naming the voice on failure."""
    cmd, stdin = _command(voice, engines[voice.engine], text, out)
    result = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=SYNTH_TIMEOUT_S)
    if result.returncode != 0 or not out.is_file() or out.stat().st_size <= 44:
        raise RuntimeError(f"{voice.name}: synthesis of {text!r} failed: {result.stderr.strip()[:200]}")


def synthesize_digits(voices: Sequence[SyntheticVoice], engines: dict[str, str], out_dir: Path, seed: int,
                      progress: Callable[[Iterable], Iterable] | None = None, workers: int = 4) -> list[dict]:
    """Every voice says every digit word once (random trailing punctuation varies the
    intonation). Returns item-list rows with the voice in ``meta``, in voice order; failed
    syntheses are logged and left out. The synthesisers are separate processes, so a few run
    at once."""
    rng = random.Random(seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    jobs = [(voice, digit, word + rng.choice(PUNCTUATION), out_dir / f"{voice.name}_{digit}.wav")
            for voice in voices for digit, word in enumerate(DIGIT_WORDS)]

    def run(job: tuple[SyntheticVoice, int, str, Path]) -> dict | None:
        voice, digit, text, wav = job
        try:
            synthesize(voice, engines, text, wav)
        except (RuntimeError, subprocess.TimeoutExpired, OSError) as exc:
            LOG.warning("skipping %s", exc)
            return None
        return {"modality": "audio", "path": str(wav.resolve()), "label": str(digit),
                "meta": {"synthetic": True, "text": text, **asdict(voice)}}

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        results = pool.map(run, jobs)
        rows = list(progress(results) if progress else results)
    return [row for row in rows if row is not None]


def write_tts_list(out_dir: Path, pool: str, voices: int, seed: int, extra_rows: Sequence[dict] = (),
                       progress: Callable[[Iterable], Iterable] | None = None) -> tuple[Path, int]:
    """Synthesise ``voices`` speakers from ``pool`` into ``out_dir`` and write items.jsonl
    there (plus ``extra_rows``, such as galleries to search). Returns (item list path, rows)."""
    engines = installed_engines()
    if not engines:
        raise ConfigError("no speech synthesiser found; install one with: apt-get install espeak-ng flite festival")
    drawn = draw_voices(engines, voices, pool, seed)
    rows = synthesize_digits(drawn, engines, Path(out_dir), seed, progress)
    if not rows:
        raise ConfigError(f"every synthesis failed for the {pool} pool; see the warnings above")
    path = Path(out_dir) / "items.jsonl"
    return path, write_item_list(path, [*rows, *extra_rows])
