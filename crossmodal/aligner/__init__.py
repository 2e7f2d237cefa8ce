"""The shared-embedding-space aligner: per-modality towers, checkpoints and the model registry.

Names are imported on first use, so a module of this package that needs no torch (the
torch-free text tower, the registry's reference handling) can be imported without it.
"""

from __future__ import annotations

from typing import Any

_EXPORTS = {
    "DEFAULT_MODEL": "crossmodal.aligner.registry", "create_aligner": "crossmodal.aligner.registry",
    "list_aligners": "crossmodal.aligner.registry", "load_aligner": "crossmodal.aligner.registry",
    "read_aligner_config": "crossmodal.aligner.registry", "load_checkpoint": "crossmodal.aligner.checkpoint",
    "save_aligner": "crossmodal.aligner.checkpoint", "AlignerCfg": "crossmodal.aligner.config",
    "Aligner": "crossmodal.aligner.model", "AudioEmbedding": "crossmodal.aligner.model",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'crossmodal.aligner' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value
