"""Write random jina-clip checkpoints (v2 or v1) of any size in the published layout.

The key names and shapes are those of the published ``model.safetensors`` (see the fixtures'
READMEs); the config is a tiny fixture's ``config.json`` with the sizes replaced, and the
tokenizer files are that fixture's. The template's ``hf_model_name_or_path`` tells which text
tower to write: jina-clip-v2's XLM-RoBERTa with LoRA, or jina-clip-v1's JinaBERT. LoRA
``lora_B`` tensors are random (not zero as at training start), so a checkpoint whose adapter
were not merged, or merged wrongly, gives different embeddings.
"""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from reference_impl import T1, T, V

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")
JINA_BERT = "jinaai/jina-bert-flash-implementation"


def _lora(rng, name: str, out_in: tuple[int, int], n: int, rank: int, embedding: bool, std: float) -> dict:
    p = name + ".parametrizations.weight."
    a_shape, b_shape = ((n, out_in[0], rank), (n, rank, out_in[1])) if embedding else ((n, rank, out_in[1]), (n, out_in[0], rank))  # fmt: skip
    return {
        p + "original": rng.normal(0, std, out_in),
        p + "0.lora_A": rng.normal(0, 0.1, a_shape),
        p + "0.lora_B": rng.normal(0, 0.1, b_shape),
    }


def _norm(rng, name: str, dim: int) -> dict:
    return {name + ".weight": 1 + rng.normal(0, 0.1, dim), name + ".bias": rng.normal(0, 0.1, dim)}


def random_state_dict(config: dict, seed: int = 0, dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    """The published tensors, in ``dtype``; each tower is converted as soon as it is drawn, so a
    full-size checkpoint needs one tower's float64 draws at a time (benchmarks/bench_model_load.py)."""
    rng = np.random.default_rng(seed)
    text = _jinabert_text if config["text_config"]["hf_model_name_or_path"] == JINA_BERT else _xlm_roberta_text
    sd = {"logit_scale": torch.tensor(2.6592, dtype=dtype)}
    for part in (
        lambda: text(rng, config["text_config"]["hf_model_config_kwargs"]),
        lambda: _vision(rng, config["vision_config"]),
    ):
        sd.update({k: torch.tensor(v, dtype=dtype) for k, v in part().items()})
    return sd


def _jinabert_text(rng, kw: dict) -> dict:
    """jina-clip-v1's JinaBERT: fused ``Wqkv``, ``gated_layers`` [2I, H] without bias, ``wo``; no
    position embeddings. q/k/v and the GLU weights have a large spread so that attention is far
    from uniform (the ALiBi bias matters) and both GLU halves move the output."""
    H, F, Vs = kw["hidden_size"], kw["intermediate_size"], kw["vocab_size"]
    sd = {
        T1 + "embeddings.word_embeddings.weight": rng.normal(0, 0.5, (Vs, H)),
        T1 + "embeddings.token_type_embeddings.weight": rng.normal(0, 0.5, (kw["type_vocab_size"], H)),
    }
    sd.update(_norm(rng, T1 + "emb_ln", H))
    for i in range(kw["num_hidden_layers"]):
        p = f"{T1}encoder.layers.{i}."
        sd[p + "mixer.Wqkv.weight"] = rng.normal(0, 0.25, (3 * H, H))
        sd[p + "mixer.Wqkv.bias"] = rng.normal(0, 0.1, 3 * H)
        sd[p + "mixer.out_proj.weight"] = rng.normal(0, 0.1, (H, H))
        sd[p + "mixer.out_proj.bias"] = rng.normal(0, 0.1, H)
        sd[p + "mlp.gated_layers.weight"] = rng.normal(0, 0.15, (2 * F, H))
        sd[p + "mlp.wo.weight"] = rng.normal(0, 0.15, (H, F))
        sd[p + "mlp.wo.bias"] = rng.normal(0, 0.1, H)
        sd.update(_norm(rng, p + "norm1", H))
        sd.update(_norm(rng, p + "norm2", H))
    return sd


def _xlm_roberta_text(rng, kw: dict) -> dict:
    """jina-clip-v2's XLM-RoBERTa: every Linear/Embedding weight a LoRA parametrization."""
    H, F, Vs, n, r = kw["hidden_size"], kw["intermediate_size"], kw["vocab_size"], len(kw["lora_adaptations"]), kw["lora_rank"]  # fmt: skip
    sd: dict = {}
    sd.update(_lora(rng, T + "embeddings.word_embeddings", (Vs, H), n, r, True, 0.5))
    sd.update(_lora(rng, T + "embeddings.token_type_embeddings", (kw["type_vocab_size"], H), n, r, True, 0.5))
    sd.update(_norm(rng, T + "emb_ln", H))
    for i in range(kw["num_hidden_layers"]):
        p = f"{T}encoder.layers.{i}."
        sd.update(_lora(rng, p + "mixer.Wqkv", (3 * H, H), n, r, False, 0.25))
        sd[p + "mixer.Wqkv.bias"] = rng.normal(0, 0.1, 3 * H)
        sd.update(_lora(rng, p + "mixer.out_proj", (H, H), n, r, False, 0.1))
        sd[p + "mixer.out_proj.bias"] = rng.normal(0, 0.1, H)
        sd.update(_lora(rng, p + "mlp.fc1", (F, H), n, r, False, 0.15))
        sd[p + "mlp.fc1.bias"] = rng.normal(0, 0.1, F)
        sd.update(_lora(rng, p + "mlp.fc2", (H, F), n, r, False, 0.1))
        sd[p + "mlp.fc2.bias"] = rng.normal(0, 0.1, H)
        sd.update(_norm(rng, p + "norm1", H))
        sd.update(_norm(rng, p + "norm2", H))
    return sd


def _vision(rng, vc: dict) -> dict:
    """The EVA02 tower, the same layout in v1 and v2."""
    W, P = vc["width"], vc["patch_size"]
    G = vc["image_size"] // P
    Hm = int(W * vc["mlp_ratio"])
    sd: dict = {}
    sd[V + "cls_token"] = rng.normal(0, 0.5, (1, 1, W))
    sd[V + "pos_embed"] = rng.normal(0, 0.5, (1, G * G + 1, W))
    sd[V + "patch_embed.proj.weight"] = rng.normal(0, 0.1, (W, 3, P, P))
    sd[V + "patch_embed.proj.bias"] = rng.normal(0, 0.1, W)
    sd.update(_norm(rng, V + "norm", W))
    for i in range(vc["layers"]):
        p = f"{V}blocks.{i}."
        sd.update(_norm(rng, p + "norm1", W))
        sd.update(_norm(rng, p + "norm2", W))
        for proj in ("q_proj", "k_proj", "v_proj"):
            sd[p + f"attn.{proj}.weight"] = rng.normal(0, 0.3, (W, W))
        if vc["qkv_bias"]:
            sd[p + "attn.q_bias"] = rng.normal(0, 0.1, W)
            sd[p + "attn.v_bias"] = rng.normal(0, 0.1, W)
        sd[p + "attn.proj.weight"] = rng.normal(0, 0.1, (W, W))
        sd[p + "attn.proj.bias"] = rng.normal(0, 0.1, W)
        for w in ("w1", "w2"):
            sd[p + f"mlp.{w}.weight"] = rng.normal(0, 0.15, (Hm, W))
            sd[p + f"mlp.{w}.bias"] = rng.normal(0, 0.1, Hm)
        sd[p + "mlp.w3.weight"] = rng.normal(0, 0.1, (W, Hm))
        sd[p + "mlp.w3.bias"] = rng.normal(0, 0.1, W)
        if vc["subln"]:
            sd.update(_norm(rng, p + "attn.inner_attn_ln", W))
            sd.update(_norm(rng, p + "mlp.ffn_ln", Hm))
    return sd


def write_checkpoint(
    folder: Path,
    template: Path,
    *,
    text: dict,
    vision: dict,
    top: dict | None = None,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
) -> tuple[dict, dict[str, torch.Tensor]]:
    """Write a checkpoint whose config is ``template``'s with ``text`` merged into
    ``hf_model_config_kwargs`` (keys ``default_lora_task``/``default_instruction_task`` go to
    ``text_config``), ``vision`` into ``vision_config`` and ``top`` into the top level.
    Returns the config and the published state dict."""
    config = json.loads((template / "config.json").read_text())
    config = copy.deepcopy(config)
    text = dict(text)
    for key in ("default_lora_task", "default_instruction_task"):
        if key in text:
            config["text_config"][key] = text.pop(key)
    config["text_config"]["hf_model_config_kwargs"].update(text)
    config["vision_config"].update(vision)
    config.update(top or {})
    embed = config["text_config"]["hf_model_config_kwargs"]["hidden_size"]
    config["text_config"]["embed_dim"] = config["vision_config"]["embed_dim"] = config["projection_dim"] = embed

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    preprocessor = json.loads((template / "preprocessor_config.json").read_text())
    preprocessor["size"] = config["vision_config"]["image_size"]
    (folder / "preprocessor_config.json").write_text(json.dumps(preprocessor, indent=2))
    for name in TOKENIZER_FILES:
        if (template / name).is_file():
            shutil.copy(template / name, folder / name)
    sd = random_state_dict(config, seed, dtype)
    save_file(sd, str(folder / "model.safetensors"), metadata={"format": "pt"})
    return config, sd
