"""Aligner checkpoints: ``model.safetensors`` plus ``config.json`` in one folder.

The JSON carries the architecture, preprocessing, what the model was trained on, its
metrics and the SHA-256 of the weights file, so a checkpoint always carries its own config and
a config never pairs with the wrong weights. Weights are safetensors: loading never unpickles.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crossmodal import __version__
from crossmodal.aligner.config import AlignerCfg, ClapAudioCfg, FrozenTowerCfg, OpenClipCfg
from crossmodal.aligner.open_clip_source import file_sha256
from crossmodal.errors import CheckpointError, ConfigError

if TYPE_CHECKING:  # torch loads with a model, not with this module (its configs are read without it)
    import torch

    from crossmodal.aligner.model import Aligner

FORMAT = "crossmodal-aligner"
FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"


def external_prefixes(cfg: AlignerCfg) -> list[str]:
    """State-dict prefixes of frozen backbones whose weights live in their own pretrained files
    (open_clip files, CLAP folders); a frozen tower of another aligner is saved like any weights."""
    prefixes = []
    for modality, tower in cfg.towers.items():
        bb = tower.backbone
        if isinstance(bb, OpenClipCfg) and bb.frozen and bb.pretrained:
            inner = "clip." if modality == "text" else "visual."
            prefixes.append(f"towers.{modality}.backbone.{inner}")
        elif isinstance(bb, ClapAudioCfg):
            prefixes.append(f"towers.{modality}.backbone.clap.")
    return prefixes


def _own_state(aligner: Aligner) -> dict[str, torch.Tensor]:
    skip = tuple(external_prefixes(aligner.cfg))
    return {k: v.detach().cpu().contiguous().clone() for k, v in aligner.state_dict().items()
            if not k.startswith(skip)}


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def preprocess_info(aligner: Aligner) -> dict[str, Any]:
    """How each modality is prepared before the model, recorded for users and other tools."""
    info: dict[str, Any] = {}
    for modality, tower in aligner.cfg.towers.items():
        bb = tower.backbone.backbone if isinstance(tower.backbone, FrozenTowerCfg) else tower.backbone
        if modality == "audio":
            info["audio"] = {"sample_rate": bb.sample_rate, "mono": True, "f_max": getattr(bb, "f_max", None),
                             "window_seconds": bb.window_seconds, "hop_seconds": bb.hop_seconds,
                             "trim_top_db": bb.trim_top_db}
            if isinstance(bb, ClapAudioCfg):
                info["audio"]["front_end"] = f"CLAP feature extractor ({bb.model})"
        elif modality == "image":
            backbone = aligner.towers["image"].backbone
            info["image"] = getattr(backbone, "preprocess_cfg", None) or {
                "size": [bb.image_size, bb.image_size], "mode": "L", "method": "ink_centred"}
            info["image"] = json.loads(json.dumps(info["image"], default=list))
        else:
            info["text"] = {"tokenizer": "open_clip"}
    return info


def save_aligner(aligner: Aligner, directory: str | Path, *, trained_on: Any = None,
                 metrics: Any = None, extra: dict[str, Any] | None = None) -> Path:
    """Write weights then config, each atomically; the config names the weights' checksum."""
    from safetensors.torch import save as save_bytes

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    blob = save_bytes(_own_state(aligner), metadata={"format": FORMAT})
    _atomic_write_bytes(directory / WEIGHTS_FILE, blob)
    config = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "crossmodal_version": __version__,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "aligner": aligner.cfg.to_dict(),
        "preprocess": preprocess_info(aligner),
        "weights": {"file": WEIGHTS_FILE, "sha256": file_sha256(directory / WEIGHTS_FILE),
                    "external": external_prefixes(aligner.cfg)},
        "trained_on": trained_on,
        "metrics": metrics,
    }
    if extra:
        config.update(extra)
    _atomic_write_bytes(directory / CONFIG_FILE, (json.dumps(config, indent=2) + "\n").encode())
    return directory


def read_checkpoint_config(directory: str | Path) -> dict[str, Any]:
    """The parsed ``config.json`` of a checkpoint folder, with clear errors."""
    path = Path(directory) / CONFIG_FILE
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{directory}: not an aligner checkpoint (no {CONFIG_FILE})") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: unreadable checkpoint config ({exc})") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a crossmodal aligner config (format field missing or wrong)")
    if config.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format {config['format_version']} is newer than this crossmodal "
            f"understands ({FORMAT_VERSION}); upgrade crossmodal")
    return config


def load_checkpoint(directory: str | Path, device: str | torch.device = "cpu") -> Aligner:
    """Rebuild an aligner from a checkpoint folder, verifying checksum, keys and shapes."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from crossmodal.aligner.model import Aligner

    directory = Path(directory)
    config = read_checkpoint_config(directory)
    try:
        cfg = AlignerCfg.from_dict(config["aligner"])
    except (KeyError, ConfigError) as exc:
        raise CheckpointError(f"{directory / CONFIG_FILE}: invalid aligner section ({exc})") from None
    weights = directory / config.get("weights", {}).get("file", WEIGHTS_FILE)
    if not weights.is_file():
        raise CheckpointError(f"{directory}: weights file {weights.name} is missing")
    expected = config.get("weights", {}).get("sha256")
    actual = file_sha256(weights)
    if expected and actual != expected:
        raise CheckpointError(
            f"{weights}: checksum {actual[:12]}… does not match its config ({expected[:12]}…); "
            "the weights and the config come from different saves")
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{weights}: not a readable safetensors file ({exc})") from None
    aligner = Aligner(cfg)
    skip = tuple(external_prefixes(cfg))
    own = {k: v for k, v in aligner.state_dict().items() if not k.startswith(skip)}
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise CheckpointError(
            f"{weights}: weights do not match the config's architecture "
            f"(missing {missing[:3]}{'…' if len(missing) > 3 else ''}, "
            f"unexpected {unexpected[:3]}{'…' if len(unexpected) > 3 else ''})")
    for key, tensor in state.items():
        if tuple(tensor.shape) != tuple(own[key].shape):
            raise CheckpointError(
                f"{weights}: tensor {key} has shape {tuple(tensor.shape)}, config needs {tuple(own[key].shape)}")
    aligner.load_state_dict(state, strict=False)
    aligner.checkpoint_dir = directory
    aligner.checkpoint_config = config
    aligner.model_id = f"{cfg.name}@{actual[:12]}"
    return aligner.to(device).eval()
