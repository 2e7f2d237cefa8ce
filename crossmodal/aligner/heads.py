"""Projection heads that carry a backbone's features into the shared space."""

from __future__ import annotations

from torch import nn

from crossmodal.aligner.config import HeadCfg
from crossmodal.errors import ConfigError


def build_head(cfg: HeadCfg, in_dim: int, out_dim: int) -> nn.Module:
    """Identity needs the backbone to already emit the shared dimension (e.g. open_clip)."""
    if cfg.type == "identity":
        if in_dim != out_dim:
            raise ConfigError(
                f"identity head needs backbone dim {in_dim} == embed_dim {out_dim}; use a linear or mlp head")
        return nn.Identity()
    if cfg.type == "linear":
        return nn.Linear(in_dim, out_dim)
    if cfg.type == "mlp":
        return nn.Sequential(
            nn.Linear(in_dim, cfg.hidden_dim),
            nn.GELU(),
            nn.Dropout(cfg.dropout),
            nn.Linear(cfg.hidden_dim, out_dim),
        )
    raise ConfigError(f"unknown head type {cfg.type!r}")
