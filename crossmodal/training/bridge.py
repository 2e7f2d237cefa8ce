"""Bridging an audio–text model into an image–text model's space through text alone.

Both models have a text tower, so captions embedded by both give pairs of vectors, one in
each space, with no audio and no image at all. A head trained to map the first space onto
the second is then put on the audio–text model's audio tower: sounds land in the image–text
space and search images and texts there. This is C-MCR ("connecting multi-modal contrastive
representations", Wang et al., 2023) in its simplest form:

- inputs and targets are L2-normalised, as both spaces are compared by cosine;
- Gaussian noise is added to the source text vectors while training. Within one contrastive
  model, audio vectors sit apart from text vectors (the modality gap), so a head that only ever
  saw exact text vectors would be asked about points it never met; the noise spreads each
  caption over a ball that also covers where its sounds lie;
- the loss is InfoNCE over each batch of caption pairs (each mapped caption must be nearest its
  own target) plus the squared distance to the target.

The audio–text model is a pretrained CLAP (a folder or hub id, through transformers) or a
crossmodal checkpoint with text and audio towers; the image–text model is anything
`load_aligner` loads. The result is a checkpoint folder: the image–text model's towers, and
the audio–text model's audio tower (frozen) under the trained head.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from tqdm import tqdm

from crossmodal.aligner.checkpoint import CONFIG_FILE, FORMAT, load_checkpoint, save_aligner
from crossmodal.aligner.config import FrozenTowerCfg, HeadCfg, TowerCfg
from crossmodal.aligner.frozen_tower import FrozenTowerBackbone
from crossmodal.aligner.heads import build_head
from crossmodal.aligner.model import Tower
from crossmodal.aligner.registry import canonical_ref, load_aligner, resolve_checkpoint
from crossmodal.errors import ConfigError, InputError
from crossmodal.training.trainer import seed_everything, warmup_cosine

LOG = logging.getLogger(__name__)
DEFAULT_CAPTIONS = Path(__file__).resolve().parents[1] / "aligner" / "captions" / "sounds-and-scenes.txt"
MIN_CAPTIONS = 20


@dataclass
class BridgeCfg:
    """How the bridge head is trained; saved into the checkpoint so a bridge can be redone."""

    head: str = "mlp"
    hidden_dim: int = 1024
    noise: float = 1.0  # expected norm of the Gaussian noise added to each unit source vector
    steps: int = 3000
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int = 100
    temperature: float = 0.05
    mse_weight: float = 1.0
    val_fraction: float = 0.1
    seed: int = 0

    def check(self) -> None:
        """Refuse values that cannot train, naming the field."""
        if self.head not in ("linear", "mlp"):
            raise ConfigError(f"bridge head: {self.head!r} unknown; use linear or mlp")
        for name in ("hidden_dim", "steps", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"bridge {name}: must be at least 1, got {getattr(self, name)}")
        for name in ("noise", "lr", "weight_decay", "mse_weight"):
            if not getattr(self, name) >= 0:
                raise ConfigError(f"bridge {name}: must be 0 or more, got {getattr(self, name)}")
        if not self.temperature > 0:
            raise ConfigError(f"bridge temperature: must be above 0, got {self.temperature}")
        if not 0 <= self.val_fraction < 0.5:
            raise ConfigError(f"bridge val_fraction: must be in [0, 0.5), got {self.val_fraction}")


class AudioTextSource(Protocol):
    """An audio–text model to bridge: its text vectors, and its audio tower as a frozen backbone."""

    ref: str
    model_id: str

    def embed_texts(self, texts: list[str]) -> np.ndarray: ...

    def audio_backbone(self) -> tuple[Any, nn.Module]: ...


class ClapSource:
    """A pretrained CLAP model: its text tower for the captions, its audio tower as the backbone."""

    def __init__(self, ref: str) -> None:
        from crossmodal.aligner.clap_towers import load_clap

        self.bundle = load_clap(ref)
        self.ref = str(self.bundle.folder) if self.bundle.revision is None else ref
        self.model_id = f"clap:{Path(self.ref).name if self.bundle.revision is None else ref}@{self.bundle.sha256[:12]}"

    def embed_texts(self, texts: list[str]) -> np.ndarray:
        return self.bundle.embed_texts(texts)

    def audio_backbone(self) -> tuple[Any, nn.Module]:
        from crossmodal.aligner.clap_towers import ClapAudioBackbone
        from crossmodal.aligner.config import ClapAudioCfg

        cfg = ClapAudioCfg(model=self.ref, revision=self.bundle.revision, sha256=self.bundle.sha256,
                           sample_rate=self.bundle.sample_rate)
        return cfg, ClapAudioBackbone(cfg, self.bundle)


class AlignerSource:
    """A crossmodal model with text and audio towers (trained on audio–text pairs)."""

    def __init__(self, ref: str) -> None:
        self.aligner = load_aligner(ref)
        missing = [m for m in ("text", "audio") if m not in self.aligner.modalities]
        if missing:
            raise ConfigError(f"--audio-text {ref}: the model {self.aligner.model_id} has no "
                              f"{' and no '.join(missing)} tower; bridging needs both")
        self.ref = canonical_ref(ref)
        self.model_id = self.aligner.model_id

    def embed_texts(self, texts: list[str]) -> np.ndarray:
        return self.aligner.embed_texts(texts)

    def audio_backbone(self) -> tuple[Any, nn.Module]:
        tower = self.aligner.tower("audio")
        tower_cfg = self.aligner.cfg.towers["audio"]
        if isinstance(tower_cfg.backbone, FrozenTowerCfg):
            raise ConfigError(f"--audio-text {self.ref}: its audio tower is already a bridge; bridge the model it "
                              f"came from ({tower_cfg.backbone.source}) instead")
        cfg = FrozenTowerCfg(backbone=tower_cfg.backbone, head=tower_cfg.head, embed_dim=self.aligner.embed_dim,
                             source=self.model_id)
        return cfg, FrozenTowerBackbone(tower.backbone, tower.head, self.aligner.embed_dim)


def _is_crossmodal_model(ref: str) -> bool:
    folder = resolve_checkpoint(ref)
    if folder is None or not (folder / CONFIG_FILE).is_file():
        return False
    try:
        return json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8")).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def open_audio_text(ref: str | Path) -> AudioTextSource:
    """A crossmodal checkpoint (or shipped model) with text and audio towers, else CLAP (a folder
    written by ``save_pretrained`` or a hub id)."""
    text = str(ref)
    return AlignerSource(text) if _is_crossmodal_model(text) else ClapSource(text)


def read_captions(path: str | Path) -> list[str]:
    """Distinct non-empty lines of a UTF-8 text file (lines starting with ``#`` are comments)."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise InputError(f"captions file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"captions file {path}: unreadable ({exc})") from None
    captions = list(dict.fromkeys(s for s in (line.strip() for line in lines) if s and not s.startswith("#")))
    if len(captions) < MIN_CAPTIONS:
        raise InputError(f"captions file {path}: {len(captions)} distinct captions; a bridge needs at least "
                         f"{MIN_CAPTIONS} (one description per line, of the sounds and scenes to search)")
    return captions


def _unit(x: np.ndarray) -> torch.Tensor:
    t = torch.from_numpy(np.asarray(x, dtype=np.float32))
    return F.normalize(t, dim=-1)


@torch.no_grad()
def pair_scores(head: nn.Module, source: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
    """How well ``head`` carries captions across: mean cosine of each mapped caption with its
    target, and recall@1 of finding its own target among all of ``target``."""
    head.eval()
    mapped = F.normalize(head(source), dim=-1)
    cos = (mapped * target).sum(-1)
    hits = (mapped @ target.T).argmax(-1) == torch.arange(len(target))
    return {"mean_cosine": round(float(cos.mean()), 4), "recall@1": round(float(hits.float().mean()), 4),
            "captions": len(target)}


def fit_bridge_head(source: np.ndarray, target: np.ndarray, cfg: BridgeCfg,
                    progress: bool = True) -> tuple[nn.Module, dict[str, Any]]:
    """Train a head from the source text space to the target one on paired caption vectors.

    ``val_fraction`` of the captions is held out and scored before and after training, so the
    report says what the training bought; the head returned is the one after the last step.
    """
    cfg.check()
    if len(source) != len(target):
        raise ConfigError(f"bridge: {len(source)} source vectors but {len(target)} target vectors")
    seed_everything(cfg.seed)
    src, tgt = _unit(source), _unit(target)
    order = np.random.default_rng(cfg.seed).permutation(len(src))
    n_val = int(round(cfg.val_fraction * len(src)))
    val, fit = torch.from_numpy(order[:n_val]), torch.from_numpy(order[n_val:])
    head = build_head(HeadCfg(type=cfg.head, hidden_dim=cfg.hidden_dim), src.shape[1], tgt.shape[1])
    check = val if n_val else fit
    report: dict[str, Any] = {"untrained": {"validation": pair_scores(head, src[check], tgt[check])}}
    optimizer = torch.optim.AdamW(head.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    warmup = min(cfg.warmup_steps, max(1, cfg.steps // 10))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: warmup_cosine(s, cfg.steps, warmup))
    generator = torch.Generator().manual_seed(cfg.seed)
    sigma = cfg.noise / math.sqrt(src.shape[1])
    batch = min(cfg.batch_size, len(fit))
    losses: list[float] = []
    head.train()
    bar = tqdm(range(cfg.steps), desc="bridge", unit="step", disable=not progress, leave=False)
    for _ in bar:
        idx = fit[torch.randperm(len(fit), generator=generator)[:batch]]
        x = src[idx]
        if sigma > 0:
            x = F.normalize(x + sigma * torch.randn(x.shape, generator=generator), dim=-1)
        y = F.normalize(head(x), dim=-1)
        t = tgt[idx]
        logits = y @ t.T / cfg.temperature
        labels = torch.arange(len(idx))
        loss = 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels))
        loss = loss + cfg.mse_weight * ((y - t) ** 2).sum(-1).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        losses.append(float(loss.detach()))
        if len(losses) % 50 == 0:
            bar.set_postfix(loss=f"{np.mean(losses[-50:]):.3f}")
    head.eval()
    report["trained"] = {"validation": pair_scores(head, src[check], tgt[check]),
                         "fit": pair_scores(head, src[fit], tgt[fit]),
                         "final_loss": round(float(np.mean(losses[-50:])), 4)}
    return head, report


def bridge_models(image_text: str | Path, audio_text: str | Path, out: str | Path,
                  captions: str | Path | None = None, cfg: BridgeCfg | None = None,
                  progress: bool = True) -> dict[str, Any]:
    """Train a bridge head on ``captions`` (default: the shipped caption list) and write the
    bridged model to ``out``: ``image_text``'s towers (an audio tower it has is replaced) plus
    ``audio_text``'s audio tower under the head. Returns a summary for printing."""
    cfg = cfg or BridgeCfg()
    cfg.check()
    captions_path = Path(captions) if captions else DEFAULT_CAPTIONS
    texts = read_captions(captions_path)
    target = load_aligner(image_text)
    if "text" not in target.modalities:
        raise ConfigError(f"--image-text {image_text}: the model {target.model_id} has no text tower to bridge into")
    source = open_audio_text(audio_text)
    LOG.info("embedding %d captions with both text towers", len(texts))
    source_vecs = source.embed_texts(texts)
    target_vecs = target.embed_texts(texts)
    head, report = fit_bridge_head(source_vecs, target_vecs, cfg, progress)
    backbone_cfg, backbone = source.audio_backbone()
    replaced = "audio" in target.modalities
    towers = {m: t for m, t in target.cfg.towers.items() if m != "audio"}
    towers["audio"] = TowerCfg(backbone=backbone_cfg, head=HeadCfg(type=cfg.head, hidden_dim=cfg.hidden_dim))
    name = f"{target.cfg.name}+audio-bridge"
    target.cfg = dataclasses.replace(
        target.cfg, name=name, towers=towers,
        description=f"{target.model_id} with the audio tower of {source.model_id}, bridged into its space through "
                    f"{len(texts)} captions (no audio or image pairs)")
    target.towers["audio"] = Tower(backbone, head)
    captions_sha = hashlib.sha256("\n".join(texts).encode()).hexdigest()
    trained_on = {"route": "bridge through text", "image_text": {"ref": canonical_ref(image_text),
                                                                 "model_id": target.model_id},
                  "audio_text": {"ref": source.ref, "model_id": source.model_id},
                  "captions": {"file": str(captions_path.resolve()), "count": len(texts), "sha256": captions_sha},
                  "bridge_cfg": dataclasses.asdict(cfg), "replaced_audio_tower": replaced}
    save_aligner(target.to("cpu").eval(), out, trained_on=trained_on, metrics={"bridge": report})
    bridged = load_checkpoint(out)
    return {"checkpoint": str(Path(out).resolve()), "model_id": bridged.model_id,
            "modalities": list(bridged.modalities), "image_text": target.model_id, "audio_text": source.model_id,
            "captions": len(texts), "replaced_audio_tower": replaced, "bridge": report}
