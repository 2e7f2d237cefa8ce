"""Models the aligner tests share."""

from __future__ import annotations

import open_clip
import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from crossmodal.aligner import load_aligner
from crossmodal.aligner.open_clip_source import list_open_clip_models


@pytest.fixture(scope="session")
def tiny_vit_ref(tmp_path_factory) -> str:
    """The model reference of crossmodal's tiny open_clip ViT with random weights, saved by the test."""
    path = tmp_path_factory.mktemp("clip") / "tiny.safetensors"
    assert "crossmodal-tiny-vit" in list_open_clip_models()  # registers crossmodal's configs with open_clip
    torch.manual_seed(3)
    model = open_clip.create_model("crossmodal-tiny-vit")
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return f"open_clip:crossmodal-tiny-vit/{path}"


@pytest.fixture(scope="session")
def tiny_vit(tiny_vit_ref: str) -> nn.Module:
    """That ViT loaded through the no-training route."""
    return load_aligner(tiny_vit_ref)
