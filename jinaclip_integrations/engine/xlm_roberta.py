"""XLM-RoBERTa text tower of jina-clip-v2: transformers' ``JinaEmbeddingsV3Model`` plus mean pooling.

jina-clip-v2's text tower is jina-embeddings-v3's architecture (XLM-RoBERTa with rotary
position embeddings, post-LN blocks), which transformers ships; this module only builds it
from our config (with SDPA attention) and maps the published weights onto it. The published
checkpoint stores every Linear/Embedding weight as a LoRA parametrization (``original`` +
per-adapter ``lora_A``/``lora_B``); the reference always applies the
``default_lora_task`` adapter, so :func:`checkpoint_filter_fn` merges that adapter into the
weights once and inference costs nothing extra.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch import nn

from ..progress import quiet_loggers
from .config import XLMRobertaConfig

#: Loggers that speak when transformers' model code is first imported with torchao installed (the
#: ``int8`` extra): transformers imports torchao for its quantizers, and torchao 0.18 on torch
#: 2.13 warns that its CUDA-only kernels do not load and that torch no longer needs two of its
#: registrations; none of it concerns a model loaded here, and it would print on every command.
_IMPORT_NOISE = ("torchao", "torch.utils._pytree")


def hf_config(cfg: XLMRobertaConfig):
    """The transformers ``JinaEmbeddingsV3Config`` for our text config."""
    from transformers import JinaEmbeddingsV3Config

    return JinaEmbeddingsV3Config(
        vocab_size=cfg.vocab_size,
        hidden_size=cfg.hidden_size,
        num_hidden_layers=cfg.num_hidden_layers,
        num_attention_heads=cfg.num_attention_heads,
        intermediate_size=cfg.intermediate_size,
        hidden_act=cfg.hidden_act,
        max_position_embeddings=cfg.max_position_embeddings,
        type_vocab_size=cfg.type_vocab_size,
        layer_norm_eps=cfg.layer_norm_eps,
        pad_token_id=cfg.pad_token_id,
        rope_parameters={"rope_type": "default", "rope_theta": cfg.rotary_emb_base},
        attn_implementation="sdpa",
    )


class XLMRobertaTower(nn.Module):
    """Token ids [B, L] + attention mask [B, L] -> mean-pooled features [B, hidden] (fp32)."""

    def __init__(self, cfg: XLMRobertaConfig) -> None:
        super().__init__()
        with quiet_loggers(*_IMPORT_NOISE):
            from transformers import JinaEmbeddingsV3Model

        self.transformer = JinaEmbeddingsV3Model(hf_config(cfg), add_pooling_layer=False)

    def reset_buffers(self, device: torch.device | None) -> None:
        """(Re)compute transformers' non-persistent buffers on ``device``: the rotary
        frequencies (float32, rebuilt by their module from the config, on the CPU then moved)
        and the embeddings' position and token-type ids."""
        model = self.transformer
        with torch.device("cpu"):
            model.rotary_emb = type(model.rotary_emb)(model.config).to(device=device)
        positions = torch.arange(model.config.max_position_embeddings, device=device).expand(1, -1)
        model.embeddings.position_ids = positions
        model.embeddings.token_type_ids = torch.zeros_like(positions)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.transformer(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).float()
        return (hidden.float() * mask).sum(1) / mask.sum(1).clamp(min=1e-9)


def checkpoint_filter_fn(
    take: Callable[[str], torch.Tensor], cfg: XLMRobertaConfig
) -> Iterator[tuple[str, torch.Tensor]]:
    """Map the published ``text_model.transformer.roberta.*`` tensors (fetched by ``take(name)``,
    names relative to that prefix) onto :class:`XLMRobertaTower`'s state dict: yields
    ``(name, tensor)`` one at a time.

    The fused ``Wqkv`` rows are ``[q; k; v]`` (flash-attn's ``(three h d)`` layout) and are split
    into transformers' ``q_proj``/``k_proj``/``v_proj``.
    """
    adapter = cfg.active_adapter
    scale = cfg.lora_scaling

    def weight(module: str, embedding: bool = False) -> torch.Tensor:
        if not cfg.lora_adaptations:
            return take(f"{module}.weight")
        p = f"{module}.parametrizations.weight."
        w, a, b = take(p + "original"), take(p + "0.lora_A"), take(p + "0.lora_B")
        if adapter is None:
            return w
        a, b = a[adapter].float(), b[adapter].float()
        # Linear: A is [rank, in] and B [out, rank]; Embedding: A is [vocab, rank] and B [rank, dim].
        # Merged in fp32 (the load casts to the model dtype), in place: no [out, in] temporaries
        # besides the fp32 copy (a 1 GB one for v2's word embeddings).
        return w.float().addmm_(*((a, b) if embedding else (b, a)), alpha=scale)

    t = "transformer."
    yield t + "embeddings.word_embeddings.weight", weight("embeddings.word_embeddings", embedding=True)
    yield t + "embeddings.token_type_embeddings.weight", weight("embeddings.token_type_embeddings", embedding=True)
    yield t + "embeddings.LayerNorm.weight", take("emb_ln.weight")
    yield t + "embeddings.LayerNorm.bias", take("emb_ln.bias")
    for i in range(cfg.num_hidden_layers):
        src, dst = f"encoder.layers.{i}.", f"{t}layers.{i}."
        q, k, v = weight(src + "mixer.Wqkv").chunk(3)
        qb, kb, vb = take(src + "mixer.Wqkv.bias").chunk(3)
        for name, w, b in (("q_proj", q, qb), ("k_proj", k, kb), ("v_proj", v, vb)):
            yield f"{dst}self_attn.{name}.weight", w
            yield f"{dst}self_attn.{name}.bias", b
        yield dst + "self_attn.o_proj.weight", weight(src + "mixer.out_proj")
        yield dst + "self_attn.o_proj.bias", take(src + "mixer.out_proj.bias")
        for fc in ("fc1", "fc2"):
            yield f"{dst}mlp.{fc}.weight", weight(f"{src}mlp.{fc}")
            yield f"{dst}mlp.{fc}.bias", take(f"{src}mlp.{fc}.bias")
        for norm, ours in (("norm1", "post_attention_layernorm"), ("norm2", "post_mlp_layernorm")):
            yield f"{dst}{ours}.weight", take(f"{src}{norm}.weight")
            yield f"{dst}{ours}.bias", take(f"{src}{norm}.bias")
