"""JinaBERT text tower of jina-clip-v1 (``jinaai/jina-bert-flash-implementation``), plus mean pooling.

BERT without position embeddings: every attention head instead adds the symmetric ALiBi bias
``-slope_h * |i - j|`` to its scores, which lets the model read up to 8192 tokens. The blocks
are post-LN (``x = norm1(x + attn(x))``, ``x = norm2(x + mlp(x))``) and the feed-forward is a
gated GELU: ``wo(gelu(y[:I]) * y[I:])`` with ``y = gated_layers(x)`` (no bias). No maintained
library ships this architecture, so it is written here on
``torch.nn.functional.scaled_dot_product_attention``: the ALiBi bias and the key padding are one
additive float mask, built once per forward pass and shared by every layer. Modules do no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from .config import JinaBertConfig

#: Added to the scores of padded keys (the reference's value; as good as -inf after softmax).
PADDING_BIAS = -10000.0


def alibi_slopes(num_heads: int) -> list[float]:
    """The ALiBi slope of each head.

    For ``n`` heads, ``n`` a power of two: ``2**(-8 (k+1) / n)`` for ``k = 0..n-1``. Otherwise the
    slopes of the largest power of two ``p < n``, followed by every other slope of ``2p`` heads
    (the 1st, 3rd, ...) up to ``n`` in all: the rule of the ALiBi paper's code, which keeps the
    slopes a geometric-like sequence between 2**-8/n and 1/2.
    """

    def power_of_two(n: int) -> list[float]:
        return [2.0 ** (-8.0 * (k + 1) / n) for k in range(n)]

    p = 2 ** int(math.log2(num_heads))
    return power_of_two(p) + power_of_two(2 * p)[::2][: num_heads - p]


class Embeddings(nn.Module):
    """Word embedding plus the token-type-0 embedding (every token is type 0), then LayerNorm.
    There are no position embeddings: positions enter only through the ALiBi bias."""

    def __init__(self, cfg: JinaBertConfig) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.token_type_embeddings = nn.Embedding(cfg.type_vocab_size, cfg.hidden_size)
        self.norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.norm(self.word_embeddings(input_ids) + self.token_type_embeddings.weight[0])


class Attention(nn.Module):
    """Multi-head self-attention with a fused ``[q; k; v]`` projection and an additive bias."""

    def __init__(self, cfg: JinaBertConfig) -> None:
        super().__init__()
        self.num_heads = cfg.num_attention_heads
        self.qkv = nn.Linear(cfg.hidden_size, 3 * cfg.hidden_size)
        self.proj = nn.Linear(cfg.hidden_size, cfg.hidden_size)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        B, L, C = x.shape
        q, k, v = self.qkv(x).view(B, L, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)  # 3 x [B, H, L, D]
        x = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        return self.proj(x.transpose(1, 2).reshape(B, L, C))


class GatedMLP(nn.Module):
    """``fc2(gelu(gate) * up)`` with ``[gate; up] = fc1(x)``; fc1 has no bias. GELU is the exact
    (erf) one, as ``hidden_act: "gelu"`` says."""

    def __init__(self, cfg: JinaBertConfig) -> None:
        super().__init__()
        self.fc1 = nn.Linear(cfg.hidden_size, 2 * cfg.intermediate_size, bias=False)
        self.fc2 = nn.Linear(cfg.intermediate_size, cfg.hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.fc1(x).chunk(2, dim=-1)
        return self.fc2(F.gelu(gate) * up)


class Layer(nn.Module):
    """A post-LN block: LayerNorm after each residual sum."""

    def __init__(self, cfg: JinaBertConfig) -> None:
        super().__init__()
        self.attn = Attention(cfg)
        self.norm1 = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.mlp = GatedMLP(cfg)
        self.norm2 = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        x = self.norm1(x + self.attn(x, bias))
        return self.norm2(x + self.mlp(x))


class JinaBertTower(nn.Module):
    """Token ids [B, L] + attention mask [B, L] -> mean-pooled features [B, hidden] (fp32)."""

    def __init__(self, cfg: JinaBertConfig) -> None:
        super().__init__()
        self.embeddings = Embeddings(cfg)
        self.layers = nn.ModuleList(Layer(cfg) for _ in range(cfg.num_hidden_layers))
        self.num_heads = cfg.num_attention_heads
        self.reset_buffers(None)

    def reset_buffers(self, device: torch.device | None) -> None:
        """(Re)compute the ALiBi slopes (a non-persistent float32 buffer) on ``device``."""
        slopes = torch.tensor(alibi_slopes(self.num_heads), dtype=torch.float32, device=device or "cpu")
        self.register_buffer("alibi_slopes", slopes, persistent=False)

    def attention_bias(self, attention_mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """The additive attention mask [B, heads, L, L] in ``dtype``: ``-slope_h * |i - j|`` plus
        :data:`PADDING_BIAS` where key ``j`` is padding. Built in fp32, cast once."""
        positions = torch.arange(attention_mask.shape[1], device=attention_mask.device, dtype=torch.float32)
        distance = (positions[None, :] - positions[:, None]).abs()  # [L, L]
        alibi = -self.alibi_slopes[:, None, None] * distance  # [heads, L, L]
        padding = torch.where(attention_mask, 0.0, PADDING_BIAS)[:, None, None, :]  # [B, 1, 1, L]
        return (alibi + padding).to(dtype)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        attention_mask = attention_mask.bool()
        x = self.embeddings(input_ids)
        bias = self.attention_bias(attention_mask, x.dtype)
        for layer in self.layers:
            x = layer(x, bias)
        mask = attention_mask.unsqueeze(-1).float()
        return (x.float() * mask).sum(1) / mask.sum(1).clamp(min=1e-9)


def checkpoint_filter_fn(
    take: Callable[[str], torch.Tensor], cfg: JinaBertConfig
) -> Iterator[tuple[str, torch.Tensor]]:
    """Map the published ``text_model.transformer.*`` tensors (fetched by ``take(name)``, names
    relative to that prefix) onto :class:`JinaBertTower`'s state dict: yields ``(name, tensor)``
    one at a time.

    ``Wqkv`` rows are ``[q; k; v]``, each head-major, which is the layout ``Attention`` reads;
    ``gated_layers`` rows are ``[gate; up]``, which is ``GatedMLP.fc1``'s.
    """
    yield "embeddings.word_embeddings.weight", take("embeddings.word_embeddings.weight")
    yield "embeddings.token_type_embeddings.weight", take("embeddings.token_type_embeddings.weight")
    yield "embeddings.norm.weight", take("emb_ln.weight")
    yield "embeddings.norm.bias", take("emb_ln.bias")
    renames = {
        "mixer.Wqkv.weight": "attn.qkv.weight",
        "mixer.Wqkv.bias": "attn.qkv.bias",
        "mixer.out_proj.weight": "attn.proj.weight",
        "mixer.out_proj.bias": "attn.proj.bias",
        "norm1.weight": "norm1.weight",
        "norm1.bias": "norm1.bias",
        "mlp.gated_layers.weight": "mlp.fc1.weight",
        "mlp.wo.weight": "mlp.fc2.weight",
        "mlp.wo.bias": "mlp.fc2.bias",
        "norm2.weight": "norm2.weight",
        "norm2.bias": "norm2.bias",
    }
    for i in range(cfg.num_hidden_layers):
        for published, ours in renames.items():
            yield f"layers.{i}.{ours}", take(f"encoder.layers.{i}.{published}")
