"""Parity with the reference implementation's golden outputs (fp32, CPU).

Tolerances are the fixture README's: token ids exact; pixel values atol 1e-5 (PIL bicubic);
embeddings atol 1e-5, rtol 1e-4 (the reference itself is bit-reproducible and batch size 1 vs
32 differs by < 1e-7, so 1e-5 leaves room only for float summation order). Logits are
``exp(logit_scale) ~ 22`` times cosines, so their absolute tolerance is scaled to 5e-5.

Every jina-clip-v2 fixture folder with goldens under tests/fixtures runs these checks, loaded
through ``JinaCLIPEngine.from_pretrained(folder)``.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from conftest import golden_v2_folders, load_engine
from jinaclip_integrations.engine.inputs import load_image

EMB = dict(atol=1e-5, rtol=1e-4)
TASKS = {"none": None, "query": "retrieval.query"}


@pytest.fixture(scope="module", params=golden_v2_folders(), ids=lambda p: p.name)
def case(request):
    folder = request.param
    manifest = json.loads((folder / "manifest.json").read_text())
    with np.load(folder / "golden.npz") as npz:
        golden = dict(npz)
    return load_engine(folder), manifest, golden, [folder / name for name in manifest["images"]]


@pytest.mark.parametrize("key", TASKS)
def test_token_ids(case, key):
    engine, manifest, golden, _ = case
    prefix = manifest["query_prompt"] if key == "query" else ""
    ids = engine.tokenizer.encode([prefix + t for t in manifest["texts"]], max_length=512)
    mask = golden[f"attention_mask_{key}"]
    for i, row in enumerate(ids):
        assert row == golden[f"input_ids_{key}"][i, : mask[i].sum()].tolist(), f"text {i}"
    if key == "none":
        assert ids == manifest["unpadded_input_ids"]
    padded = engine.tokenizer.pad(ids).numpy()
    np.testing.assert_array_equal(padded, golden[f"input_ids_{key}"][:, : padded.shape[1]])
    np.testing.assert_array_equal(padded != engine.tokenizer.pad_token_id, mask[:, : padded.shape[1]])


def test_pixel_values(case):
    engine, _, golden, paths = case
    pixels = np.stack([engine.preprocessor(load_image(p, i)).numpy() for i, p in enumerate(paths)])
    np.testing.assert_allclose(pixels, golden["pixel_values"], atol=1e-5, rtol=0)


@pytest.mark.parametrize("key", TASKS)
def test_text_embeddings(case, key):
    engine, manifest, golden, _ = case
    texts, task = manifest["texts"], TASKS[key]
    np.testing.assert_allclose(engine.encode_text(texts, task=task), golden[f"text_emb_{key}"], **EMB)
    raw = engine.encode_text(texts, task=task, normalize=False)
    np.testing.assert_allclose(raw, golden[f"text_raw_{key}"], **EMB)
    np.testing.assert_allclose(engine.encode_text(texts, task=task, batch_size=1), golden[f"text_emb_{key}_bs1"], **EMB)
    d = manifest["truncate_dim"]
    trunc = engine.encode_text(texts, task=task, truncate_dim=d)
    np.testing.assert_allclose(trunc, golden[f"text_emb_{key}_trunc{d}"], **EMB)


def test_image_embeddings(case):
    engine, manifest, golden, paths = case
    np.testing.assert_allclose(engine.encode_image(paths), golden["image_emb_from_paths"], **EMB)
    pil = [Image.open(p) for p in paths]
    np.testing.assert_allclose(engine.encode_image(pil), golden["image_emb"], **EMB)
    np.testing.assert_allclose(
        engine.encode_image([str(p) for p in paths], normalize=False), golden["image_raw"], **EMB
    )
    d = manifest["truncate_dim"]
    np.testing.assert_allclose(engine.encode_image(paths, truncate_dim=d), golden[f"image_emb_trunc{d}"], **EMB)


def test_logits_per_text(case):
    engine, manifest, golden, paths = case
    np.testing.assert_allclose(engine.logit_scale, golden["logit_scale"].item(), rtol=0, atol=0)
    text = engine.encode_text(manifest["texts"][:8])
    logits = np.exp(engine.logit_scale) * text @ engine.encode_image(paths).T
    np.testing.assert_allclose(logits, golden["logits_per_text"], atol=5e-5, rtol=1e-5)


def test_tasks_and_dims_follow_the_checkpoint(case):
    engine, manifest, _, paths = case
    config = json.loads((paths[0].parent / "config.json").read_text())
    assert [None, *engine.tasks] == manifest["tasks_supported"]
    assert list(engine.matryoshka_dims) == config["matryoshka_dimensions"]
    assert engine.embedding_dim == config["projection_dim"]
    for task in manifest.get("task_errors", {"retrieval.passage": None}):
        with pytest.raises(ValueError, match="unknown task") as info:
            engine.encode_text(["x"], task=task)
        assert repr(task) in str(info.value)
        assert all(valid in str(info.value) for valid in engine.tasks)  # lists the valid ones
