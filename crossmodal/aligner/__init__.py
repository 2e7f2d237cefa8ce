"""The shared-embedding-space aligner: per-modality towers, checkpoints and the model registry."""

from crossmodal.aligner.checkpoint import load_checkpoint, save_aligner
from crossmodal.aligner.config import AlignerCfg
from crossmodal.aligner.model import Aligner, AudioEmbedding
from crossmodal.aligner.registry import (
    DEFAULT_MODEL,
    create_aligner,
    list_aligners,
    load_aligner,
    read_aligner_config,
)

__all__ = [
    "DEFAULT_MODEL", "Aligner", "AlignerCfg", "AudioEmbedding", "create_aligner", "list_aligners",
    "load_aligner", "load_checkpoint", "read_aligner_config", "save_aligner",
]
