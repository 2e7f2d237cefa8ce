"""A small open_clip text tower and its projection head, run with numpy.

The forward pass of `text_towers.StandaloneTextBackbone` (open_clip's ``TextTransformer`` with
the settings `supported_text_cfg` accepts) and of `heads.build_head`, written out on the
weights of a crossmodal checkpoint: token and position embeddings; per block a pre-LayerNorm
multi-head self-attention under the causal mask, then a pre-LayerNorm GELU MLP, each added to
the residual stream; the final LayerNorm; the features at each text's end token (the highest
id, as open_clip's ``argmax`` pooling takes); the text projection; the head; L2 norm.

It exists so that a text query does not wait seconds for torch to import: the weights are
read with ``safetensors.numpy`` and the arithmetic is a handful of small matrix products. It
computes in float64, so its vectors agree with torch's float32 ones to rounding (a test holds
them to a cosine of 1 - 1e-5 on many texts). Under the causal mask a position sees only the
positions before it, so only the positions up to the last end token in a batch are computed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

LN_EPS = 1e-5
"""torch's LayerNorm default, which open_clip keeps."""
VOCAB_SIZE = 49408
TEXT_CFG_DEFAULTS: dict[str, Any] = {
    "vocab_size": VOCAB_SIZE, "mlp_ratio": 4.0, "ls_init_value": None, "embed_cls": False, "pad_id": 0,
    "no_causal_mask": False, "final_ln_after_pool": False, "pool_type": "argmax", "proj_bias": False,
    "proj_type": "linear", "output_tokens": False, "act_kwargs": None, "norm_kwargs": None, "block_type": None,
    "qk_norm": False, "scaled_cosine_attn": False, "scale_heads": False, "scale_attn_inner": False,
    "scale_attn": False, "scale_fc": False, "hf_model_name": None, "hf_tokenizer_name": None,
    "tokenizer_mode": None, "tokenizer_kwargs": None,
}
"""open_clip ``CLIPTextCfg`` fields this forward pass implements, at the only values it
implements (``mlp_ratio`` may be any width ratio); a config that sets any other field, or one of
these to another value, is run by torch."""
SIZES = ("context_length", "width", "heads", "layers")
HEAD_TYPES = ("identity", "linear", "mlp")


def supported_text_cfg(text_cfg: Mapping[str, Any]) -> bool:
    """Whether `NumpyTextTower` computes exactly what open_clip builds from ``text_cfg``."""
    for key, value in text_cfg.items():
        if key in SIZES:
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                return False
        elif key == "mlp_ratio":
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                return False
        elif key not in TEXT_CFG_DEFAULTS or value != TEXT_CFG_DEFAULTS[key]:
            return False
    return all(key in text_cfg for key in SIZES) and text_cfg["width"] % text_cfg["heads"] == 0


def expected_shapes(text_cfg: Mapping[str, Any], output_dim: int, head: str, hidden_dim: int,
                    embed_dim: int) -> dict[str, tuple[int, ...]]:
    """Every weight the tower and its head need, by its key under ``towers.text.``, with its shape."""
    width, ctx, layers = text_cfg["width"], text_cfg["context_length"], text_cfg["layers"]
    mlp = int(width * text_cfg.get("mlp_ratio", 4.0))
    shapes: dict[str, tuple[int, ...]] = {
        "backbone.transformer.token_embedding.weight": (VOCAB_SIZE, width),
        "backbone.transformer.positional_embedding": (ctx, width),
        "backbone.transformer.ln_final.weight": (width,), "backbone.transformer.ln_final.bias": (width,),
        "backbone.transformer.text_projection": (width, output_dim),
    }
    for i in range(layers):
        block = f"backbone.transformer.transformer.resblocks.{i}."
        shapes.update({
            block + "ln_1.weight": (width,), block + "ln_1.bias": (width,),
            block + "attn.in_proj_weight": (3 * width, width), block + "attn.in_proj_bias": (3 * width,),
            block + "attn.out_proj.weight": (width, width), block + "attn.out_proj.bias": (width,),
            block + "ln_2.weight": (width,), block + "ln_2.bias": (width,),
            block + "mlp.c_fc.weight": (mlp, width), block + "mlp.c_fc.bias": (mlp,),
            block + "mlp.c_proj.weight": (width, mlp), block + "mlp.c_proj.bias": (width,),
        })
    if head == "linear":
        shapes.update({"head.weight": (embed_dim, output_dim), "head.bias": (embed_dim,)})
    elif head == "mlp":  # nn.Sequential(Linear, GELU, Dropout, Linear): the Linears are 0 and 3
        shapes.update({"head.0.weight": (hidden_dim, output_dim), "head.0.bias": (hidden_dim,),
                       "head.3.weight": (embed_dim, hidden_dim), "head.3.bias": (embed_dim,)})
    return shapes


_erf = np.frompyfunc(math.erf, 1, 1)


def gelu(x: np.ndarray) -> np.ndarray:
    """torch's exact GELU, x * Phi(x) (not the tanh approximation): numpy has no erf, so each
    value goes through `math.erf` (a query has a few thousand)."""
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)).astype(np.float64))


def layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """LayerNorm over the last axis with the biased variance, as torch computes it."""
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + LN_EPS) * weight + bias


@dataclass
class NumpyTextTower:
    """The text tower's weights (by key under ``towers.text.``: float64, but the token embedding
    table, whose few rows a batch uses are taken as they are) and sizes."""

    weights: dict[str, np.ndarray]
    heads: int
    layers: int
    head: str

    def _attention(self, x: np.ndarray, block: str) -> np.ndarray:
        """Multi-head self-attention of ``x`` [batch, length, width] under the causal mask, with
        ``nn.MultiheadAttention``'s packed input projection and its output projection."""
        w = self.weights
        batch, length, width = x.shape
        dim = width // self.heads
        qkv = x @ w[block + "attn.in_proj_weight"].T + w[block + "attn.in_proj_bias"]
        q, k, v = (qkv[..., i * width:(i + 1) * width].reshape(batch, length, self.heads, dim).transpose(0, 2, 1, 3)
                   for i in range(3))
        scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(dim)
        scores = np.where(np.tril(np.ones((length, length), dtype=bool)), scores, -np.inf)
        scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
        mixed = (scores / scores.sum(axis=-1, keepdims=True)) @ v
        mixed = mixed.transpose(0, 2, 1, 3).reshape(batch, length, width)
        return mixed @ w[block + "attn.out_proj.weight"].T + w[block + "attn.out_proj.bias"]

    def features(self, tokens: np.ndarray) -> np.ndarray:
        """The backbone's output for token ids [batch, context]: one row per text."""
        w = self.weights
        ends = tokens.argmax(axis=-1)  # the end token has the highest id of the vocabulary
        length = int(ends.max()) + 1 if len(tokens) else 1
        x = w["backbone.transformer.token_embedding.weight"][tokens[:, :length]].astype(np.float64)
        x = x + w["backbone.transformer.positional_embedding"][:length]
        for i in range(self.layers):
            block = f"backbone.transformer.transformer.resblocks.{i}."
            x = x + self._attention(layer_norm(x, w[block + "ln_1.weight"], w[block + "ln_1.bias"]), block)
            h = layer_norm(x, w[block + "ln_2.weight"], w[block + "ln_2.bias"])
            h = gelu(h @ w[block + "mlp.c_fc.weight"].T + w[block + "mlp.c_fc.bias"])
            x = x + h @ w[block + "mlp.c_proj.weight"].T + w[block + "mlp.c_proj.bias"]
        x = layer_norm(x, w["backbone.transformer.ln_final.weight"], w["backbone.transformer.ln_final.bias"])
        pooled = x[np.arange(len(tokens)), ends]
        return pooled @ w["backbone.transformer.text_projection"]

    def __call__(self, tokens: np.ndarray) -> np.ndarray:
        """L2-normalised float32 vectors in the shared space for token ids [batch, context]."""
        w = self.weights
        out = self.features(tokens)
        if self.head == "linear":
            out = out @ w["head.weight"].T + w["head.bias"]
        elif self.head == "mlp":
            out = gelu(out @ w["head.0.weight"].T + w["head.0.bias"]) @ w["head.3.weight"].T + w["head.3.bias"]
        norms = np.maximum(np.linalg.norm(out, axis=-1, keepdims=True), 1e-12)  # as F.normalize
        return (out / norms).astype(np.float32)
