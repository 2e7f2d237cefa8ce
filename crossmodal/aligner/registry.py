"""Where aligners come from, and which weights a loaded one stands for.

A model reference (``--model``) is one of:

- a trained checkpoint: a shipped name (``starter``) or a checkpoint folder;
- ``open_clip:ARCH/PRETRAINED``: an open_clip architecture used as it is, no training, for
  text and images (its two towers already share one space). PRETRAINED is an open_clip tag
  (downloaded when online) or a local weights file, everything after the first ``/``;
- an aligner config (a shipped name or a JSON path) whose towers are all pretrained open_clip
  towers with identity heads, so it too needs no training (``clip-vit-b-32``). A config that
  needs training is refused with the command that trains it.

An aligner built without a checkpoint carries no checksum of its own, so the weights it was
built from become its identity (`pretrained_identity`): the file's SHA-256 for a local file,
the architecture and tag for a download. A collection records it and refuses other weights.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crossmodal.aligner.checkpoint import CONFIG_FILE, load_checkpoint
from crossmodal.aligner.config import AlignerCfg, ClapAudioCfg, OpenClipCfg
from crossmodal.errors import CheckpointError, ConfigError

if TYPE_CHECKING:  # torch loads with a model, not with this module (references resolve without it)
    import torch

    from crossmodal.aligner.model import Aligner

CONFIGS_DIR = Path(__file__).with_name("configs")
PRETRAINED_DIR = Path(__file__).with_name("pretrained")
DEFAULT_MODEL = "starter"
OPEN_CLIP_PREFIX = "open_clip:"
OPEN_CLIP_EXAMPLE = "open_clip:ViT-B-32/laion2b_s34b_b79k"
WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin", ".ckpt")


def list_aligner_configs() -> list[str]:
    """Architecture configs shipped with crossmodal."""
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
    from crossmodal.aligner.model import Aligner

    cfg = ref if isinstance(ref, AlignerCfg) else read_aligner_config(ref)
    return Aligner(cfg)


def needs_training(cfg: AlignerCfg) -> list[str]:
    """What in ``cfg`` must be trained before it can embed anything meaningful (empty when
    every tower is a pretrained open_clip tower with an identity head)."""
    todo = []
    for modality, tower in cfg.towers.items():
        bb = tower.backbone
        if isinstance(bb, ClapAudioCfg):
            todo.append(f"its {modality} tower (CLAP {bb.model}) has a {tower.head.type} head to train into this space")
        elif not isinstance(bb, OpenClipCfg):
            todo.append(f"its {modality} tower ({bb.type}) starts from scratch")
        elif not bb.pretrained:
            todo.append(f"its {modality} tower ({bb.model}) has no pretrained weights")
        elif tower.head.type != "identity":
            todo.append(f"its {modality} tower has a {tower.head.type} head to train")
    return todo


def ready_configs() -> list[str]:
    """Shipped configs that work as models with no training."""
    return [name for name in list_aligner_configs() if not needs_training(read_aligner_config(name))]


def parse_open_clip_ref(ref: str) -> tuple[str, str]:
    """``open_clip:ARCH/PRETRAINED`` -> (ARCH, PRETRAINED); PRETRAINED is all after the first ``/``."""
    body = ref[len(OPEN_CLIP_PREFIX):] if ref.startswith(OPEN_CLIP_PREFIX) else ref
    arch, sep, pretrained = body.partition("/")
    if not sep or not arch.strip() or not pretrained.strip():
        raise ConfigError(
            f"model {ref!r}: expected open_clip:ARCH/PRETRAINED, such as {OPEN_CLIP_EXAMPLE} (an open_clip tag, "
            "downloaded once) or open_clip:ViT-B-32/models/vit-b-32.safetensors (a local weights file); "
            "`crossmodal models --open-clip` lists the architectures and their tags")
    return arch, pretrained


def _local_weights(pretrained: str) -> Path | None:
    """The weights file ``pretrained`` names (None for a tag); a path that is not there is an error."""
    path = Path(pretrained).expanduser()
    if path.is_file():
        return path.resolve()
    if any(sep in pretrained for sep in ("/", "\\")) or pretrained.endswith(WEIGHT_SUFFIXES):
        raise CheckpointError(f"open_clip weights file {pretrained} does not exist")
    return None


def open_clip_config(arch: str, pretrained: str) -> AlignerCfg:
    """The aligner of ``open_clip:ARCH/PRETRAINED``: the architecture's text and image towers
    with identity heads. A local file is named by its absolute path; a tag must be one open_clip
    knows for the architecture (checked here, before any download)."""
    import open_clip

    from crossmodal.aligner.open_clip_source import list_open_clip_models

    if arch not in list_open_clip_models():
        raise ConfigError(f"unknown open_clip architecture {arch!r}; `crossmodal models --open-clip` lists them")
    local = _local_weights(pretrained)
    if local is None:
        tags = open_clip.list_pretrained_tags_by_model(arch)
        if pretrained not in tags:
            known = f"its tags are {', '.join(tags)}" if tags else "open_clip knows no tags for it"
            raise ConfigError(f"open_clip {arch} has no pretrained tag {pretrained!r} ({known}); "
                              "or give a local weights file: open_clip:ARCH/path/to/weights.safetensors")
    backbone = {"type": "open_clip", "model": arch, "pretrained": str(local or pretrained), "frozen": True}
    return AlignerCfg.from_dict({
        "name": f"open_clip:{arch}", "embed_dim": int(open_clip.get_model_config(arch)["embed_dim"]),
        "description": f"open_clip {arch} ({local.name if local else pretrained}) text and image towers as "
                       "they are, no training; no audio tower",
        "towers": {m: {"backbone": dict(backbone), "head": {"type": "identity"}} for m in ("text", "image")}})


def canonical_ref(ref: str | Path) -> str:
    """The reference a collection records: what loads the same model from any folder (local
    files and folders as absolute paths)."""
    text = str(ref)
    if text.startswith(OPEN_CLIP_PREFIX):
        arch, pretrained = parse_open_clip_ref(text)
        path = Path(pretrained).expanduser()
        return f"{OPEN_CLIP_PREFIX}{arch}/{path.resolve() if path.is_file() else pretrained}"
    return str(Path(text).resolve()) if Path(text).exists() else text


def reference_of(aligner: Aligner) -> str:
    """What loads ``aligner`` again, for a collection built from an aligner already in memory: a
    shipped model by its name, a checkpoint by its folder, pretrained open_clip towers by their
    ``open_clip:ARCH/PRETRAINED`` reference."""
    folder = aligner.checkpoint_dir
    if folder is not None:
        shipped = PRETRAINED_DIR / folder.name
        return folder.name if shipped.exists() and folder.resolve() == shipped.resolve() else str(folder)
    source = weights_source(aligner.cfg)
    if source and not needs_training(aligner.cfg):
        tower = next(iter(source.values()))
        return f"{OPEN_CLIP_PREFIX}{tower['architecture']}/{tower['pretrained']}"
    return DEFAULT_MODEL


def weights_source(cfg: AlignerCfg) -> dict[str, dict[str, Any]]:
    """Per tower, the open_clip architecture and the weights it was built from (a tag, or a file
    with its SHA-256, filled in when the aligner was built)."""
    out = {}
    for modality, tower in cfg.towers.items():
        bb = tower.backbone
        if isinstance(bb, OpenClipCfg):
            out[modality] = {"architecture": bb.model, "pretrained": bb.pretrained, "sha256": bb.pretrained_sha256}
    return out


def source_identity(source: dict[str, dict[str, Any]]) -> dict[str, list[str | None]]:
    """What makes two sources the same weights: per tower the architecture and the file's
    SHA-256 (wherever the file lies) or the tag."""
    return {m: [s.get("architecture"), s.get("sha256") or s.get("pretrained")] for m, s in sorted(source.items())}


def pretrained_identity(cfg: AlignerCfg) -> tuple[str, str | None]:
    """(model id, SHA-256) of an aligner made of pretrained towers only. One source: the tag
    (``open_clip:ViT-B-32/laion2b_s34b_b79k``, no checksum) or the file (its name and SHA-256).
    Several: a digest of them all."""
    source = weights_source(cfg)
    distinct = {json.dumps(v) for v in source_identity(source).values()}
    if len(source) == len(cfg.towers) and len(distinct) == 1:
        first = next(iter(source.values()))
        if first["sha256"]:
            name = Path(first["pretrained"]).name
            return f"{OPEN_CLIP_PREFIX}{first['architecture']}/{name}@{first['sha256'][:12]}", first["sha256"]
        return f"{OPEN_CLIP_PREFIX}{first['architecture']}/{first['pretrained']}", None
    digest = hashlib.sha256(json.dumps(source_identity(source), sort_keys=True).encode()).hexdigest()
    return f"{cfg.name}@{digest[:12]}", digest


def _ready(cfg: AlignerCfg, device: str | torch.device) -> Aligner:
    from crossmodal.aligner.model import Aligner

    aligner = Aligner(cfg)
    aligner.model_id, aligner.weights_sha256 = pretrained_identity(cfg)
    aligner.weights_source = weights_source(cfg)
    return aligner.to(device).eval()


def _config_named(ref: str | Path) -> AlignerCfg | None:
    """The aligner config ``ref`` names (shipped name or JSON file), or None when it names none."""
    text = str(ref)
    if (CONFIGS_DIR / f"{text}.json").is_file() or (text.endswith(".json") and Path(text).is_file()):
        return read_aligner_config(text)
    return None


def resolve_checkpoint(ref: str | Path) -> Path | None:
    """Folder of a trained aligner: a shipped name or a folder (or its config.json); None when
    ``ref`` names neither."""
    path = Path(ref)
    if path.name == CONFIG_FILE and path.is_file():
        return path.parent
    if path.is_dir():
        return path
    shipped = PRETRAINED_DIR / str(ref)
    return shipped if (shipped / CONFIG_FILE).is_file() else None


def _refuse_clap_folder(folder: Path) -> None:
    """A CLAP folder given as a model embeds into CLAP's space, not an image–text one: say how
    to make a model of it instead of calling it a broken checkpoint."""
    try:
        config = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    if isinstance(config, dict) and config.get("model_type") == "clap":
        raise CheckpointError(
            f"{folder} is a CLAP model (transformers), not a crossmodal model: its audio tower needs a head into an "
            f"image-text space first. Bridge it through text (`crossmodal bridge --image-text {OPEN_CLIP_EXAMPLE} "
            f"--audio-text {folder} --out models/clap-bridge`) or train one on pairs (`crossmodal train --config "
            "clip-vit-b-32-clap ...`, with its audio backbone's model set to this folder), then use that --model")


def load_aligner(ref: str | Path = DEFAULT_MODEL, device: str | torch.device = "cpu") -> Aligner:
    """The model ``ref`` names: a trained checkpoint, ``open_clip:ARCH/PRETRAINED``, or a config
    that needs no training (see the module docstring)."""
    text = str(ref)
    if text.startswith(OPEN_CLIP_PREFIX):
        return _ready(open_clip_config(*parse_open_clip_ref(text)), device)
    folder = resolve_checkpoint(ref)
    if folder is not None:
        _refuse_clap_folder(folder)
        return load_checkpoint(folder, device)
    cfg = _config_named(ref)
    if cfg is None:
        raise CheckpointError(
            f"no trained aligner {text!r}: not a checkpoint folder, a shipped model ({', '.join(list_pretrained())}), "
            f"an aligner config or open_clip:ARCH/PRETRAINED (such as {OPEN_CLIP_EXAMPLE}); "
            "`crossmodal models` lists the routes")
    todo = needs_training(cfg)
    if todo:
        frozen = [m for m, t in cfg.towers.items() if isinstance(t.backbone, ClapAudioCfg)
                  or (isinstance(t.backbone, OpenClipCfg) and t.backbone.pretrained)]
        freeze = f" --freeze-backbones {','.join(frozen)}" if frozen else ""
        clap = [t.backbone.model for t in cfg.towers.values() if isinstance(t.backbone, ClapAudioCfg)]
        bridge = (f"; or, with no pairs at all, bridge CLAP into an image–text model through text: `crossmodal bridge "
                  f"--image-text {OPEN_CLIP_EXAMPLE} --audio-text {clap[0]} --out models/clap-bridge`") if clap else ""
        raise CheckpointError(
            f"{text!r} is an aligner config that needs training before it can be used as a model "
            f"({'; '.join(todo)}): train it with `crossmodal train --config {text} --list pairs.jsonl{freeze} "
            f"--out models/{cfg.name}`, then use `--model models/{cfg.name}`{bridge}. Configs that need no training: "
            f"{', '.join(ready_configs()) or 'none'}; or --model {OPEN_CLIP_EXAMPLE}")
    return _ready(cfg, device)


def missing_tower_reason(aligner: Aligner, modality: str) -> str:
    """Why ``aligner`` cannot embed ``modality`` input, and how to get a model that can (the
    one reason given for every such file skipped, query or target refused)."""
    has = " and ".join(aligner.modalities)
    if modality == "audio":
        how = ("to add one, train an audio tower into this model's space on pairs of sounds with texts or images "
               "(`crossmodal train --config clip-vit-b-32-audio --list pairs.jsonl --freeze-backbones text,image "
               "--out models/clip-audio`) and index into a new collection with `--model models/clip-audio`, or "
               "bridge a pretrained CLAP audio tower into it through text alone (`crossmodal bridge --image-text MODEL "
               "--audio-text laion/clap-htsat-unfused --out models/clap-bridge`); `crossmodal models` lists the routes")
    else:
        how = (f"use a model with a {modality} tower (`crossmodal models` lists the routes; "
               "`crossmodal train --config NAME ...` trains one)")
    return f"the model {aligner.model_id} has no {modality} tower (it embeds {has} only); {how}"
