"""int8 copies of towers for CPU inference: Linear layers (attention projections included)
get int8 weights, and their activations are quantised at every forward
(`torch.ao.quantization.quantize_dynamic`).

The copy shares every tensor it does not quantise with the original (embedding tables,
convolutions, norms), so it costs the int8 weights and nothing more; the original tower is
left as it was. A quantised vector differs slightly from the float one (docs/performance.md
gives the measured bounds), and since an activation's scale is taken over the whole tensor, it
depends a little on what else shares the forward.
"""

from __future__ import annotations

import copy
import warnings

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils import skip_init

from crossmodal.errors import ConfigError


class PackedSelfAttention(nn.Module):
    """``nn.MultiheadAttention`` (self-attention, packed projection) rebuilt from two plain
    ``nn.Linear`` layers, so that quantisation reaches its projections too: torch leaves
    the attention's own projections in float, and they hold a third of a CLIP transformer's
    weights. The same computation; open_clip's blocks call it as they call the original."""

    def __init__(self, mha: nn.MultiheadAttention) -> None:
        super().__init__()
        dim = mha.embed_dim
        self.heads = mha.num_heads
        self.batch_first = mha.batch_first
        # skip_init: the weights are copied over at once, so a random initialisation is wasted work
        self.in_proj = skip_init(nn.Linear, dim, 3 * dim, bias=mha.in_proj_bias is not None)
        self.out_proj = skip_init(nn.Linear, dim, dim, bias=mha.out_proj.bias is not None)
        with torch.no_grad():
            self.in_proj.weight.copy_(mha.in_proj_weight)
            self.out_proj.weight.copy_(mha.out_proj.weight)
            if mha.in_proj_bias is not None:
                self.in_proj.bias.copy_(mha.in_proj_bias)
            if mha.out_proj.bias is not None:
                self.out_proj.bias.copy_(mha.out_proj.bias)

    @staticmethod
    def replaceable(mha: nn.MultiheadAttention) -> bool:
        """Whether ``mha`` has only what `forward` computes (no separate k/v projections, no
        bias_k/v, no zero-attention row)."""
        return bool(mha._qkv_same_embed_dim and mha.bias_k is None and mha.bias_v is None and not mha.add_zero_attn)

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, need_weights: bool = False,
                attn_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, None]:
        if key is not query or value is not query:
            raise ValueError("only self-attention is supported")
        x = query if self.batch_first else query.transpose(0, 1)
        batch, length, dim = x.shape
        qkv = self.in_proj(x).view(batch, length, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], attn_mask=attn_mask)
        out = self.out_proj(out.transpose(1, 2).reshape(batch, length, dim))
        return (out if self.batch_first else out.transpose(0, 1)), None


def has_int8_engine() -> bool:
    """Whether this torch build can run dynamically quantised Linear layers."""
    return any(e in torch.backends.quantized.supported_engines for e in ("x86", "fbgemm", "qnnpack"))


def has_attention(module: nn.Module) -> bool:
    """Whether ``module`` is a transformer (holds attention), where Linear layers do most of the
    work; in a convolutional tower they do almost none, and quantising them would buy nothing."""
    return any(isinstance(m, nn.MultiheadAttention) for m in module.modules())


def quantise_int8(module: nn.Module, setting: str = "[search] text_tower") -> nn.Module:
    """A copy of ``module`` whose Linear layers (attention projections included) are dynamically
    quantised to int8, sharing every other tensor with ``module``. ``setting`` names the option
    to change when this torch build cannot run int8."""
    if not has_int8_engine():
        raise ConfigError(f"this torch build has no int8 engine ({torch.backends.quantized.supported_engines}); "
                          f"set {setting} = \"fp32\"")
    shared = {id(t): t for t in (*module.parameters(), *module.buffers())}
    copied = copy.deepcopy(module, shared)
    for parent in list(copied.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.MultiheadAttention) and PackedSelfAttention.replaceable(child):
                setattr(parent, name, PackedSelfAttention(child))
    with warnings.catch_warnings():  # torch marks torch.ao.quantization deprecated but ships it
        warnings.simplefilter("ignore", DeprecationWarning)
        from torch.ao.quantization import quantize_dynamic

        return quantize_dynamic(copied, {nn.Linear}, dtype=torch.qint8, inplace=True)
