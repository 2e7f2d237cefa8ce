"""Typed aligner configuration, read from and written to JSON.

An aligner is one *tower* per modality (a backbone and a projection head into the shared
space). Backbone settings differ per backbone type, so each type has its own dataclass; the
JSON form is ``{"type": "...", ...fields}``. Unknown keys are errors, so a typo in a config
never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from crossmodal.errors import ConfigError
from crossmodal.media import MODALITIES


def _build(cls: type, data: dict[str, Any], where: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected an object, got {type(data).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)}; allowed: {sorted(names)}")
    try:
        return cls(**data)
    except TypeError as exc:
        raise ConfigError(f"{where}: {exc}") from None


@dataclass
class OpenClipTextCfg:
    """A stand-alone open_clip text transformer (`CLIPTextCfg` fields) with its tokenizer."""

    type: str = "open_clip_text"
    text_cfg: dict = field(default_factory=lambda: {
        "context_length": 24, "width": 64, "heads": 4, "layers": 2})
    output_dim: int = 128


@dataclass
class OpenClipCfg:
    """A text or image tower taken from an open_clip CLIP model.

    ``model`` is an open_clip model name (built in, one of crossmodal's own small configs, or
    a path to a JSON model config); ``pretrained`` is an open_clip tag (downloads when online),
    a local checkpoint path, or null for random initialisation. ``frozen`` backbones with
    external weights are not copied into crossmodal checkpoints; they are re-read from
    ``pretrained`` and verified by ``pretrained_sha256`` when that is a file.
    """

    type: str = "open_clip"
    model: str = "ViT-B-32"
    pretrained: str | None = None
    pretrained_sha256: str | None = None
    frozen: bool = True


@dataclass
class DigitCnnCfg:
    """A small CNN for small grayscale images, with ink-centred preprocessing (MNIST-style)."""

    type: str = "digit_cnn"
    image_size: int = 28
    channels: list[int] = field(default_factory=lambda: [32, 64, 128])
    output_dim: int = 256
    dropout: float = 0.1


@dataclass
class AudioCnnCfg:
    """Log-mel front end at one fixed sample rate, then a CNN with length-aware pooling.

    Every input is downmixed and resampled to ``sample_rate``; ``f_max`` band-limits the front
    end to what the training audio holds. Each clip's log-mel spectrum is floored
    ``dynamic_range_db`` below its peak, so digital silence and a quiet noise floor look alike.
    Leading and trailing silence quieter than ``trim_top_db`` below the peak is trimmed; longer
    audio is cut into windows of ``window_seconds`` every ``hop_seconds``.
    """

    type: str = "audio_cnn"
    sample_rate: int = 8000
    n_fft: int = 256
    win_length: int = 256
    hop_length: int = 80
    n_mels: int = 40
    f_min: float = 20.0
    f_max: float = 4000.0
    dynamic_range_db: float = 80.0
    trim_top_db: float = 35.0
    window_seconds: float = 2.0
    hop_seconds: float = 1.0
    min_seconds: float = 0.25
    channels: list[int] = field(default_factory=lambda: [32, 64, 128, 128])
    output_dim: int = 256
    dropout: float = 0.1


@dataclass
class ClapAudioCfg:
    """The audio side of a pretrained CLAP model (transformers' ``ClapModel``), always frozen.

    Its output is CLAP's own normalised audio embedding; a trained head carries it into the
    aligner's space, trained on pairs or through text alone (docs/bridge.md). ``model`` is a
    folder written by ``save_pretrained`` or a Hugging Face hub id (downloaded once). The
    weights are never copied into crossmodal checkpoints, so ``sha256`` (a digest of the
    folder's config and weights files) and, for a hub id, ``revision`` (its commit) are filled in
    when first loaded and checked on every later load: a head is never paired with other weights.
    CLAP hears 48 kHz audio in windows of at most 10 s; longer sounds are cut like any audio.
    """

    type: str = "clap_audio"
    model: str = "laion/clap-htsat-unfused"
    revision: str | None = None
    sha256: str | None = None
    sample_rate: int = 48000
    window_seconds: float = 10.0
    hop_seconds: float = 5.0
    trim_top_db: float = 60.0
    min_seconds: float = 0.1
    frozen: bool = True


@dataclass
class HeadCfg:
    """Projection head into the shared space: identity (backbone already there), linear or MLP."""

    type: str = "mlp"
    hidden_dim: int = 256
    dropout: float = 0.0


@dataclass
class FrozenTowerCfg:
    """A trained tower of another aligner, used whole and frozen as a backbone.

    Its output is that aligner's normalised embedding (``embed_dim`` wide); the tower's own
    head is then a bridge into this aligner's space. A model bridged through text alone from an
    audio–text model keeps that model's audio tower this way, weights included in its checkpoint.
    ``source`` names the model it came from.
    """

    type: str = "tower"
    backbone: Any = None
    head: HeadCfg = field(default_factory=HeadCfg)
    embed_dim: int = 128
    source: str = ""
    frozen: bool = True


BACKBONE_TYPES: dict[str, type] = {
    "open_clip_text": OpenClipTextCfg,
    "open_clip": OpenClipCfg,
    "digit_cnn": DigitCnnCfg,
    "audio_cnn": AudioCnnCfg,
    "clap_audio": ClapAudioCfg,
    "tower": FrozenTowerCfg,
}
BACKBONES_FOR: dict[str, tuple[str, ...]] = {
    "text": ("open_clip_text", "open_clip"),
    "image": ("digit_cnn", "open_clip"),
    "audio": ("audio_cnn", "clap_audio", "tower"),
}
HEAD_TYPES = ("identity", "linear", "mlp")


def _head_cfg(raw: Any, where: str) -> HeadCfg:
    head = _build(HeadCfg, raw, where)
    if head.type not in HEAD_TYPES:
        raise ConfigError(f"{where}: type {head.type!r} unknown; use one of {list(HEAD_TYPES)}")
    return head


def backbone_cfg(modality: str, raw: Any, where: str, nested: bool = True) -> Any:
    """A backbone config of a type ``modality`` allows; a frozen tower's inner backbone and head
    are parsed the same way (one level deep: a tower inside a tower is refused)."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected an object, got {type(raw).__name__}")
    bb = dict(raw)
    kind = bb.get("type")
    allowed = [k for k in BACKBONES_FOR[modality] if nested or k != "tower"]
    if kind not in allowed:
        raise ConfigError(f"{where}: type {kind!r} is not a {modality} backbone; use one of {allowed}")
    if kind == "tower":
        if "backbone" not in bb:
            raise ConfigError(f"{where}: a frozen tower needs its 'backbone' object")
        bb["backbone"] = backbone_cfg(modality, bb["backbone"], f"{where}.backbone", nested=False)
        bb["head"] = _head_cfg(bb.get("head", {}), f"{where}.head")
    return _build(BACKBONE_TYPES[kind], bb, where)


@dataclass
class TowerCfg:
    backbone: Any
    head: HeadCfg


@dataclass
class AlignerCfg:
    """The whole aligner: shared dimension, one tower per modality, temperature settings."""

    name: str
    embed_dim: int
    towers: dict[str, TowerCfg]
    logit_scale_init: float = math.log(1 / 0.07)
    logit_scale_max: float = math.log(100.0)
    description: str = ""

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(m for m in MODALITIES if m in self.towers)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AlignerCfg:
        """Validate and build from the JSON form, naming the offending key on error."""
        if not isinstance(data, dict):
            raise ConfigError("aligner config must be a JSON object")
        allowed = {"name", "embed_dim", "towers", "logit_scale_init", "logit_scale_max", "description"}
        unknown = set(data) - allowed
        if unknown:
            raise ConfigError(f"aligner config: unknown key(s) {sorted(unknown)}")
        for key in ("name", "embed_dim", "towers"):
            if key not in data:
                raise ConfigError(f"aligner config: missing {key!r}")
        if not isinstance(data["embed_dim"], int) or data["embed_dim"] <= 0:
            raise ConfigError("aligner config: 'embed_dim' must be a positive integer")
        towers_raw = data["towers"]
        if not isinstance(towers_raw, dict) or not towers_raw:
            raise ConfigError("aligner config: 'towers' must be a non-empty object")
        towers: dict[str, TowerCfg] = {}
        for modality, raw in towers_raw.items():
            where = f"aligner config: towers.{modality}"
            if modality not in MODALITIES:
                raise ConfigError(f"{where}: unknown modality; use one of {list(MODALITIES)}")
            if not isinstance(raw, dict) or "backbone" not in raw:
                raise ConfigError(f"{where}: needs a 'backbone' object")
            extra = set(raw) - {"backbone", "head"}
            if extra:
                raise ConfigError(f"{where}: unknown key(s) {sorted(extra)}")
            backbone = backbone_cfg(modality, raw["backbone"], f"{where}.backbone")
            head = _head_cfg(raw.get("head", {}), f"{where}.head")
            towers[modality] = TowerCfg(backbone=backbone, head=head)
        rest = {k: data[k] for k in ("logit_scale_init", "logit_scale_max", "description") if k in data}
        return cls(name=str(data["name"]), embed_dim=data["embed_dim"], towers=towers, **rest)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "embed_dim": self.embed_dim,
            "description": self.description,
            "logit_scale_init": self.logit_scale_init,
            "logit_scale_max": self.logit_scale_max,
            "towers": {
                m: {"backbone": dataclasses.asdict(t.backbone), "head": dataclasses.asdict(t.head)}
                for m, t in self.towers.items()
            },
        }
