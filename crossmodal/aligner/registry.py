"""Where aligners come from: shipped architecture configs and shipped trained checkpoints.

``list_aligners()`` lists both. A reference is a shipped checkpoint name (``starter``), a
checkpoint folder, a shipped config name, or a path to an aligner config JSON.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from crossmodal.aligner.checkpoint import CONFIG_FILE, load_checkpoint
from crossmodal.aligner.config import AlignerCfg
from crossmodal.aligner.model import Aligner
from crossmodal.errors import CheckpointError, ConfigError

CONFIGS_DIR = Path(__file__).with_name("configs")
PRETRAINED_DIR = Path(__file__).with_name("pretrained")
DEFAULT_MODEL = "starter"


def list_aligner_configs() -> list[str]:
    """Architecture configs shipped with crossmodal (untrained; for `crossmodal train`)."""
    return sorted(p.stem for p in CONFIGS_DIR.glob("*.json"))


def list_pretrained() -> list[str]:
    """Trained checkpoints shipped with crossmodal."""
    return sorted(p.name for p in PRETRAINED_DIR.iterdir() if (p / CONFIG_FILE).is_file()) \
        if PRETRAINED_DIR.is_dir() else []


def list_aligners() -> dict[str, list[str]]:
    return {"pretrained": list_pretrained(), "configs": list_aligner_configs()}


def read_aligner_config(ref: str | Path) -> AlignerCfg:
    """An architecture config by shipped name or JSON path."""
    path = Path(ref)
    if not path.suffix == ".json":
        path = CONFIGS_DIR / f"{ref}.json"
        if not path.is_file():
            raise ConfigError(f"unknown aligner config {ref!r}; shipped: {list_aligner_configs()}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"aligner config {path} does not exist") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: unreadable aligner config ({exc})") from None
    try:
        return AlignerCfg.from_dict(data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def create_aligner(ref: str | Path | AlignerCfg) -> Aligner:
    """A freshly initialised aligner (open_clip backbones with their pretrained weights)."""
    cfg = ref if isinstance(ref, AlignerCfg) else read_aligner_config(ref)
    return Aligner(cfg)


def resolve_checkpoint(ref: str | Path) -> Path:
    """Folder of a trained aligner: a shipped name or a folder (or its config.json)."""
    path = Path(ref)
    if path.name == CONFIG_FILE and path.is_file():
        return path.parent
    if path.is_dir():
        return path
    shipped = PRETRAINED_DIR / str(ref)
    if (shipped / CONFIG_FILE).is_file():
        return shipped
    raise CheckpointError(
        f"no trained aligner {str(ref)!r}: not a checkpoint folder, and shipped models are "
        f"{list_pretrained()}")


def load_aligner(ref: str | Path = DEFAULT_MODEL, device: str | torch.device = "cpu") -> Aligner:
    """Load a trained aligner by shipped name or checkpoint folder."""
    return load_checkpoint(resolve_checkpoint(ref), device)
