"""An independent, deliberately naive jina-clip forward pass (v2 and v1), used as a test oracle.

Written from the fixture READMEs' description of the reference models, directly on the
*published* tensor names and layouts: LoRA weights applied as ``W + B @ A * scale`` at every
call, the fused ``Wqkv``, separate q/k/v projections with ``q_bias``/``v_bias``, explicit
attention with -10000 on padded keys, an einsum-built 2-D RoPE table applied to all tokens
but CLS; for v1 the JinaBERT text tower with its ALiBi bias built by the ALiBi paper's own
recursive slope rule, an explicit softmax and an erf-written GELU. It shares no code with the
package. ``test_reference_impl_matches_goldens`` (v2) and ``test_jinabert_reference_matches_goldens``
(v1) check it against the golden outputs; the tests of other configurations then trust it for
sizes that have no goldens. The vision forward serves both versions.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

T = "text_model.transformer.roberta."
T1 = "text_model.transformer."  # jina-clip-v1 (JinaBERT)
V = "vision_model."


def _text_sizes(config: dict) -> dict:
    return config["text_config"]["hf_model_config_kwargs"]


def _lora_weight(sd: dict, module: str, kwargs: dict, adapter: int | None, embedding: bool) -> torch.Tensor:
    p = module + ".parametrizations.weight."
    w = sd[p + "original"]
    if adapter is None:
        return w
    a, b = sd[p + "0.lora_A"][adapter], sd[p + "0.lora_B"][adapter]
    scale = kwargs["lora_alpha"] / kwargs["lora_rank"]
    return w + (a @ b if embedding else b @ a) * scale


def text_forward(sd: dict, config: dict, input_ids: torch.Tensor) -> torch.Tensor:
    """Mean-pooled text features [B, H] (not normalized) for padded ``input_ids`` [B, L]."""
    kw = _text_sizes(config)
    tc = config["text_config"]
    adapter = kw["lora_adaptations"].index(tc["default_lora_task"]) if tc.get("default_lora_task") else None
    pad = kw["pad_token_id"]
    eps = kw["layer_norm_eps"]
    heads = kw["num_attention_heads"]
    mask = (input_ids != pad).float()
    B, L = input_ids.shape

    word = _lora_weight(sd, T + "embeddings.word_embeddings", kw, adapter, embedding=True)
    token_type = _lora_weight(sd, T + "embeddings.token_type_embeddings", kw, adapter, embedding=True)
    x = word[input_ids] + token_type[0]
    x = F.layer_norm(x, x.shape[-1:], sd[T + "emb_ln.weight"], sd[T + "emb_ln.bias"], eps)

    H = x.shape[-1]
    d = H // heads
    inv = 1.0 / (kw["rotary_emb_base"] ** (torch.arange(0, d, 2).float() / d))
    ang = torch.outer(torch.arange(L).float(), inv)  # [L, d/2]
    cos, sin = ang.cos(), ang.sin()

    def rope(t):  # t [B, heads, L, d], rotate halves
        t1, t2 = t[..., : d // 2], t[..., d // 2 :]
        return torch.cat((t1 * cos - t2 * sin, t2 * cos + t1 * sin), dim=-1)

    bias = (1.0 - mask)[:, None, None, :] * -10000.0
    for i in range(kw["num_hidden_layers"]):
        p = f"{T}encoder.layers.{i}."
        wqkv = _lora_weight(sd, p + "mixer.Wqkv", kw, adapter, embedding=False)
        qkv = x @ wqkv.T + sd[p + "mixer.Wqkv.bias"]
        q, k, v = (t.reshape(B, L, heads, d).transpose(1, 2) for t in qkv.split(H, dim=-1))
        q, k = rope(q), rope(k)
        scores = q @ k.transpose(-1, -2) / math.sqrt(d) + bias
        att = (scores.softmax(-1) @ v).transpose(1, 2).reshape(B, L, H)
        att = att @ _lora_weight(sd, p + "mixer.out_proj", kw, adapter, False).T + sd[p + "mixer.out_proj.bias"]
        x = F.layer_norm(x + att, (H,), sd[p + "norm1.weight"], sd[p + "norm1.bias"], eps)
        h = x @ _lora_weight(sd, p + "mlp.fc1", kw, adapter, False).T + sd[p + "mlp.fc1.bias"]
        h = F.gelu(h) @ _lora_weight(sd, p + "mlp.fc2", kw, adapter, False).T + sd[p + "mlp.fc2.bias"]
        x = F.layer_norm(x + h, (H,), sd[p + "norm2.weight"], sd[p + "norm2.bias"], eps)
    return (x * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)


def alibi_slopes(n: int) -> list[float]:
    """ALiBi slopes as the ALiBi paper's code writes them: a geometric sequence starting at
    ``2**(-8/n)`` for a power of two, else the closest lower power's slopes plus every other
    slope of twice that many heads."""

    def geometric(n: int) -> list[float]:
        start = 2 ** (-(2 ** -(math.log2(n) - 3)))
        return [start * start**i for i in range(n)]

    if math.log2(n).is_integer():
        return geometric(n)
    closest = 2 ** math.floor(math.log2(n))
    return geometric(closest) + alibi_slopes(2 * closest)[0::2][: n - closest]


def jinabert_text_forward(sd: dict, config: dict, input_ids: torch.Tensor) -> torch.Tensor:
    """jina-clip-v1: mean-pooled JinaBERT features [B, H] (not normalized) for padded ``input_ids``."""
    kw = config["text_config"]["hf_model_config_kwargs"]
    pad = kw["pad_token_id"]
    eps = kw["layer_norm_eps"]
    heads = kw["num_attention_heads"]
    inter = kw["intermediate_size"]
    mask = (input_ids != pad).float()
    B, L = input_ids.shape

    x = sd[T1 + "embeddings.word_embeddings.weight"][input_ids] + sd[T1 + "embeddings.token_type_embeddings.weight"][0]
    x = F.layer_norm(x, x.shape[-1:], sd[T1 + "emb_ln.weight"], sd[T1 + "emb_ln.bias"], eps)
    H = x.shape[-1]
    d = H // heads

    slopes = torch.tensor(alibi_slopes(heads))
    i = torch.arange(L)
    alibi = -slopes.view(heads, 1, 1) * (i.view(1, L, 1) - i.view(1, 1, L)).abs().float()  # [heads, L, L]
    bias = alibi[None] + (1.0 - mask)[:, None, None, :] * -10000.0

    def gelu(t):  # exact GELU
        return 0.5 * t * (1.0 + torch.erf(t / math.sqrt(2.0)))

    for layer in range(kw["num_hidden_layers"]):
        p = f"{T1}encoder.layers.{layer}."
        qkv = x @ sd[p + "mixer.Wqkv.weight"].T + sd[p + "mixer.Wqkv.bias"]
        q, k, v = (t.reshape(B, L, heads, d).transpose(1, 2) for t in qkv.split(H, dim=-1))
        scores = q @ k.transpose(-1, -2) / math.sqrt(d) + bias
        weights = (scores - scores.amax(-1, keepdim=True)).exp()
        weights = weights / weights.sum(-1, keepdim=True)
        att = (weights @ v).transpose(1, 2).reshape(B, L, H)
        att = att @ sd[p + "mixer.out_proj.weight"].T + sd[p + "mixer.out_proj.bias"]
        x = F.layer_norm(x + att, (H,), sd[p + "norm1.weight"], sd[p + "norm1.bias"], eps)
        y = x @ sd[p + "mlp.gated_layers.weight"].T
        m = (gelu(y[..., :inter]) * y[..., inter:]) @ sd[p + "mlp.wo.weight"].T + sd[p + "mlp.wo.bias"]
        x = F.layer_norm(x + m, (H,), sd[p + "norm2.weight"], sd[p + "norm2.bias"], eps)
    return (x * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)


def _vision_rope(vc: dict) -> tuple[torch.Tensor, torch.Tensor]:
    half = vc["head_width"] // 2
    grid = vc["image_size"] // vc["patch_size"]
    pt = vc["pt_hw_seq_len"]
    side = grid if vc["intp_freq"] else pt
    freqs = 1.0 / (10000 ** (torch.arange(0, half, 2)[: half // 2].float() / half))
    t = torch.arange(side).float() / side * pt
    f = torch.einsum("i,j->ij", t, freqs)
    f = torch.stack((f, f), dim=-1).reshape(side, -1)  # each frequency twice, interleaved
    table = torch.cat((f[:, None, :].expand(side, side, -1), f[None, :, :].expand(side, side, -1)), dim=-1)
    table = table.reshape(side * side, -1)
    return table.cos(), table.sin()


def vision_forward(sd: dict, config: dict, pixels: torch.Tensor) -> torch.Tensor:
    """CLS features [B, W] after the final LayerNorm for normalized ``pixels`` [B, 3, S, S]."""
    vc = config["vision_config"]
    W = vc["width"]
    heads = W // vc["head_width"]
    d = vc["head_width"]
    eps = 1e-6
    x = F.conv2d(pixels, sd[V + "patch_embed.proj.weight"], sd[V + "patch_embed.proj.bias"], stride=vc["patch_size"])
    x = x.flatten(2).transpose(1, 2)
    B = x.shape[0]
    x = torch.cat((sd[V + "cls_token"].expand(B, -1, -1), x), dim=1) + sd[V + "pos_embed"]
    N = x.shape[1]
    cos, sin = _vision_rope(vc)

    def rope(t):  # interleaved pairs, on patch tokens only
        t_cls, t_p = t[:, :, :1], t[:, :, 1:]
        pairs = t_p.reshape(*t_p.shape[:-1], -1, 2)
        rot = torch.stack((-pairs[..., 1], pairs[..., 0]), dim=-1).reshape(t_p.shape)
        return torch.cat((t_cls, t_p * cos + rot * sin), dim=2)

    def ln(t, name):
        return F.layer_norm(t, t.shape[-1:], sd[name + ".weight"], sd[name + ".bias"], eps)

    for i in range(vc["layers"]):
        p = f"{V}blocks.{i}."
        h = ln(x, p + "norm1")
        qb = sd.get(p + "attn.q_bias")
        vb = sd.get(p + "attn.v_bias")
        q = F.linear(h, sd[p + "attn.q_proj.weight"], qb)
        k = F.linear(h, sd[p + "attn.k_proj.weight"])
        v = F.linear(h, sd[p + "attn.v_proj.weight"], vb)
        q, k, v = (t.reshape(B, N, heads, d).transpose(1, 2) for t in (q, k, v))
        if vc.get("rope_embeddings", True):
            q, k = rope(q), rope(k)
        att = ((q @ k.transpose(-1, -2)) * d**-0.5).softmax(-1) @ v
        att = att.transpose(1, 2).reshape(B, N, W)
        if vc.get("subln", True):
            att = ln(att, p + "attn.inner_attn_ln")
        x = x + F.linear(att, sd[p + "attn.proj.weight"], sd[p + "attn.proj.bias"])
        h = ln(x, p + "norm2")
        g = F.silu(F.linear(h, sd[p + "mlp.w1.weight"], sd[p + "mlp.w1.bias"]))
        g = g * F.linear(h, sd[p + "mlp.w2.weight"], sd[p + "mlp.w2.bias"])
        if vc.get("subln", True):
            g = ln(g, p + "mlp.ffn_ln")
        x = x + F.linear(g, sd[p + "mlp.w3.weight"], sd[p + "mlp.w3.bias"])
    return ln(x, V + "norm")[:, 0]


def preprocess(img, size: int, mean, std) -> torch.Tensor:
    """PIL image -> normalized [3, size, size], as torchvision Resize/CenterCrop would do."""
    from PIL import Image

    img = img.convert("RGB")
    w, h = img.size
    new = (size, int(size * h / w)) if w <= h else (int(size * w / h), size)
    img = img.resize(new, Image.BICUBIC)
    left = int(round((new[0] - size) / 2.0))
    top = int(round((new[1] - size) / 2.0))
    img = img.crop((left, top, left + size, top + size))
    x = torch.tensor(np.array(img), dtype=torch.float32).permute(2, 0, 1) / 255
    return (x - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)
