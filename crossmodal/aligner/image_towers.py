"""Image backbones: a small digit CNN with MNIST-style preprocessing, or open_clip's visual tower."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torch import nn

from crossmodal.aligner.config import DigitCnnCfg
from crossmodal.aligner.open_clip_source import OpenClipBundle

_HIGH_DEPTH_MODES = {"I", "I;16", "I;16B", "I;16L", "I;16N", "F"}


def grayscale_array(img: Image.Image) -> np.ndarray:
    """Any Pillow image as float32 grey levels in [0, 1].

    16-bit and float images are rescaled by their own range (so a 12-bit scan is not black);
    transparent images are composited on a background that contrasts with their opaque
    pixels, so ink drawn on a transparent canvas stays visible whatever its colour.
    """
    if img.mode in _HIGH_DEPTH_MODES:
        arr = np.asarray(img, dtype=np.float32)
        lo, hi = float(arr.min()), float(arr.max())
        return (arr - lo) / (hi - lo) if hi > lo else np.zeros_like(arr)
    has_alpha = img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info)
    if has_alpha:
        rgba = img.convert("RGBA")
        alpha = np.asarray(rgba.getchannel("A"), dtype=np.float32) / 255.0
        grey = np.asarray(rgba.convert("L"), dtype=np.float32) / 255.0
        opaque = alpha > 0.5
        ink_level = float(grey[opaque].mean()) if opaque.any() else 0.0
        background = 1.0 if ink_level < 0.5 else 0.0
        return grey * alpha + background * (1.0 - alpha)
    return np.asarray(img.convert("L"), dtype=np.float32) / 255.0


INK_MAX_SIDE = 1024
"""Larger pictures are box-averaged down to this side before the float work below, which would
otherwise hold several float copies of every pixel (a 40-megapixel photo: over 500 MB)."""


def _bounded(img: Image.Image) -> Image.Image:
    """``img`` reduced by a whole factor so its longer side is at most INK_MAX_SIDE."""
    factor = -(-max(img.size) // INK_MAX_SIDE)
    if factor <= 1:
        return img
    if img.mode in ("1", "P", "PA"):
        img = img.convert("RGBA" if img.mode == "PA" or "transparency" in img.info else "L")
    if img.mode in _HIGH_DEPTH_MODES and img.mode not in ("I", "F"):
        img = img.convert("I")
    return img.reduce(factor)


def ink_centred(img: Image.Image, size: int = 28) -> np.ndarray:
    """Normalise a picture of a glyph the way MNIST was made.

    Light backgrounds are inverted so ink is bright on dark, the ink's bounding box is scaled
    to fit a box of 20/28 of the frame keeping its aspect, and its centre of mass is moved to
    the centre. Drawings, scans and typeset digits then look like the training data.
    """
    grey = grayscale_array(_bounded(img))
    border = np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])
    if np.median(border) > 0.5:
        grey = 1.0 - grey
        border = 1.0 - border
    background = float(np.median(border))
    peak = float(grey.max())
    out = np.zeros((size, size), dtype=np.float32)
    if peak - background < 0.05:
        return out
    ink = np.clip((grey - background) / (peak - background), 0.0, 1.0)
    rows = np.flatnonzero(ink.max(axis=1) > 0.15)
    cols = np.flatnonzero(ink.max(axis=0) > 0.15)
    ink = ink[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    box = max(1, round(size * 20 / 28))
    h, w = ink.shape
    scale = box / max(h, w)
    new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
    resized = Image.fromarray(ink, mode="F").resize((new_w, new_h), Image.Resampling.BOX if scale < 1
                                                    else Image.Resampling.BILINEAR)
    glyph = np.clip(np.asarray(resized, dtype=np.float32), 0.0, 1.0)
    total = float(glyph.sum())
    if total <= 0:
        return out
    ys, xs = np.indices(glyph.shape)
    cy, cx = float((ys * glyph).sum() / total), float((xs * glyph).sum() / total)
    top = int(round(size / 2 - cy))
    left = int(round(size / 2 - cx))
    top = min(max(top, 0), size - new_h)
    left = min(max(left, 0), size - new_w)
    out[top:top + new_h, left:left + new_w] = glyph
    return out


def _conv_block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
    )


class DigitCnnBackbone(nn.Module):
    """Conv blocks with 2×2 pooling between them, then global average + max pooling."""

    MEAN, STD = 0.1307, 0.3081

    def __init__(self, cfg: DigitCnnCfg) -> None:
        super().__init__()
        self.cfg = cfg
        layers: list[nn.Module] = []
        cin = 1
        for i, cout in enumerate(cfg.channels):
            layers.append(_conv_block(cin, cout))
            if i < len(cfg.channels) - 1:
                layers.append(nn.MaxPool2d(2))
            cin = cout
        self.features = nn.Sequential(*layers)
        self.dropout = nn.Dropout(cfg.dropout)
        self.proj = nn.Linear(2 * cin, cfg.output_dim)
        self.output_dim = cfg.output_dim

    def preprocess(self, img: Image.Image) -> torch.Tensor:
        return self.normalise_pixels(ink_centred(img, self.cfg.image_size))

    def normalise_pixels(self, ink: np.ndarray) -> torch.Tensor:
        """Ink-centred [0, 1] array to the network's input tensor (1, H, W)."""
        return torch.from_numpy((ink - self.MEAN) / self.STD).unsqueeze(0)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = self.features(pixels)
        pooled = torch.cat([x.mean(dim=(2, 3)), x.amax(dim=(2, 3))], dim=1)
        return self.proj(self.dropout(pooled))


class OpenClipImageBackbone(nn.Module):
    """open_clip's visual tower with the model's own preprocessing."""

    def __init__(self, bundle: OpenClipBundle) -> None:
        super().__init__()
        self.visual = bundle.model.visual
        self.output_dim = bundle.embed_dim
        self._preprocess = bundle.preprocess
        self.preprocess_cfg = bundle.preprocess_cfg

    def preprocess(self, img: Image.Image) -> torch.Tensor:
        return self._preprocess(img)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.visual(pixels)
