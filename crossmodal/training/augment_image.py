"""Image augmentation on ink-centred glyph batches: what other hands, pens and scanners bring.

Affine distortion (rotation, scale, shear, shift), stroke width (dilate / erode), blur,
contrast, noise, occlusion and inverted colours. Works on (B, 1, H, W) tensors in [0, 1].
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch.nn import functional as F


@dataclass
class ImageAugmentCfg:
    rotate_deg: float = 18.0
    scale: tuple[float, float] = (0.75, 1.15)
    shear: float = 0.3
    shift: float = 0.15
    dilate_prob: float = 0.3
    erode_prob: float = 0.15
    blur_prob: float = 0.2
    noise_prob: float = 0.3
    noise_std: tuple[float, float] = (0.02, 0.25)
    contrast: tuple[float, float] = (0.5, 1.0)
    erase_prob: float = 0.1
    invert_prob: float = 0.05


class ImageAugment:
    def __init__(self, cfg: ImageAugmentCfg, seed: int) -> None:
        self.cfg = cfg
        self.generator = torch.Generator().manual_seed(seed)

    def _rand(self, *shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=self.generator)

    def _coin(self, b: int, p: float) -> torch.Tensor:
        return (self._rand(b) < p).view(b, 1, 1, 1)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        cfg = self.cfg
        b = x.shape[0]
        angle = (self._rand(b) * 2 - 1) * math.radians(cfg.rotate_deg)
        scale = cfg.scale[0] + (cfg.scale[1] - cfg.scale[0]) * self._rand(b)
        shear = (self._rand(b) * 2 - 1) * cfg.shear
        shift = (self._rand(b, 2) * 2 - 1) * cfg.shift
        cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
        theta = torch.stack([
            torch.stack([cos, -sin + shear * cos, shift[:, 0]], dim=1),
            torch.stack([sin, cos + shear * sin, shift[:, 1]], dim=1)], dim=1)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        dilated = F.max_pool2d(x, 3, stride=1, padding=1)
        eroded = -F.max_pool2d(-x, 3, stride=1, padding=1)
        x = torch.where(self._coin(b, cfg.dilate_prob), dilated, x)
        x = torch.where(self._coin(b, cfg.erode_prob), eroded, x)
        kernel = torch.tensor([1.0, 2.0, 1.0])
        kernel = (kernel[:, None] * kernel[None, :] / 16).view(1, 1, 3, 3)
        x = torch.where(self._coin(b, cfg.blur_prob), F.conv2d(x, kernel, padding=1), x)
        contrast = cfg.contrast[0] + (cfg.contrast[1] - cfg.contrast[0]) * self._rand(b).view(b, 1, 1, 1)
        x = x * contrast
        std = cfg.noise_std[0] + (cfg.noise_std[1] - cfg.noise_std[0]) * self._rand(b).view(b, 1, 1, 1)
        noise = torch.randn(x.shape, generator=self.generator) * std
        x = torch.where(self._coin(b, cfg.noise_prob), x + noise, x)
        h, w = x.shape[-2:]
        ys = torch.arange(h).view(1, 1, h, 1)
        xs = torch.arange(w).view(1, 1, 1, w)
        cy, cx = (self._rand(b) * h).view(b, 1, 1, 1), (self._rand(b) * w).view(b, 1, 1, 1)
        size = (self._rand(b) * h / 4 + 2).view(b, 1, 1, 1)
        box = ((ys - cy).abs() < size / 2) & ((xs - cx).abs() < size / 2)
        x = torch.where(self._coin(b, cfg.erase_prob) & box, torch.zeros_like(x), x)
        x = x.clamp(0.0, 1.0)
        return torch.where(self._coin(b, cfg.invert_prob), 1.0 - x, x)
