"""CLAP (contrastive language–audio pretraining) through transformers' ``ClapModel``.

CLAP's audio and text towers share a space of their own, not CLIP's. crossmodal uses its
audio tower, frozen, as an audio backbone whose trained head carries CLAP's space into the
aligner's; its text tower only serves to train such a head through text alone (see
`crossmodal.training.bridge`). transformers is an optional extra (``crossmodal[clap]``), imported
only here and only when a CLAP model is asked for.

Weights come from a folder written by ``save_pretrained`` or from a hub id (downloaded once,
then read from the Hugging Face cache), always through ``ClapModel.from_pretrained``: a
safetensors file, or a PyTorch file that transformers reads with ``weights_only=True``. The
weights are never copied into crossmodal checkpoints, so their digest (`clap_folder_sha256`)
is recorded and checked whenever they are loaded again.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from crossmodal.aligner.audio_towers import AudioWindow, pad_batch, split_windows
from crossmodal.aligner.config import ClapAudioCfg
from crossmodal.errors import CheckpointError, ConfigError
from crossmodal.media import Waveform

LOG = logging.getLogger(__name__)
INSTALL_HINT = "pip install 'crossmodal[clap]'"
# What a CLAP folder holds that decides its vectors: configs (model, feature extractor,
# tokenizer) and weights. READMEs and git files do not count.
IDENTITY_SUFFIXES = (".json", ".safetensors", ".bin", ".txt", ".model")
TOKENIZER_FILES = ("tokenizer.json", "vocab.json")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def require_transformers() -> Any:
    """The transformers module, or an error that says how to install it."""
    try:
        import transformers
    except ImportError:
        raise ConfigError(f"CLAP models need the optional package transformers: {INSTALL_HINT}") from None
    return transformers


def clap_folder_sha256(folder: str | Path) -> str:
    """One SHA-256 over the files that decide a CLAP folder's vectors (names and contents), so
    that the same weights in another folder or a hub snapshot give the same digest."""
    from crossmodal.aligner.open_clip_source import file_sha256

    folder = Path(folder)
    lines = [f"{p.name} {file_sha256(p)}\n" for p in sorted(folder.iterdir())
             if p.is_file() and p.suffix in IDENTITY_SUFFIXES]
    if not lines:
        raise CheckpointError(f"CLAP folder {folder} holds no config or weights files")
    return hashlib.sha256("".join(lines).encode()).hexdigest()


def resolve_clap_folder(ref: str, revision: str | None = None) -> tuple[Path, str | None]:
    """(local folder, hub commit or None) of a CLAP reference: a folder as it is, a hub id as its
    snapshot in the Hugging Face cache (downloaded when missing and online)."""
    path = Path(ref).expanduser()
    if path.is_dir():
        return path.resolve(), None
    if not _HUB_ID.match(ref) or path.exists():
        raise CheckpointError(
            f"CLAP model {ref!r}: not a folder (written by ClapModel.save_pretrained) nor a Hugging Face hub id "
            "such as laion/clap-htsat-unfused")
    require_transformers()
    from huggingface_hub import snapshot_download

    try:
        folder = Path(snapshot_download(ref, revision=revision, allow_patterns=[f"*{s}" for s in IDENTITY_SUFFIXES]))
    except Exception as exc:  # the hub client raises many kinds; each means "not available"
        reason = " ".join(str(exc).split())  # one line: the hub's messages span several
        raise CheckpointError(
            f"cannot fetch CLAP {ref!r}{f' at revision {revision}' if revision else ''} from the Hugging Face hub "
            f"({type(exc).__name__}: {reason}), and there is no folder {path} here either; a hub id is downloaded on "
            "first use, so that needs the network once (offline, give a local folder written by "
            "ClapModel.save_pretrained)") from None
    return folder, folder.name


@dataclass
class ClapBundle:
    """A loaded CLAP model with what feeds it, and the identity of its weights."""

    model: nn.Module
    feature_extractor: Any
    tokenizer: Any
    ref: str
    folder: Path
    revision: str | None
    sha256: str
    sample_rate: int
    embed_dim: int

    @torch.inference_mode()
    def embed_texts(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """CLAP's normalised text embeddings (its text encoder and projection)."""
        if self.tokenizer is None:
            raise ConfigError(f"CLAP folder {self.folder} has no tokenizer: save the processor "
                              "(ClapProcessor.save_pretrained) into it as well")
        out = []
        for start in range(0, len(texts), batch_size):
            tokens = self.tokenizer(list(texts[start:start + batch_size]), padding=True, truncation=True,
                                    return_tensors="pt")
            pooled = self.model.text_model(input_ids=tokens["input_ids"],
                                           attention_mask=tokens["attention_mask"]).pooler_output
            out.append(F.normalize(self.model.text_projection(pooled), dim=-1).float().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.embed_dim), dtype=np.float32)


def load_clap(ref: str, revision: str | None = None, expected_sha256: str | None = None) -> ClapBundle:
    """Load CLAP from a folder or hub id; with ``expected_sha256``, refuse any other weights."""
    transformers = require_transformers()
    folder, commit = resolve_clap_folder(ref, revision)
    sha = clap_folder_sha256(folder)
    if expected_sha256 and sha != expected_sha256:
        raise CheckpointError(
            f"CLAP weights in {folder} have sha256 {sha[:12]}…, but this model's head was trained on {ref} with "
            f"{expected_sha256[:12]}…: point it at the original weights, or train the head again for these")
    transformers.utils.logging.disable_progress_bar()
    try:
        model = transformers.ClapModel.from_pretrained(str(folder))
        extractor = transformers.ClapFeatureExtractor.from_pretrained(str(folder))
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise CheckpointError(f"cannot load CLAP from {folder}: {exc}") from None
    tokenizer = None  # the audio tower needs none; bridging through text says so when asked
    if any((folder / name).is_file() for name in TOKENIZER_FILES):  # else transformers would make an empty one
        try:
            tokenizer = transformers.AutoTokenizer.from_pretrained(str(folder))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise CheckpointError(f"cannot load the CLAP tokenizer in {folder}: {exc}") from None
    model.eval().requires_grad_(False)
    LOG.info("loaded CLAP %s (%s, sha256 %s)", ref, folder, sha[:12])
    return ClapBundle(model, extractor, tokenizer, ref, folder, commit, sha, int(extractor.sampling_rate),
                      int(model.config.projection_dim))


class ClapAudioBackbone(nn.Module):
    """CLAP's audio encoder and projection, frozen: normalised embeddings in CLAP's space.

    Sounds are cut into windows like any audio (at most ``window_seconds``, silence trimmed);
    the feature extractor then turns each window on its own into CLAP's log-mel input (short
    ones repeated to 10 s), so a window's vector never depends on its batch.
    """

    always_frozen = True  # its weights stay in CLAP's own files: training them would be lost
    chunk = 16  # windows per encoder call: bounds memory whatever batch the caller hands over

    def __init__(self, cfg: ClapAudioCfg, bundle: ClapBundle) -> None:
        super().__init__()
        if bundle.sample_rate != cfg.sample_rate:
            raise ConfigError(f"CLAP {cfg.model}: its feature extractor hears {bundle.sample_rate} Hz, the config "
                              f"says sample_rate {cfg.sample_rate}; set it to {bundle.sample_rate}")
        self.cfg = cfg
        self.clap = nn.ModuleDict({"audio_model": bundle.model.audio_model,
                                   "audio_projection": bundle.model.audio_projection})
        self.clap.requires_grad_(False)
        self.feature_extractor = bundle.feature_extractor
        self.output_dim = bundle.embed_dim
        self.min_samples = max(1, int(round(cfg.min_seconds * cfg.sample_rate)))

    def train(self, mode: bool = True) -> ClapAudioBackbone:
        """Stay in eval mode: the frozen encoder's dropout must not vary its vectors."""
        super().train(False)
        return self

    def windows(self, wave: Waveform, source: str = "audio") -> list[AudioWindow]:
        return split_windows(wave, self.cfg, source)

    def collate(self, chunks: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        return pad_batch(chunks, self.min_samples)

    def forward(self, waves: torch.Tensor, lengths: torch.Tensor, feature_augment: Any = None) -> torch.Tensor:
        """``feature_augment`` is refused: CLAP is frozen and its features are cached for training."""
        if feature_augment is not None:
            raise ConfigError("the CLAP audio backbone is frozen: train its head with cached features "
                              "(`crossmodal train ... --freeze-backbones audio`)")
        clips = [w[:int(n)].detach().cpu().numpy() for w, n in zip(waves, lengths)]
        out = []
        for start in range(0, len(clips), self.chunk):  # each 10 s window is a 1001x64 image to the encoder
            inputs = self.feature_extractor(clips[start:start + self.chunk], sampling_rate=self.cfg.sample_rate,
                                            return_tensors="pt")
            pooled = self.clap["audio_model"](input_features=inputs["input_features"].to(waves.device),
                                              is_longer=inputs["is_longer"].to(waves.device)).pooler_output
            out.append(F.normalize(self.clap["audio_projection"](pooled), dim=-1))
        return torch.cat(out) if out else waves.new_zeros((0, self.output_dim))
