"""Nothing about sizes is hard-coded: checkpoints of other configurations load and match.

There are no reference goldens for other sizes, so the oracle is ``reference_impl`` (a naive
forward pass on the published tensors, sharing no code with the package). It is first checked
against the goldens of the public fixture; then random checkpoints of other widths, depths,
head counts, image and patch sizes, RoPE bases, LoRA ranks/adapters and vision options are
written in the published layout, loaded with ``from_pretrained(folder)``, and compared.
Tolerance: atol 1e-5 (rtol 1e-4) on embeddings, as for the goldens.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file
from tokenizers import Tokenizer

import reference_impl as ref
from checkpoints import write_checkpoint
from conftest import V2_TINY
from jinaclip_integrations import JinaCLIPEngine

EMB = dict(atol=1e-5, rtol=1e-4)

VARIANTS = {
    # other widths/depths/heads, a 5x5 patch grid, another RoPE base, two LoRA adapters of which
    # the second is the always-active one, rank 2 with alpha 3 (scaling 1.5)
    "wide-deep-6heads-grid5": dict(
        text=dict(
            hidden_size=48, num_hidden_layers=3, num_attention_heads=6, intermediate_size=80,
            rotary_emb_base=10000.0, lora_rank=2, lora_alpha=3,
            lora_adaptations=["retrieval.query", "retrieval.passage"],
            task_instructions={"retrieval.query": "Query: ", "retrieval.passage": "Passage: "},
            default_lora_task="retrieval.passage",
        ),
        vision=dict(width=48, layers=3, head_width=12, patch_size=8, image_size=40, mlp_ratio=2.5),
        top=dict(matryoshka_dimensions=[12, 24, 48]),
    ),
    # EVA02 options the config can switch: no q/v bias, no sub-LN, RoPE at integer positions
    # (intp_freq false, pt_hw_seq_len = grid, as in jina-clip-v1), an odd head count
    "no-bias-no-subln-v1-rope": dict(
        text=dict(hidden_size=40, num_hidden_layers=1, num_attention_heads=5, intermediate_size=64),
        vision=dict(width=40, layers=2, head_width=8, patch_size=7, image_size=42, qkv_bias=False,
                    subln=False, intp_freq=False, pt_hw_seq_len=6),
        top=dict(matryoshka_dimensions=[10, 20, 40]),
    ),
}  # fmt: skip


def reference_text(sd, config, texts, prefix=""):
    tok = Tokenizer.from_file(str(V2_TINY / "tokenizer.json"))
    tok.enable_truncation(512)
    pad = config["text_config"]["hf_model_config_kwargs"]["pad_token_id"]
    tok.enable_padding(pad_id=pad)
    ids = torch.tensor([e.ids for e in tok.encode_batch([prefix + t for t in texts])])
    with torch.no_grad():
        return F.normalize(ref.text_forward(sd, config, ids), dim=-1).numpy()


def reference_images(sd, config, paths, preprocessor):
    size = config["vision_config"]["image_size"]
    pixels = torch.stack(
        [ref.preprocess(Image.open(p), size, preprocessor["mean"], preprocessor["std"]) for p in paths]
    )
    with torch.no_grad():
        return F.normalize(ref.vision_forward(sd, config, pixels), dim=-1).numpy()


def test_reference_impl_matches_goldens(manifest, golden, image_paths):
    """The oracle itself reproduces the reference's outputs on the public fixture."""
    config = json.loads((V2_TINY / "config.json").read_text())
    sd = load_file(str(V2_TINY / "model.safetensors"))
    np.testing.assert_allclose(reference_text(sd, config, manifest["texts"]), golden["text_emb_none"], **EMB)
    query = reference_text(sd, config, manifest["texts"], manifest["query_prompt"])
    np.testing.assert_allclose(query, golden["text_emb_query"], **EMB)
    preprocessor = json.loads((V2_TINY / "preprocessor_config.json").read_text())
    np.testing.assert_allclose(reference_images(sd, config, image_paths, preprocessor), golden["image_emb"], **EMB)


@pytest.fixture(scope="module", params=VARIANTS, ids=str)
def variant(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp(request.param)
    config, sd = write_checkpoint(folder, V2_TINY, **VARIANTS[request.param])
    engine = JinaCLIPEngine.from_pretrained(folder, device="cpu", dtype="float32", show_progress=False)
    return engine, config, sd


def test_text_matches_reference(variant, manifest):
    engine, config, sd = variant
    texts = manifest["texts"]
    np.testing.assert_allclose(engine.encode_text(texts), reference_text(sd, config, texts), **EMB)
    for task, prompt in config["text_config"]["hf_model_config_kwargs"]["task_instructions"].items():
        ours = engine.encode_text(texts, task=task, batch_size=5)
        np.testing.assert_allclose(ours, reference_text(sd, config, texts, prompt), **EMB)


def test_images_match_reference(variant, image_paths):
    engine, config, sd = variant
    preprocessor = json.loads((V2_TINY / "preprocessor_config.json").read_text())
    expected = reference_images(sd, config, image_paths, preprocessor)
    np.testing.assert_allclose(engine.encode_image(image_paths, batch_size=3), expected, **EMB)


def test_sizes_come_from_the_config(variant):
    engine, config, _ = variant
    assert engine.embedding_dim == config["text_config"]["hf_model_config_kwargs"]["hidden_size"]
    assert list(engine.matryoshka_dims) == config["matryoshka_dimensions"]
    assert engine.preprocessor.size == config["vision_config"]["image_size"]
    d = engine.matryoshka_dims[0]
    assert engine.encode_image([np.zeros((9, 9, 3), np.uint8) + 100], truncate_dim=d).shape == (1, d)
