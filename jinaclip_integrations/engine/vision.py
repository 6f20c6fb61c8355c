"""EVA02 vision tower of jina-clip (v2: EVA02-L/14 at 512 px; v1: EVA02-B/16 at 224 px).

A ViT with a CLS token and learned absolute position embeddings, pre-LN blocks, 2-D rotary
position embeddings on the patch tokens, an extra LayerNorm on the attention output (sub-LN),
and a SwiGLU MLP with a LayerNorm before its output projection. Attention runs through
``torch.nn.functional.scaled_dot_product_attention``.

The published checkpoint has separate q/k/v projections (with ``q_bias`` and ``v_bias``, no k
bias) and separate SwiGLU ``w1``/``w2``; :func:`checkpoint_filter_fn` fuses each group into one
matrix so a block runs two fewer matmuls. Modules do no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from .config import VisionConfig


def rope_table(cfg: VisionConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin tables [1 + grid*grid, head_width] for the CLS token and the patches, on the CPU.

    Per axis, frequencies ``1 / 10000**(2i/d)`` with ``d = head_width / 2``, each repeated twice
    for the interleaved pair rotation, at positions ``arange(g) / g * pt_hw_seq_len`` (``g`` =
    :attr:`VisionConfig.rope_grid`); the row-axis and column-axis angles are concatenated (row
    first) and flattened row-major over the grid. The CLS row is the identity rotation (cos 1,
    sin 0), which leaves that token unrotated as the reference does.
    """
    half = cfg.head_width // 2
    g = cfg.rope_grid
    f32, cpu = torch.float32, "cpu"  # the reference's float32 arithmetic on the CPU, step for step (bit-identical)
    freqs = 1.0 / 10000 ** (torch.arange(0, half, 2, dtype=f32, device=cpu)[: half // 2] / half)
    t = torch.arange(g, dtype=f32, device=cpu) / g * cfg.pt_hw_seq_len
    angles = torch.outer(t, freqs).repeat_interleave(2, dim=-1)  # [g, half]
    rows = angles[:, None, :].expand(g, g, half)
    cols = angles[None, :, :].expand(g, g, half)
    grid = torch.cat((rows, cols), dim=-1).reshape(g * g, 2 * half)
    grid = torch.cat((torch.zeros(1, 2 * half, dtype=f32, device=cpu), grid))
    return grid.cos(), grid.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate interleaved pairs: (x[2i], x[2i+1]) -> (x[2i] cos - x[2i+1] sin, x[2i+1] cos + x[2i] sin)."""
    x1, x2 = x.unflatten(-1, (-1, 2)).unbind(-1)
    rotated = torch.stack((-x2, x1), dim=-1).flatten(-2)
    return x * cos + rotated * sin


class Attention(nn.Module):
    """Multi-head self-attention with fused qkv, 2-D RoPE and the sub-LN before ``proj``."""

    def __init__(self, cfg: VisionConfig) -> None:
        super().__init__()
        self.num_heads = cfg.num_heads
        self.qkv = nn.Linear(cfg.width, 3 * cfg.width, bias=cfg.qkv_bias)
        norm = nn.LayerNorm(cfg.width, eps=cfg.layer_norm_eps)
        self.inner_attn_ln = norm if cfg.subln else nn.Identity()
        self.proj = nn.Linear(cfg.width, cfg.width)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None) -> torch.Tensor:
        B, N, C = x.shape
        q, k, v = self.qkv(x).view(B, N, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)  # 3 x [B, H, N, D]
        if rope is not None:
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        x = F.scaled_dot_product_attention(q, k, v)
        x = x.transpose(1, 2).reshape(B, N, C)
        return self.proj(self.inner_attn_ln(x))


class SwiGLU(nn.Module):
    """``w3(ffn_ln(silu(w1 x) * w2 x))`` with w1 and w2 fused into ``w12``."""

    def __init__(self, cfg: VisionConfig) -> None:
        super().__init__()
        hidden = cfg.mlp_hidden
        self.w12 = nn.Linear(cfg.width, 2 * hidden)
        norm = nn.LayerNorm(hidden, eps=cfg.layer_norm_eps)
        self.ffn_ln = norm if cfg.subln else nn.Identity()
        self.w3 = nn.Linear(hidden, cfg.width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.w12(x).chunk(2, dim=-1)
        return self.w3(self.ffn_ln(F.silu(gate) * up))


class Block(nn.Module):
    def __init__(self, cfg: VisionConfig) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(cfg.width, eps=cfg.layer_norm_eps)
        self.attn = Attention(cfg)
        self.norm2 = nn.LayerNorm(cfg.width, eps=cfg.layer_norm_eps)
        self.mlp = SwiGLU(cfg)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), rope)
        return x + self.mlp(self.norm2(x))


class VisionTower(nn.Module):
    """Pixels [B, 3, S, S] (normalized) -> CLS features [B, width] after the final LayerNorm."""

    def __init__(self, cfg: VisionConfig) -> None:
        super().__init__()
        self.cfg = cfg
        w = cfg.width
        self.patch_embed = nn.Conv2d(3, w, kernel_size=cfg.patch_size, stride=cfg.patch_size)
        self.cls_token = nn.Parameter(torch.empty(1, 1, w))
        self.pos_embed = nn.Parameter(torch.empty(1, cfg.grid_size**2 + 1, w))
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.layers))
        self.norm = nn.LayerNorm(w, eps=cfg.layer_norm_eps)
        self.reset_buffers(None)

    def reset_buffers(self, device: torch.device | None) -> None:
        """(Re)compute the RoPE tables (non-persistent float32 buffers) and move them to ``device``."""
        if self.cfg.rope_embeddings:
            cos, sin = rope_table(self.cfg)
            self.register_buffer("rope_cos", cos.to(device=device), persistent=False)
            self.register_buffer("rope_sin", sin.to(device=device), persistent=False)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(pixels).flatten(2).transpose(1, 2)  # [B, grid*grid, W]
        x = torch.cat((self.cls_token.expand(x.shape[0], -1, -1), x), dim=1) + self.pos_embed
        rope = None
        if self.cfg.rope_embeddings:
            rope = (self.rope_cos.to(x.dtype), self.rope_sin.to(x.dtype))
        for block in self.blocks:
            x = block(x, rope)
        return self.norm(x[:, 0])


def checkpoint_filter_fn(take: Callable[[str], torch.Tensor], cfg: VisionConfig) -> Iterator[tuple[str, torch.Tensor]]:
    """Map the published ``vision_model.*`` tensors (fetched by ``take(name)``, names relative to
    ``vision_model.``) onto :class:`VisionTower`'s state dict, fusing q/k/v and w1/w2: yields
    ``(name, tensor)`` one at a time."""
    for name in ("cls_token", "pos_embed", "norm.weight", "norm.bias"):
        yield name, take(name)
    yield "patch_embed.weight", take("patch_embed.proj.weight")
    yield "patch_embed.bias", take("patch_embed.proj.bias")
    copied = ["norm1.weight", "norm1.bias", "norm2.weight", "norm2.bias", "attn.proj.weight",
              "attn.proj.bias", "mlp.w3.weight", "mlp.w3.bias"]  # fmt: skip
    if cfg.subln:
        copied += ["attn.inner_attn_ln.weight", "attn.inner_attn_ln.bias", "mlp.ffn_ln.weight", "mlp.ffn_ln.bias"]
    for i in range(cfg.layers):
        p = f"blocks.{i}."
        for name in copied:
            yield p + name, take(p + name)
        yield p + "attn.qkv.weight", torch.cat([take(p + f"attn.{n}_proj.weight") for n in "qkv"])
        if cfg.qkv_bias:
            q_bias = take(p + "attn.q_bias")
            yield p + "attn.qkv.bias", torch.cat((q_bias, torch.zeros_like(q_bias), take(p + "attn.v_bias")))
        yield p + "mlp.w12.weight", torch.cat((take(p + "mlp.w1.weight"), take(p + "mlp.w2.weight")))
        yield p + "mlp.w12.bias", torch.cat((take(p + "mlp.w1.bias"), take(p + "mlp.w2.bias")))
