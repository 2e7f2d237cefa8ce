"""The modalities, and decoded media values passed from ingest to the aligner."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MODALITIES: tuple[str, ...] = ("text", "image", "audio")
"""Every modality crossmodal embeds, in the order used wherever modalities are listed."""


@dataclass(frozen=True)
class Waveform:
    """Decoded audio: float32 samples in [-1, 1], shape (frames,) or (frames, channels)."""

    samples: np.ndarray
    sample_rate: int

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.samples.shape[0] / float(self.sample_rate)

    @property
    def channels(self) -> int:
        return 1 if self.samples.ndim == 1 else int(self.samples.shape[1])
