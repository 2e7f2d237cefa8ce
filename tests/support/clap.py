"""Small real models for the CLAP and bridge tests, written to disk offline.

`write_tiny_clap` saves a randomly initialised transformers ``ClapModel`` of the real
architecture (HTSAT audio encoder, RoBERTa text encoder, projections), shrunk to a few layers
and a few dozen channels, with its processor: the 48 kHz CLAP feature extractor and a
byte-level BPE tokenizer whose vocabulary (single characters, no merges) is written here, so
nothing is downloaded. Loading goes through ``ClapModel.from_pretrained`` as real weights do.
"""

from __future__ import annotations

from pathlib import Path

import open_clip
import torch
from safetensors.torch import save_file

TINY_CLIP = "crossmodal-tiny-vit"
CLAP_DIM = 16
CAPTIONS = [f"{thing} {where}" for thing in (
    "a dog barking", "rain falling", "a bell ringing", "a car passing", "birds singing", "a door slamming",
    "a baby crying", "waves crashing", "a clock ticking", "wind blowing", "a train horn", "people talking")
    for where in ("in the park", "at night", "nearby", "far away", "in a room", "outside")]


def _tokenizer():
    from transformers import RobertaTokenizer

    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3, "<mask>": 4, "Ġ": 5}
    for char in "abcdefghijklmnopqrstuvwxyz0123456789,.'-!?():;":
        vocab.setdefault(char, len(vocab))
        vocab.setdefault("Ġ" + char, len(vocab))
    return RobertaTokenizer(vocab=vocab, merges=[])


def write_tiny_clap(folder: Path, seed: int = 0, tokenizer: bool = True) -> Path:
    """A random-init ``ClapModel`` (about 36k parameters) and its processor in ``folder``."""
    from transformers import ClapConfig, ClapFeatureExtractor, ClapModel, ClapProcessor

    tok = _tokenizer()
    config = ClapConfig(
        text_config={"vocab_size": len(tok.get_vocab()), "hidden_size": 32, "num_hidden_layers": 1,
                     "num_attention_heads": 2, "intermediate_size": 64, "max_position_embeddings": 80,
                     "projection_dim": CLAP_DIM},
        audio_config={"hidden_size": 32, "patch_embeds_hidden_size": 16, "depths": [1, 1],
                      "num_attention_heads": [2, 2], "window_size": 4, "num_mel_bins": 64,
                      "projection_dim": CLAP_DIM, "num_hidden_layers": 2},
        projection_dim=CLAP_DIM)
    torch.manual_seed(seed)
    model = ClapModel(config)
    model.save_pretrained(folder)
    extractor = ClapFeatureExtractor(truncation="rand_trunc")
    if tokenizer:
        ClapProcessor(feature_extractor=extractor, tokenizer=tok).save_pretrained(folder)
    else:
        extractor.save_pretrained(folder)
    return folder


def write_tiny_clip(path: Path, seed: int = 0) -> Path:
    """A random-init open_clip model of crossmodal's tiny architecture, saved as safetensors."""
    from crossmodal.aligner.open_clip_source import list_open_clip_models

    assert TINY_CLIP in list_open_clip_models()
    torch.manual_seed(seed)
    model = open_clip.create_model(TINY_CLIP)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


def write_captions(path: Path) -> Path:
    path.write_text("# sounds for the tests\n" + "\n".join(CAPTIONS) + "\n", encoding="utf-8")
    return path
