"""Loading open_clip models by name and tag, from a local checkpoint, or from a config file.

This is the users' main path to real photos: a pretrained open_clip model supplies text and
image towers that already share a space. Weights load with ``weights_only=True`` (or from
safetensors), never by unpickling arbitrary objects.
"""

from __future__ import annotations

import hashlib
import logging
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crossmodal.errors import CheckpointError, ConfigError

if TYPE_CHECKING:  # torch loads with a model, not with this module
    import torch

LOG = logging.getLogger(__name__)
CONFIG_DIR = Path(__file__).with_name("open_clip_configs")
_registered = False


def _register_configs() -> None:
    """Make crossmodal's small open_clip configs known to open_clip by file stem."""
    global _registered
    if _registered:
        return
    import open_clip

    open_clip.add_model_config(CONFIG_DIR)
    _registered = True


def list_open_clip_models() -> list[str]:
    """Every architecture name open_clip can build here, crossmodal's own included."""
    import open_clip

    _register_configs()
    return open_clip.list_models()


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file, read in chunks so large checkpoints do not fill memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass
class OpenClipBundle:
    """A loaded open_clip model with what is needed to feed it."""

    model: torch.nn.Module
    preprocess: Callable[[Any], torch.Tensor]
    tokenizer: Callable[[list[str]], torch.Tensor]
    preprocess_cfg: dict
    embed_dim: int
    pretrained_sha256: str | None


def _resolve_model_name(model: str) -> str:
    import open_clip

    _register_configs()
    if model.endswith(".json"):
        path = Path(model)
        if not path.is_file():
            raise ConfigError(f"open_clip model config {model!r} does not exist")
        open_clip.add_model_config(path)
        return path.stem
    if model not in open_clip.list_models():
        raise ConfigError(
            f"unknown open_clip model {model!r}; see `crossmodal models --open-clip` "
            "or pass a path to a JSON model config")
    return model


class _DropRandomInitNotice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("No pretrained weights loaded")


def _create_from_file(name: str, path: str) -> tuple[torch.nn.Module, Callable[[Any], torch.Tensor]]:
    """``name`` built with the weights of the local file ``path``, one copy of them at a time.

    open_clip's own route builds the model with random weights and then reads the file whole
    and copies it in, so both copies are in memory together: 0.6 GB more at the peak for a
    ViT-B-32, which made a server's peak RSS exceed the weights it holds by that much. Here
    the random parameters give their memory back first (each becomes a placeholder of the
    same shape that holds one element), then open_clip's ``load_checkpoint`` reads the file,
    with its conversions and its strict key check, and the file's tensors become the
    parameters (``assign``), cast back to the dtype the model was built in.
    """
    import functools

    import open_clip
    import torch

    root = logging.getLogger()
    quiet = _DropRandomInitNotice()
    root.addFilter(quiet)  # open_clip says the model is random, which it is only until the file is read
    try:
        # pretrained_text=False: a Hugging Face text tower (xlm-roberta-base-ViT-B-32's) is built from its config
        # alone, since the file holds its weights; open_clip would otherwise first fetch the transformer's own.
        created, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=None, pretrained_text=False)
    finally:
        root.removeFilter(quiet)
    dtypes = {}
    with torch.no_grad():
        for key, param in created.named_parameters():
            dtypes[key] = param.dtype
            param.data = torch.zeros((), dtype=param.dtype).expand(param.shape)
    created.load_state_dict = functools.partial(created.load_state_dict, assign=True)
    try:
        open_clip.load_checkpoint(created, path, strict=True, weights_only=True)
    finally:
        del created.load_state_dict
    with torch.no_grad():
        for key, param in created.named_parameters():
            if param.dtype != dtypes[key]:
                param.data = param.data.to(dtypes[key])
    return created, preprocess


def load_open_clip(model: str, pretrained: str | None, expected_sha256: str | None = None) -> OpenClipBundle:
    """Build an open_clip model; ``pretrained`` is a tag, a local file, or None (random init).

    A local file is checked against ``expected_sha256`` when given, so an aligner whose heads
    were trained on one checkpoint is never silently paired with another.
    """
    import open_clip

    name = _resolve_model_name(model)
    sha = None
    if pretrained and Path(pretrained).is_file():
        sha = file_sha256(pretrained)
        if expected_sha256 and sha != expected_sha256:
            raise CheckpointError(
                f"open_clip checkpoint {pretrained} has sha256 {sha[:12]}…, but this aligner was "
                f"trained with {expected_sha256[:12]}…; point it at the original file or retrain")
    elif pretrained and any(sep in pretrained for sep in ("/", "\\")) and not pretrained.startswith("hf-hub:"):
        raise CheckpointError(f"open_clip checkpoint file {pretrained} does not exist")
    try:
        if sha:
            created, preprocess = _create_from_file(name, pretrained)
        else:
            created, _, preprocess = open_clip.create_model_and_transforms(
                name, pretrained=pretrained or None, weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, OSError, ValueError, KeyError) as exc:
        offline = "" if sha or not pretrained else (
            "; a tag's weights are downloaded on first use, so that needs the network once (offline, give a local "
            "weights file instead: open_clip:ARCH/path/to/weights.safetensors)")
        raise CheckpointError(f"cannot load open_clip {name!r} from {pretrained!r}: {exc}{offline}") from None
    created.eval()
    tokenizer = open_clip.get_tokenizer(name)
    preprocess_cfg = dict(open_clip.get_model_preprocess_cfg(created))
    embed_dim = int(created.text_projection.shape[1]) if getattr(created, "text_projection", None) is not None \
        else int(open_clip.get_model_config(name)["embed_dim"])
    LOG.info("loaded open_clip %s (pretrained=%s)", name, pretrained)
    return OpenClipBundle(created, preprocess, tokenizer, preprocess_cfg, embed_dim, sha)
