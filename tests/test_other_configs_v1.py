"""jina-clip-v1: nothing about sizes is hard-coded, head counts that are not powers of two included.

The oracle is ``reference_impl.jinabert_text_forward`` (a naive JinaBERT forward on the published
tensors: ALiBi slopes from the ALiBi paper's recursive rule, explicit softmax, erf GELU; it shares
no code with the package), first checked against the v1 goldens. Then random checkpoints in the
published v1 layout, with other widths, depths and head counts (6 and 3: the slopes of a
non-power-of-two head count interleave those of the next power of two, which a plain
``2**(-8(k+1)/n)`` gets wrong) and other vision grids, are loaded with ``from_pretrained(folder)``
and compared. Tolerance: atol 1e-5 (rtol 1e-4) on embeddings, as for the goldens.
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
from conftest import V1_TINY
from jinaclip_integrations import JinaCLIPEngine
from jinaclip_integrations.engine.jinabert import alibi_slopes

EMB = dict(atol=1e-5, rtol=1e-4)

VARIANTS = {
    # 6 heads (slopes [2^-2, 2^-4, 2^-6, 2^-8, 2^-1, 2^-3]), wider, deeper, a larger vocabulary
    # than the tokenizer uses; a 5x5 patch grid with RoPE at integer positions as v1 has it
    "6heads-deep-grid5": dict(
        text=dict(hidden_size=48, num_hidden_layers=3, num_attention_heads=6, intermediate_size=80, vocab_size=500),
        vision=dict(width=48, layers=3, head_width=12, patch_size=8, image_size=40, mlp_ratio=2.5, pt_hw_seq_len=5),
    ),
    # 3 heads, one layer, a single token type; a 6x6 grid, no q/v bias
    "3heads-shallow-grid6": dict(
        text=dict(hidden_size=36, num_hidden_layers=1, num_attention_heads=3, intermediate_size=50, type_vocab_size=1,
                  layer_norm_eps=1e-6),
        vision=dict(width=36, layers=1, head_width=12, patch_size=7, image_size=42, qkv_bias=False, pt_hw_seq_len=6),
    ),
}  # fmt: skip


@pytest.fixture(scope="module")
def manifest() -> dict:
    return json.loads((V1_TINY / "manifest.json").read_text())


@pytest.fixture(scope="module")
def image_paths(manifest) -> list:
    return [V1_TINY / name for name in manifest["images"]]


def reference_text(sd, config, texts):
    tok = Tokenizer.from_file(str(V1_TINY / "tokenizer.json"))
    tok.enable_truncation(512)
    tok.enable_padding(pad_id=config["text_config"]["hf_model_config_kwargs"]["pad_token_id"])
    ids = torch.tensor([e.ids for e in tok.encode_batch(texts)])
    with torch.no_grad():
        return ref.jinabert_text_forward(sd, config, ids).numpy()


def reference_images(sd, config, paths):
    preprocessor = json.loads((V1_TINY / "preprocessor_config.json").read_text())
    size = config["vision_config"]["image_size"]
    pixels = torch.stack(
        [ref.preprocess(Image.open(p), size, preprocessor["mean"], preprocessor["std"]) for p in paths]
    )
    with torch.no_grad():
        return F.normalize(ref.vision_forward(sd, config, pixels), dim=-1).numpy()


def normalized(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_jinabert_reference_matches_goldens(manifest, image_paths):
    """The oracle itself reproduces the reference's v1 outputs on the public fixture."""
    config = json.loads((V1_TINY / "config.json").read_text())
    sd = load_file(str(V1_TINY / "model.safetensors"))
    with np.load(V1_TINY / "golden.npz") as npz:
        golden = dict(npz)
    raw = reference_text(sd, config, manifest["texts"])
    np.testing.assert_allclose(raw, golden["text_raw_none"], **EMB)
    np.testing.assert_allclose(normalized(raw), golden["text_emb_none"], **EMB)
    np.testing.assert_allclose(reference_images(sd, config, image_paths), golden["image_emb"], **EMB)
    assert ref.alibi_slopes(config["text_config"]["hf_model_config_kwargs"]["num_attention_heads"]) == manifest["alibi_slopes"]  # fmt: skip


@pytest.mark.parametrize("heads", [1, 2, 3, 5, 6, 7, 8, 12, 16, 24])
def test_alibi_slopes_for_any_head_count(heads):
    np.testing.assert_allclose(alibi_slopes(heads), ref.alibi_slopes(heads), rtol=1e-12, atol=0)


def test_alibi_slopes_interleave_for_six_heads():
    assert alibi_slopes(6) == [2**-2, 2**-4, 2**-6, 2**-8, 2**-1, 2**-3]
    assert alibi_slopes(6) != [2 ** (-8 * (k + 1) / 6) for k in range(6)]


@pytest.fixture(scope="module", params=VARIANTS, ids=str)
def variant(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp(request.param)
    config, sd = write_checkpoint(folder, V1_TINY, **VARIANTS[request.param])
    engine = JinaCLIPEngine.from_pretrained(folder, device="cpu", dtype="float32", show_progress=False)
    return engine, config, sd


def test_text_matches_reference(variant, manifest):
    engine, config, sd = variant
    texts = manifest["texts"]
    raw = reference_text(sd, config, texts)
    np.testing.assert_allclose(engine.encode_text(texts, normalize=False), raw, **EMB)
    np.testing.assert_allclose(engine.encode_text(texts, batch_size=5), normalized(raw), **EMB)


def test_images_match_reference(variant, image_paths):
    engine, config, sd = variant
    expected = reference_images(sd, config, image_paths)
    np.testing.assert_allclose(engine.encode_image(image_paths, batch_size=3), expected, **EMB)


def test_sizes_come_from_the_config(variant):
    engine, config, _ = variant
    kw = config["text_config"]["hf_model_config_kwargs"]
    assert engine.embedding_dim == kw["hidden_size"] == config["projection_dim"]
    assert engine.config.text.num_attention_heads == kw["num_attention_heads"]
    assert len(engine.model.text.layers) == kw["num_hidden_layers"]
    np.testing.assert_allclose(engine.model.text.alibi_slopes.numpy(), ref.alibi_slopes(kw["num_attention_heads"]), rtol=1e-7)  # fmt: skip
    assert engine.preprocessor.size == config["vision_config"]["image_size"]
    assert engine.tasks == () and engine.matryoshka_dims == ()
