"""A trained tower of another aligner, used whole and frozen as a backbone (`FrozenTowerCfg`)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from crossmodal.media import Waveform


class FrozenTowerBackbone(nn.Module):
    """Another aligner's backbone and head, frozen: its normalised embedding is this backbone's
    output, so the tower's own head (the bridge) is all that is trained. The inner backbone's
    windowing and batching are passed through, so the aligner feeds it as it fed the original."""

    always_frozen = True  # training caches its features and trains the bridge head only

    def __init__(self, backbone: nn.Module, head: nn.Module, embed_dim: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.requires_grad_(False)
        self.cfg = getattr(backbone, "cfg", None)
        self.output_dim = embed_dim

    def train(self, mode: bool = True) -> FrozenTowerBackbone:
        """Stay in eval mode: BatchNorm and dropout of a frozen tower must not change its vectors."""
        super().train(False)
        return self

    def windows(self, wave: Waveform, source: str = "audio") -> list[Any]:
        return self.backbone.windows(wave, source)

    def collate(self, chunks: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        return self.backbone.collate(chunks)

    def tokenize(self, texts: list[str]) -> torch.Tensor:
        return self.backbone.tokenize(texts)

    def preprocess(self, image: Any) -> torch.Tensor:
        return self.backbone.preprocess(image)

    def forward(self, *inputs: torch.Tensor, feature_augment: Any = None) -> torch.Tensor:
        """Augmentation is ignored: the tower is frozen and its features are cached for training."""
        return F.normalize(self.head(self.backbone(*inputs)), dim=-1)
