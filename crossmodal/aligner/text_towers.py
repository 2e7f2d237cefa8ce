"""Text backbones: a stand-alone open_clip text transformer, or the text side of an open_clip model."""

from __future__ import annotations

import torch
from torch import nn

from crossmodal.aligner.config import OpenClipTextCfg
from crossmodal.aligner.open_clip_source import OpenClipBundle


class StandaloneTextBackbone(nn.Module):
    """open_clip's TextTransformer and BPE tokenizer, sized by a `CLIPTextCfg` dict.

    Used by the starter model, whose text tower is trained from scratch: it needs open_clip's
    text architecture but no image tower.
    """

    def __init__(self, cfg: OpenClipTextCfg) -> None:
        super().__init__()
        from open_clip.model import CLIPTextCfg, _build_text_tower
        from open_clip.tokenizer import SimpleTokenizer

        text_cfg = CLIPTextCfg(**cfg.text_cfg)
        self.transformer = _build_text_tower(cfg.output_dim, text_cfg)
        self.output_dim = cfg.output_dim
        self._tokenizer = SimpleTokenizer(context_length=text_cfg.context_length)

    def tokenize(self, texts: list[str]) -> torch.Tensor:
        return self._tokenizer(texts)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.transformer(tokens)


class OpenClipTextBackbone(nn.Module):
    """The text side of a CLIP model; its image tower is handed to the image backbone."""

    def __init__(self, bundle: OpenClipBundle) -> None:
        super().__init__()
        self.clip = bundle.model
        self.output_dim = bundle.embed_dim
        self._tokenizer = bundle.tokenizer

    def tokenize(self, texts: list[str]) -> torch.Tensor:
        return self._tokenizer(texts)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.clip.encode_text(tokens, normalize=False)
