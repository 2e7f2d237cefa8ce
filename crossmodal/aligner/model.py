"""The aligner: one tower per modality into one L2-normalised shared space.

Low-level ``encode_*`` methods take model-ready tensors (training uses them); ``embed_*``
methods take decoded media (strings, Pillow images, waveforms), batch them, and return
float32 numpy arrays for indexing and search.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.nn import functional as F

from crossmodal.aligner.audio_towers import AudioCnnBackbone
from crossmodal.aligner.config import (
    AlignerCfg,
    AudioCnnCfg,
    ClapAudioCfg,
    DigitCnnCfg,
    FrozenTowerCfg,
    OpenClipCfg,
    OpenClipTextCfg,
)
from crossmodal.aligner.frozen_tower import FrozenTowerBackbone
from crossmodal.aligner.heads import build_head
from crossmodal.aligner.image_towers import DigitCnnBackbone, OpenClipImageBackbone
from crossmodal.aligner.open_clip_source import OpenClipBundle, load_open_clip
from crossmodal.aligner.text_towers import OpenClipTextBackbone, StandaloneTextBackbone
from crossmodal.errors import ConfigError
from crossmodal.media import Waveform


class Tower(nn.Module):
    """A backbone and its projection head; output is L2-normalised."""

    def __init__(self, backbone: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, *inputs: torch.Tensor, normalize: bool = True, **kwargs) -> torch.Tensor:
        out = self.head(self.backbone(*inputs, **kwargs))
        return F.normalize(out, dim=-1) if normalize else out


@dataclass(frozen=True)
class AudioEmbedding:
    """The window vectors of one clip with their time spans, and one vector for the clip."""

    vectors: np.ndarray
    starts: np.ndarray
    ends: np.ndarray

    @property
    def clip_vector(self) -> np.ndarray:
        """Mean of the window vectors, renormalised: one vector standing for the whole clip."""
        mean = self.vectors.mean(axis=0)
        norm = float(np.linalg.norm(mean))
        return (mean / norm if norm > 0 else self.vectors[0]).astype(np.float32)


def _batches(n: int, size: int) -> Iterable[slice]:
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


@contextmanager
def _evaluating(model: nn.Module) -> Iterator[None]:
    """Run in eval mode whatever mode the caller left, then restore it.

    In training mode BatchNorm normalises by the batch's own statistics and dropout is random,
    so an item's vector would depend on its companions; inference must not. A model already in
    eval mode (the usual case, shared by server threads) is not touched.
    """
    training = [m for m in model.modules() if m.training]
    if not training:
        yield
        return
    model.eval()
    try:
        yield
    finally:
        for module in training:
            module.training = True


class Aligner(nn.Module):
    """Text, image and audio towers sharing one embedding space and a learnable temperature."""

    def __init__(self, cfg: AlignerCfg) -> None:
        super().__init__()
        self.cfg = cfg
        bundles: dict[tuple[str, str | None], OpenClipBundle] = {}
        towers: dict[str, Tower] = {}
        for modality, tower_cfg in cfg.towers.items():
            backbone = self._build_backbone(modality, tower_cfg.backbone, bundles)
            head = build_head(tower_cfg.head, backbone.output_dim, cfg.embed_dim)
            towers[modality] = Tower(backbone, head)
        self.towers = nn.ModuleDict(towers)
        self.logit_scale = nn.Parameter(torch.tensor(float(cfg.logit_scale_init)))
        self.model_id = f"{cfg.name}@untrained"
        self.checkpoint_dir: Path | None = None
        self.checkpoint_config: dict | None = None
        # Set when the model is its pretrained weights as they are (no checkpoint to checksum):
        # what ties a collection's vectors to those weights (see `registry.pretrained_identity`).
        self.weights_sha256: str | None = None
        self.weights_source: dict | None = None
        self.eval()

    @staticmethod
    def _build_backbone(modality: str, bb: object, bundles: dict) -> nn.Module:
        if isinstance(bb, OpenClipTextCfg):
            return StandaloneTextBackbone(bb)
        if isinstance(bb, DigitCnnCfg):
            return DigitCnnBackbone(bb)
        if isinstance(bb, AudioCnnCfg):
            return AudioCnnBackbone(bb)
        if isinstance(bb, ClapAudioCfg):
            from crossmodal.aligner.clap_towers import ClapAudioBackbone, load_clap

            bundle = load_clap(bb.model, bb.revision, bb.sha256)
            bb.sha256, bb.revision = bundle.sha256, bundle.revision or bb.revision
            if bundle.revision is None:  # a folder: recorded as an absolute path, loadable from anywhere
                bb.model = str(bundle.folder)
            return ClapAudioBackbone(bb, bundle)
        if isinstance(bb, FrozenTowerCfg):
            inner = Aligner._build_backbone(modality, bb.backbone, bundles)
            return FrozenTowerBackbone(inner, build_head(bb.head, inner.output_dim, bb.embed_dim), bb.embed_dim)
        if isinstance(bb, OpenClipCfg):
            key = (bb.model, bb.pretrained)
            if key not in bundles:
                bundles[key] = load_open_clip(bb.model, bb.pretrained, bb.pretrained_sha256)
            bundle = bundles[key]
            if bb.pretrained and bundle.pretrained_sha256:  # every tower sharing the file records its checksum
                bb.pretrained_sha256 = bundle.pretrained_sha256
            if modality == "text":
                return OpenClipTextBackbone(bundle)
            return OpenClipImageBackbone(bundle)
        raise ConfigError(f"no backbone for {modality}: {bb!r}")

    @property
    def modalities(self) -> tuple[str, ...]:
        return self.cfg.modalities

    @property
    def embed_dim(self) -> int:
        return self.cfg.embed_dim

    @property
    def device(self) -> torch.device:
        return self.logit_scale.device

    def tower(self, modality: str) -> Tower:
        if modality not in self.towers:
            raise ConfigError(f"aligner {self.cfg.name!r} has no {modality} tower (it has {list(self.modalities)})")
        return self.towers[modality]

    def clamp_logit_scale(self) -> None:
        """Keep the temperature in [1, 100] as open_clip does after every optimiser step."""
        with torch.no_grad():
            self.logit_scale.clamp_(0.0, self.cfg.logit_scale_max)

    # Low-level encoders on model-ready tensors.
    def encode_text(self, tokens: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        return self.tower("text")(tokens, normalize=normalize)

    def encode_image(self, pixels: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        return self.tower("image")(pixels, normalize=normalize)

    def encode_audio(self, waves: torch.Tensor, lengths: torch.Tensor, normalize: bool = True,
                     feature_augment=None) -> torch.Tensor:
        return self.tower("audio")(waves, lengths, normalize=normalize, feature_augment=feature_augment)

    # Preprocessing of decoded media.
    def tokenize(self, texts: Sequence[str]) -> torch.Tensor:
        return self.tower("text").backbone.tokenize(list(texts))

    def preprocess_image(self, image: Image.Image) -> torch.Tensor:
        return self.tower("image").backbone.preprocess(image)

    # High-level embedding of decoded media.
    @torch.inference_mode()
    def embed_texts(self, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
        """One normalised vector per string (every string is tokenised to the same length)."""
        out = np.zeros((len(texts), self.embed_dim), dtype=np.float32)
        with _evaluating(self):
            for sl in _batches(len(texts), batch_size):
                tokens = self.tokenize(texts[sl]).to(self.device)
                out[sl] = self.encode_text(tokens).float().cpu().numpy()
        return out

    @torch.inference_mode()
    def embed_images(self, images: Sequence[Image.Image], batch_size: int = 256,
                     tower: nn.Module | None = None) -> np.ndarray:
        """One normalised vector per image (each is preprocessed to the same size on its own);
        ``tower`` runs instead of the image tower when given (an int8 copy of it, for indexing)."""
        out = np.zeros((len(images), self.embed_dim), dtype=np.float32)
        with _evaluating(self):
            for sl in _batches(len(images), batch_size):
                pixels = torch.stack([self.preprocess_image(img) for img in images[sl]]).to(self.device)
                vectors = self.encode_image(pixels) if tower is None else tower(pixels, normalize=True)
                out[sl] = vectors.float().cpu().numpy()
        return out

    @torch.inference_mode()
    def embed_audio(self, clips: Sequence[Waveform], batch_size: int = 128,
                    sources: Sequence[str] | None = None) -> list[AudioEmbedding]:
        """Window vectors (with start/end seconds) for each clip; see `AudioEmbedding.clip_vector`.

        Windows are batched by length to waste little on padding; the audio backbone keeps
        padding out of every window's own steps, so a window's vector does not depend on them.
        """
        backbone: AudioCnnBackbone = self.tower("audio").backbone
        windows, owner = [], []
        for i, clip in enumerate(clips):
            source = sources[i] if sources is not None else f"audio clip {i}"
            for w in backbone.windows(clip, source):
                windows.append(w)
                owner.append(i)
        vectors = np.zeros((len(windows), self.embed_dim), dtype=np.float32)
        order = np.argsort([w.samples.size for w in windows], kind="stable")
        with _evaluating(self):
            for sl in _batches(len(windows), batch_size):
                idx = order[sl]
                waves, lengths = backbone.collate([windows[j].samples for j in idx])
                vectors[idx] = self.encode_audio(waves.to(self.device), lengths.to(self.device)).float().cpu().numpy()
        owner_arr = np.asarray(owner)
        result = []
        for i in range(len(clips)):
            sel = np.flatnonzero(owner_arr == i)
            result.append(AudioEmbedding(
                vectors=vectors[sel],
                starts=np.array([windows[j].start for j in sel], dtype=np.float64),
                ends=np.array([windows[j].end for j in sel], dtype=np.float64)))
        return result

    def embed_audio_clips(self, clips: Sequence[Waveform], batch_size: int = 128) -> np.ndarray:
        """One vector per clip (mean of its windows, renormalised)."""
        embedded = self.embed_audio(clips, batch_size)
        return np.stack([e.clip_vector for e in embedded]) if embedded else \
            np.zeros((0, self.embed_dim), dtype=np.float32)
