"""The text tower as a query runs it: only the tokens that matter, concurrent queries batched,
optionally with int8 weights.

A search embeds one short text, and most of its time went to the text tower: open_clip pads
every text to 77 tokens, so a five-word query paid for 77 positions through every layer. In a
causal text transformer pooled at the end-of-text token (CLIP's), no position attends to a
later one, so the positions after the last end-of-text token in a batch cannot change the
pooled vector: `QueryTextEncoder` cuts them off before the first layer. The result is the
same function, not an approximation; only float rounding differs (tests compare both).

A server answers several queries at once. One forward of eight short texts reads the tower's
weights once, eight forwards read them eight times, and at query size that reading is most of
the cost; so queries that arrive while a forward runs wait and go through the next forward
together (no added wait when there is one query at a time).

``int8`` additionally quantises the tower's Linear layers (weights int8, activations quantised
per forward: `torch.ao.quantization.quantize_dynamic`), once, when the encoder is built. That
changes vectors slightly (docs/performance.md gives the measured bounds), and a vector then
depends a little on the queries batched with it, since the activations' scale is per forward.

Anything else (another text architecture, a non-causal tower) falls back to the model's own
`embed_texts`, so every model gets a working encoder.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from crossmodal.aligner.quantise import quantise_int8
from crossmodal.errors import ConfigError

LOG = logging.getLogger(__name__)
TEXT_TOWER_MODES = ("fp32", "int8")
"""``[search] text_tower``: ``fp32`` is the model's own weights; ``int8`` quantises the Linear layers."""
MAX_BATCH = 32
"""Most queries run in one forward; more wait for the next."""


@dataclass
class _Parts:
    """The pieces of an open_clip text tower that `_trimmed_forward` runs."""

    token_embedding: nn.Module
    positional_embedding: torch.Tensor
    transformer: nn.Module
    ln_final: nn.Module
    text_projection: nn.Module | torch.Tensor | None
    attn_mask: torch.Tensor
    pool_type: str
    eos_id: int | None


def _text_module(backbone: nn.Module) -> nn.Module | None:
    """The module holding the text transformer of a crossmodal text backbone (a stand-alone
    open_clip TextTransformer, or a CLIP model whose text side is built into it)."""
    if hasattr(backbone, "transformer") and hasattr(backbone.transformer, "token_embedding"):
        return backbone.transformer  # StandaloneTextBackbone: a TextTransformer
    clip = getattr(backbone, "clip", None)
    if clip is None:
        return None
    text = getattr(clip, "text", None)  # CustomTextCLIP keeps a TextTransformer (or an HF model) here
    if text is not None:
        return text if hasattr(text, "token_embedding") else None
    return clip if hasattr(clip, "token_embedding") else None


def _parts(backbone: nn.Module) -> _Parts | None:
    """The trimmable parts of ``backbone``, or None when cutting positions would change its output
    (no causal mask, a class token, a padding mask, pooling that is not at end-of-text)."""
    m = _text_module(backbone)
    if m is None:
        return None
    pool = getattr(m, "pool_type", None) or getattr(m, "text_pool_type", None)
    mask = getattr(m, "attn_mask", None)
    if (pool not in ("argmax", "eos") or not isinstance(mask, torch.Tensor) or getattr(m, "cls_emb", None) is not None
            or getattr(m, "use_pad_mask", False) or getattr(m, "output_tokens", False)):
        return None
    eos = getattr(m, "eos_id", None) or getattr(m, "text_eos_id", None)
    if pool == "eos" and eos is None:
        return None
    return _Parts(m.token_embedding, m.positional_embedding, m.transformer, m.ln_final,
                  getattr(m, "text_projection", None), mask, pool, eos)


class _TrimmedTower(nn.Module):
    """An open_clip causal text tower and crossmodal's head, run on the positions up to the last
    end-of-text token of the batch."""

    def __init__(self, parts: _Parts, head: nn.Module) -> None:
        super().__init__()
        self.token_embedding = parts.token_embedding
        self.transformer = parts.transformer
        self.ln_final = parts.ln_final
        self.projection = parts.text_projection if isinstance(parts.text_projection, nn.Module) else None
        self.register_buffer("positional_embedding", parts.positional_embedding.detach(), persistent=False)
        self.register_buffer("attn_mask", parts.attn_mask.detach(), persistent=False)
        proj = parts.text_projection if isinstance(parts.text_projection, torch.Tensor) else None
        self.register_buffer("projection_matrix", proj.detach() if proj is not None else None, persistent=False)
        self.head = head
        self.pool_type = parts.pool_type
        self.eos_id = parts.eos_id

    def pool_positions(self, tokens: torch.Tensor) -> torch.Tensor:
        """Where each row is pooled, as open_clip's ``text_global_pool`` finds it."""
        if self.pool_type == "argmax":
            return tokens.argmax(dim=-1)
        return (tokens == self.eos_id).int().argmax(dim=-1)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        where = self.pool_positions(tokens)
        n = int(where.max()) + 1
        tokens = tokens[:, :n]
        dtype = self.positional_embedding.dtype
        x = self.token_embedding(tokens).to(dtype) + self.positional_embedding[:n]
        x = self.transformer(x, attn_mask=self.attn_mask[:n, :n])
        x = self.ln_final(x)
        x = x[torch.arange(x.shape[0]), where]
        if self.projection is not None:
            x = self.projection(x)
        elif self.projection_matrix is not None:
            x = x @ self.projection_matrix
        return F.normalize(self.head(x), dim=-1)


def check_mode(mode: str) -> None:
    """ConfigError unless ``mode`` is one of `TEXT_TOWER_MODES`."""
    if mode not in TEXT_TOWER_MODES:
        raise ConfigError(f"[search] text_tower must be one of {', '.join(TEXT_TOWER_MODES)}, not {mode!r}")


@dataclass
class _Pending:
    texts: list[str]
    result: np.ndarray | None = None
    error: BaseException | None = None
    done: bool = False


class QueryTextEncoder:
    """Embeds query texts with ``aligner``'s text tower, trimmed and batched (module docstring);
    ``mode`` is one of `TEXT_TOWER_MODES`. Safe to call from many threads."""

    def __init__(self, aligner: nn.Module, mode: str = "fp32", lanes: int | None = None) -> None:
        check_mode(mode)
        self.aligner = aligner
        self.mode = mode
        tower = aligner.tower("text")
        parts = _parts(tower.backbone)
        self.trimmed = parts is not None
        self.quantised = False
        self._tokenize: Callable[[list[str]], torch.Tensor] = aligner.tokenize
        if parts is None:
            LOG.info("%s: this text tower cannot be trimmed; queries run it whole", aligner.cfg.name)
            module: nn.Module | None = None
        else:
            module = _TrimmedTower(parts, tower.head).eval()
            if mode == "int8" and aligner.device.type != "cpu":  # torch's dynamic int8 kernels are CPU-only
                LOG.info("%s runs on %s: query texts use the fp32 path", aligner.cfg.name, aligner.device)
            elif mode == "int8":
                module = quantise_int8(module)
                self.quantised = True
        self._module = module
        self._cond = threading.Condition()
        self._queue: list[_Pending] = []
        self._running = 0
        self.lanes = max(1, lanes or len(os.sched_getaffinity(0)))
        """Forwards run at once: one a core, so that a one-thread forward (``[search] torch_threads``)
        never leaves a core idle while queries wait."""

    def embed_now(self, texts: Sequence[str]) -> np.ndarray:
        """One normalised float32 vector per text, in one forward (no batching with other threads)."""
        if self._module is None:
            return self.aligner.embed_texts(list(texts))
        with torch.inference_mode():
            tokens = self._tokenize(list(texts)).to(self.aligner.device)
            return self._module(tokens).float().cpu().numpy()

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """One vector per text; texts that other threads ask for meanwhile share the forward."""
        mine = _Pending(list(texts))
        with self._cond:
            self._queue.append(mine)
        while True:
            with self._cond:
                # wait while every lane is busy, or while this query is in a forward another thread runs
                while not mine.done and (self._running >= self.lanes or not self._queue):
                    self._cond.wait()
                if mine.done:
                    return self._outcome(mine)
                self._running += 1  # this thread runs the next forward, for the queue's head
                batch, count = [], 0
                while self._queue and (not batch or count + len(self._queue[0].texts) <= MAX_BATCH):
                    item = self._queue.pop(0)
                    batch.append(item)
                    count += len(item.texts)
            try:
                self._run(batch)
            finally:
                with self._cond:
                    self._running -= 1
                    self._cond.notify_all()

    def _run(self, batch: list[_Pending]) -> None:
        texts = [t for item in batch for t in item.texts]
        try:
            vectors = self.embed_now(texts)
        except BaseException as exc:  # every waiting query hears of it, not only the one that ran it
            for item in batch:
                item.error, item.done = exc, True
            return
        start = 0
        for item in batch:
            item.result, item.done = vectors[start:start + len(item.texts)], True
            start += len(item.texts)

    @staticmethod
    def _outcome(item: _Pending) -> np.ndarray:
        if item.error is not None:
            raise item.error
        assert item.result is not None
        return item.result
