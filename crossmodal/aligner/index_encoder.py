"""The model as indexing runs it: the aligner's own audio and text towers, and its image
tower in int8 where that pays (``[ingest] image_tower``).

Indexing a folder of photos with an open_clip ViT is almost all image-tower forward. Its
Linear layers do nearly all of that work, and with int8 weights (`aligner.quantise`) they run
1.5-2x faster on a CPU, at a cosine of about 0.9997 to the float vector (docs/performance.md
has the measured figures on the starter's held-out split and on the ViT-B-32 benchmark).

An int8 forward quantises each activation with one scale over the whole tensor, so an image
batched with others would get a vector that depends on them. The int8 tower therefore embeds
one image per forward: the same file gets the same vector in any run, any batch, any worker.
(At 50 tokens an image, one image is already a full-sized matrix product; measured, it costs
no throughput.)

``auto`` picks int8 for transformer towers on a CPU and fp32 everywhere else: in a
convolutional tower such as the starter's, the Linear layers are a sliver of the work, and
quantising them would change vectors for nothing.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from crossmodal.aligner.quantise import has_attention, has_int8_engine, quantise_int8
from crossmodal.errors import ConfigError

if TYPE_CHECKING:
    from torch import nn

    from crossmodal.aligner.model import Aligner, AudioEmbedding
    from crossmodal.media import Waveform

LOG = logging.getLogger(__name__)
IMAGE_TOWER_MODES = ("auto", "fp32", "int8")
"""``[ingest] image_tower``."""
_QUANTISED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
"""aligner -> its int8 image tower, made once per model (a few seconds for a ViT-B-32)."""


def check_image_mode(mode: str) -> None:
    """ConfigError unless ``mode`` is one of `IMAGE_TOWER_MODES`."""
    if mode not in IMAGE_TOWER_MODES:
        raise ConfigError(f"[ingest] image_tower must be one of {', '.join(IMAGE_TOWER_MODES)}, not {mode!r}")


def image_mode(aligner: Aligner, mode: str) -> str:
    """What ``mode`` means for ``aligner``: ``fp32`` or ``int8``."""
    check_image_mode(mode)
    if "image" not in aligner.modalities:
        return "fp32"
    if mode == "int8" and aligner.device.type != "cpu":  # torch's dynamic int8 kernels are CPU-only
        LOG.info("%s runs on %s: images are embedded in fp32", aligner.cfg.name, aligner.device)
        return "fp32"
    if mode == "auto":
        cpu = aligner.device.type == "cpu" and has_int8_engine()
        return "int8" if cpu and has_attention(aligner.tower("image")) else "fp32"
    return mode


class IndexEncoder:
    """What ingest embeds with: `Aligner`'s embedding methods, with the image tower chosen by
    ``mode``. Built before indexing workers fork, so that they share one int8 copy."""

    def __init__(self, aligner: Aligner, mode: str = "auto") -> None:
        self.aligner = aligner
        self.mode = image_mode(aligner, mode)
        self._image_tower: nn.Module | None = None
        if self.mode == "int8":
            tower = _QUANTISED.get(aligner)
            if tower is None:
                tower = quantise_int8(aligner.tower("image"), setting="[ingest] image_tower").eval()
                _QUANTISED[aligner] = tower
            self._image_tower = tower

    @property
    def image_tower(self) -> nn.Module:
        """The tower images go through: the int8 copy, or the model's own."""
        return self._image_tower if self._image_tower is not None else self.aligner.tower("image")

    @property
    def device(self):
        return self.aligner.device

    @property
    def embed_dim(self) -> int:
        return self.aligner.embed_dim

    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        """One normalised vector per image; in int8, one image per forward (module docstring)."""
        if self._image_tower is None:
            return self.aligner.embed_images(images)
        return self.aligner.embed_images(images, batch_size=1, tower=self._image_tower)

    def embed_audio(self, clips: Sequence[Waveform], sources: Sequence[str] | None = None) -> list[AudioEmbedding]:
        return self.aligner.embed_audio(clips, sources=sources)

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        return self.aligner.embed_texts(texts)
