"""jina-clip-v1 parity with the reference implementation's golden outputs (fp32, CPU).

Tolerances are the v1 fixture README's, the same as for v2: token ids exact; pixel values atol
1e-5 (PIL bicubic); embeddings atol 1e-5, rtol 1e-4 (the reference is bit-reproducible and batch
size 1 vs 32 differs by 1.6e-7). Logits are ``exp(logit_scale) ~ 22`` times cosines, so their
absolute tolerance is scaled to 5e-5. The README's sensitivity table puts every structural
mistake in the JinaBERT tower at >= 1e-2 and tanh-GELU at 1.1e-4 on normalized embeddings, so
1e-5 tells them apart.

Every jina-clip-v1 fixture folder with goldens under tests/fixtures runs these checks, loaded
through ``JinaCLIPEngine.from_pretrained(folder)``.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from conftest import golden_v1_folders, load_engine
from jinaclip_integrations.engine.engine import BATCH_OVERHEAD_TOKENS
from jinaclip_integrations.engine.inputs import load_image
from jinaclip_integrations.engine.jinabert import JinaBertTower, alibi_slopes

EMB = dict(atol=1e-5, rtol=1e-4)


@pytest.fixture(scope="module", params=golden_v1_folders(), ids=lambda p: p.name)
def case(request):
    folder = request.param
    manifest = json.loads((folder / "manifest.json").read_text())
    with np.load(folder / "golden.npz") as npz:
        golden = dict(npz)
    return load_engine(folder), manifest, golden, [folder / name for name in manifest["images"]]


def test_fixture_is_found():
    assert [p.name for p in golden_v1_folders()][:1] == ["jina-clip-v1-tiny"]


def test_text_tower_is_jinabert(case):
    engine, manifest, _, _ = case
    assert isinstance(engine.model.text, JinaBertTower)
    heads = engine.config.text.num_attention_heads
    assert alibi_slopes(heads) == manifest["alibi_slopes"]
    assert engine.model.text.alibi_slopes.tolist() == manifest["alibi_slopes"]


def test_token_ids(case):
    engine, manifest, golden, _ = case
    ids = engine.tokenizer.encode(manifest["texts"], max_length=512)
    assert ids == manifest["unpadded_input_ids"]
    assert engine.tokenizer.pad_token_id == manifest["special_token_ids"]["[PAD]"] == 0
    padded = engine.tokenizer.pad(ids).numpy()
    np.testing.assert_array_equal(padded, golden["input_ids_none"][:, : padded.shape[1]])
    np.testing.assert_array_equal(padded != 0, golden["attention_mask_none"][:, : padded.shape[1]])
    assert padded.shape[1] == golden["input_ids_none"].shape[1] == 512  # the long text is cut at 512


def test_pixel_values(case):
    engine, _, golden, paths = case
    pixels = np.stack([engine.preprocessor(load_image(p, i)).numpy() for i, p in enumerate(paths)])
    np.testing.assert_allclose(pixels, golden["pixel_values"], atol=1e-5, rtol=0)


def test_text_embeddings(case):
    engine, manifest, golden, _ = case
    texts = manifest["texts"]
    np.testing.assert_allclose(engine.encode_text(texts), golden["text_emb_none"], **EMB)
    np.testing.assert_allclose(engine.encode_text(texts, normalize=False), golden["text_raw_none"], **EMB)
    np.testing.assert_allclose(engine.encode_text(texts, batch_size=1), golden["text_emb_none_bs1"], **EMB)


def test_image_embeddings(case):
    engine, _, golden, paths = case
    np.testing.assert_allclose(engine.encode_image(paths), golden["image_emb_from_paths"], **EMB)
    pil = [Image.open(p) for p in paths]
    np.testing.assert_allclose(engine.encode_image(pil), golden["image_emb"], **EMB)
    raw = engine.encode_image([str(p) for p in paths], normalize=False)
    np.testing.assert_allclose(raw, golden["image_raw"], **EMB)


def test_logits_per_text(case):
    engine, manifest, golden, paths = case
    np.testing.assert_allclose(engine.logit_scale, golden["logit_scale"].item(), rtol=0, atol=0)
    text = engine.encode_text(manifest["texts"][:8])
    logits = np.exp(engine.logit_scale) * text @ engine.encode_image(paths).T
    np.testing.assert_allclose(logits, golden["logits_per_text"], atol=5e-5, rtol=1e-5)


def test_tasks_and_dims_follow_the_checkpoint(case):
    """v1 has no task instructions and no Matryoshka dimensions (the errors for asking anyway are
    in test_engine_api)."""
    engine, manifest, _, paths = case
    config = json.loads((paths[0].parent / "config.json").read_text())
    assert [None, *engine.tasks] == manifest["tasks_supported"] and manifest["truncate_dim"] is None
    assert engine.matryoshka_dims == () and "matryoshka_dimensions" not in config
    assert engine.embedding_dim == config["projection_dim"] and engine.max_length == 512


def test_alibi_bias_is_built_once_per_forward(case, monkeypatch):
    """One bias tensor per forward pass, the very same object handed to every layer."""
    engine, manifest, golden, _ = case
    tower = engine.model.text
    built, seen = [], []
    build = tower.attention_bias

    def counting(*args, **kwargs):
        built.append(build(*args, **kwargs))
        return built[-1]

    monkeypatch.setattr(tower, "attention_bias", counting)
    monkeypatch.setitem(BATCH_OVERHEAD_TOKENS, engine.device.type, 10**9)  # the 5 texts in one batch
    hooks = [layer.register_forward_pre_hook(lambda _, args: seen.append(args[1])) for layer in tower.layers]
    try:
        out = engine.encode_text(manifest["texts"][:5], batch_size=5)
    finally:
        for hook in hooks:
            hook.remove()
    np.testing.assert_allclose(out, golden["text_emb_none"][:5], **EMB)
    assert len(built) == 1 and len(seen) == len(tower.layers) >= 2
    assert all(bias is built[0] for bias in seen)
    longest = max(map(len, manifest["unpadded_input_ids"][:5]))
    assert built[0].shape == (5, engine.config.text.num_attention_heads, longest, longest)
