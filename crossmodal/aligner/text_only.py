"""A model's text tower without torch, for queries that embed only text.

Importing torch and open_clip takes seconds; a one-shot ``crossmodal search --text ...`` with
the starter model needs a tokenizer and a few small matrix products. `text_only_model` gives,
for a trained checkpoint whose text tower is a small open_clip text transformer (the starter
model's kind), an object that embeds texts exactly as `Aligner.embed_texts` does (the same
token ids, the same vectors to rounding; tests compare both on many texts) with numpy
(`text_numpy`, `bpe`), and that stands for the same weights: the weights file is checked
against the SHA-256 its config records, and the object carries the config, checksum and model
id that `core.models.check_collection_model` compares with a collection's record, as for the
torch model.

Whatever it cannot do exactly as torch would (another architecture, a tower it does not
implement, a missing vocabulary file, a file that does not match its config) gives None, and
the caller loads the torch model, which reports any error in its own words.
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from crossmodal.aligner.bpe import BpeTokenizer, available, vocab_path
from crossmodal.aligner.checkpoint import WEIGHTS_FILE, read_checkpoint_config
from crossmodal.aligner.config import AlignerCfg, OpenClipTextCfg
from crossmodal.aligner.registry import OPEN_CLIP_PREFIX, resolve_checkpoint
from crossmodal.aligner.text_numpy import HEAD_TYPES, NumpyTextTower, expected_shapes, supported_text_cfg
from crossmodal.errors import CrossmodalError

HEAVY_MODULES = ("torch", "open_clip")
"""Once either is imported the torch model costs little more, and is the one to use."""


def torch_loaded() -> bool:
    """Whether this process has imported torch or open_clip already."""
    return any(name in sys.modules for name in HEAVY_MODULES)


@dataclass
class TextOnlyModel:
    """A checkpoint's text tower, run with numpy; the attributes a collection's model check and
    the query planner read have the meaning they have on `Aligner`."""

    cfg: AlignerCfg
    checkpoint_dir: Path
    checkpoint_config: dict[str, Any]
    model_id: str
    tower: NumpyTextTower = field(repr=False)
    tokenizer: BpeTokenizer = field(repr=False)
    weights_sha256: str | None = None
    """Only set for pretrained weights used as they are; a checkpoint's checksum is in its config."""
    weights_source: dict[str, Any] | None = None

    @property
    def modalities(self) -> tuple[str, ...]:
        """Every modality the model has a tower for (this object embeds only text)."""
        return self.cfg.modalities

    @property
    def embed_dim(self) -> int:
        return self.cfg.embed_dim

    def embed_texts(self, texts: list[str] | tuple[str, ...], batch_size: int = 256) -> np.ndarray:
        """One normalised float32 vector per string, as `Aligner.embed_texts` gives."""
        out = np.zeros((len(texts), self.embed_dim), dtype=np.float32)
        for start in range(0, len(texts), batch_size):
            batch = list(texts[start:start + batch_size])
            out[start:start + len(batch)] = self.tower(self.tokenizer(batch))
        return out


def _text_tower_cfg(cfg: AlignerCfg) -> tuple[OpenClipTextCfg, Any] | None:
    """The text backbone and head configs when `NumpyTextTower` implements them, else None."""
    tower = cfg.towers.get("text")
    if tower is None or not isinstance(tower.backbone, OpenClipTextCfg) or tower.head.type not in HEAD_TYPES:
        return None
    backbone = tower.backbone
    if not isinstance(backbone.text_cfg, dict) or not supported_text_cfg(backbone.text_cfg):
        return None
    if tower.head.type == "identity" and backbone.output_dim != cfg.embed_dim:
        return None
    return backbone, tower.head


def text_only_model(ref: str | Path) -> TextOnlyModel | None:
    """The torch-free text model of ``ref``, or None when ``ref`` is not a checkpoint whose text
    tower this module computes exactly (then the torch model is the one to load)."""
    if str(ref).startswith(OPEN_CLIP_PREFIX) or not available():
        return None
    folder = resolve_checkpoint(ref)
    if folder is None:
        return None
    try:
        config = read_checkpoint_config(folder)
        cfg = AlignerCfg.from_dict(config["aligner"])
    except (CrossmodalError, KeyError, TypeError):
        return None
    found = _text_tower_cfg(cfg)
    weights_info = config.get("weights") if isinstance(config.get("weights"), dict) else {}
    if found is None or not isinstance(weights_info.get("file", WEIGHTS_FILE), str):
        return None
    backbone, head = found
    weights = folder / weights_info.get("file", WEIGHTS_FILE)
    try:
        data = weights.read_bytes()
    except OSError:
        return None
    sha = hashlib.sha256(data).hexdigest()  # what is checked is what is used: the same bytes
    if sha != weights_info.get("sha256"):  # no record, or other weights: torch's load says what is wrong
        return None
    state = _text_weights(data, expected_shapes(backbone.text_cfg, backbone.output_dim, head.type,
                                                head.hidden_dim, cfg.embed_dim))
    path = vocab_path()
    if state is None or path is None:
        return None
    try:
        tokenizer = BpeTokenizer(path, backbone.text_cfg["context_length"])
    except (OSError, ValueError):  # a vocabulary file open_clip's own tokenizer would fail on too
        return None
    tower = NumpyTextTower(state, heads=backbone.text_cfg["heads"], layers=backbone.text_cfg["layers"],
                           head=head.type)
    return TextOnlyModel(cfg, folder, config, f"{cfg.name}@{sha[:12]}", tower, tokenizer)


def _text_weights(data: bytes, shapes: dict[str, tuple[int, ...]]) -> dict[str, np.ndarray] | None:
    """The text tower's tensors from a safetensors file's bytes, by key under ``towers.text.``
    (float64, but the token embedding table); None when one is missing or of another shape or type."""
    if importlib.util.find_spec("safetensors") is None:
        return None
    from safetensors import SafetensorError
    from safetensors.numpy import load

    try:
        tensors = load(data)
    except (SafetensorError, ValueError, OSError):
        return None
    out = {}
    for key, shape in shapes.items():
        tensor = tensors.get("towers.text." + key)
        if tensor is None or tensor.shape != shape or tensor.dtype != np.float32:
            return None
        out[key] = tensor if key.endswith("token_embedding.weight") else tensor.astype(np.float64)
    return out
