"""The public engine API: shapes, order, options, validation, defaults, progress, threads."""

from __future__ import annotations

import concurrent.futures
import json

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from conftest import V1_TINY, V2_TINY, load_engine
from jinaclip_integrations import InputError, JinaCLIPEngine
from jinaclip_integrations.engine.engine import resolve_device, resolve_dtype
from jinaclip_integrations.engine.precision import cpu_has_native_bf16

EMB = dict(atol=1e-5, rtol=1e-4)


def test_properties(engine):
    assert engine.embedding_dim == 64
    assert engine.matryoshka_dims == (8, 16, 32, 64)
    assert engine.tasks == ("retrieval.query",)
    assert engine.device == torch.device("cpu") and engine.dtype == torch.float32
    assert "jina-clip-v2-tiny" in repr(engine)


def test_empty_inputs(engine):
    for out in (engine.encode_text([]), engine.encode_image([])):
        assert out.shape == (0, 64) and out.dtype == np.float32
    assert engine.encode_text([], truncate_dim=8).shape == (0, 8)
    assert engine.encode_image(iter([]), truncate_dim=16).shape == (0, 16)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_order_and_batching_never_change_results(engine, manifest, golden, data):
    """Any subset, in any order, with any batch size and token budget: the same rows."""
    n = len(manifest["texts"])
    order = data.draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=2 * n))
    batch_size = data.draw(st.integers(1, 8))
    budget = data.draw(st.sampled_from([64, 600, 16384]))
    task = data.draw(st.sampled_from([None, "retrieval.query"]))
    other = JinaCLIPEngine(engine.model, engine.tokenizer, max_batch_tokens=budget)
    out = other.encode_text([manifest["texts"][i] for i in order], task=task, batch_size=batch_size)
    key = "text_emb_query" if task else "text_emb_none"
    np.testing.assert_allclose(out, golden[key][order], **EMB)


def test_image_order_and_batch_size(engine, golden, image_paths):
    order = [3, 0, 7, 7, 1, 5, 2]
    for batch_size in (1, 3, 32):
        out = engine.encode_image([image_paths[i] for i in order], batch_size=batch_size)
        np.testing.assert_allclose(out, golden["image_emb"][order], **EMB)


def test_truncate_dim(engine, golden):
    with pytest.raises(ValueError, match=r"truncate_dim 12 is not supported; choose one of \[8, 16, 32, 64\]"):
        engine.encode_text(["a"], truncate_dim=12)
    with pytest.raises(ValueError, match="truncate_dim"):
        engine.encode_image([V2_TINY / "rgb_tiny_5x7.png"], truncate_dim=128)
    raw = engine.encode_text(["a photo"], normalize=False)
    for d in engine.matryoshka_dims:
        out = engine.encode_text(["a photo"], truncate_dim=d)
        np.testing.assert_allclose(out, raw[:, :d] / np.linalg.norm(raw[:, :d]), atol=1e-6)
        assert engine.encode_text(["a photo"], truncate_dim=d, normalize=False).shape == (1, d)


def test_unknown_task_lists_the_valid_ones(engine):
    with pytest.raises(ValueError, match=r"unknown task 'retrieval\.passage'.*\['retrieval\.query'\]"):
        engine.encode_text(["a"], task="retrieval.passage")


@pytest.mark.parametrize(
    "bad, index, reason",
    [
        ([1], 0, "expected a string, got int"),
        (["a", "b", None], 2, "expected a string, got NoneType"),
        (["a", b"bytes"], 1, "expected a string, got bytes"),
        (["a", ["nested"]], 1, "expected a string, got list"),
        (
            ["ok", "lone surrogate \ud800 from json.loads"],
            1,
            "not valid Unicode text: surrogates not allowed at position 15",
        ),
    ],
)
def test_bad_text_is_an_input_error(engine, bad, index, reason):
    with pytest.raises(InputError, match=f"invalid text at index {index}: ") as info:
        engine.encode_text(bad)
    assert (info.value.index, info.value.reason) == (index, reason)


def test_integer_options_accept_numpy_ints_and_refuse_floats(engine, golden, manifest):
    out = engine.encode_text(manifest["texts"][:2], truncate_dim=np.int64(16), batch_size=np.int32(1))
    np.testing.assert_allclose(out, golden["text_emb_none_trunc16"][:2], **EMB)
    for bad in (16.0, "16", True):
        with pytest.raises(ValueError, match="truncate_dim must be an integer"):
            engine.encode_text(["a"], truncate_dim=bad)


def test_single_item_instead_of_a_list(engine):
    with pytest.raises(TypeError, match="wrap a single text in a list"):
        engine.encode_text("a photo of a cat")
    with pytest.raises(TypeError, match="wrap a single image in a list"):
        engine.encode_image(str(V2_TINY / "rgb_tiny_5x7.png"))
    with pytest.raises(TypeError):
        engine.encode_text(42)
    with pytest.raises(TypeError, match="wrap a single image in a list"):
        engine.encode_image(np.zeros((48, 64, 3), np.uint8))  # would otherwise embed 48 rows
    batch = np.stack([np.full((8, 8, 3), v, np.uint8) for v in (0, 128)])
    assert engine.encode_image(batch).shape == (2, 64)  # an N x H x W x C batch is a list of images


@pytest.mark.parametrize("batch_size", [0, -1, 1.5, True, "8"])
def test_bad_batch_size(engine, batch_size):
    with pytest.raises(ValueError, match="batch_size must be a"):
        engine.encode_text(["a"], batch_size=batch_size)
    with pytest.raises(ValueError, match="batch_size must be a"):
        engine.encode_image([], batch_size=batch_size)


def test_engine_options_are_validated(engine):
    for kwargs, message in [
        (dict(max_length=1), "max_length must be between 2 and 512"),
        (dict(max_length=10_000), "max_length must be between"),
        (dict(batch_size=0), "batch_size"),
        (dict(max_batch_tokens=-5), "max_batch_tokens"),
        (dict(max_image_pixels=0), "max_image_pixels"),
    ]:
        with pytest.raises(ValueError, match=message):
            JinaCLIPEngine(engine.model, engine.tokenizer, **kwargs)


def test_max_length_truncates(engine, manifest, golden):
    short = JinaCLIPEngine(engine.model, engine.tokenizer, max_length=8)
    ids = short.tokenizer.encode(manifest["texts"], 8)
    assert max(map(len, ids)) == 8 and ids[7][-1] == 2  # still ends with </s>
    out = short.encode_text(manifest["texts"])
    unchanged = [i for i, x in enumerate(manifest["unpadded_input_ids"]) if len(x) <= 8]
    np.testing.assert_allclose(out[unchanged], golden["text_emb_none"][unchanged], **EMB)
    assert not np.allclose(out[7], golden["text_emb_none"][7], atol=1e-3)


def test_resolve_device_and_dtype():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device(None).type == expected
    assert resolve_device("cpu") == torch.device("cpu")
    native = torch.bfloat16 if cpu_has_native_bf16() else torch.float32
    assert resolve_dtype(None, torch.device("cpu")) == native
    assert resolve_dtype(None, torch.device("cuda")) == torch.bfloat16
    assert resolve_dtype("bfloat16", torch.device("cpu")) == torch.bfloat16
    assert resolve_dtype("torch.float16", torch.device("cpu")) == torch.float16
    assert resolve_dtype(torch.float32, torch.device("cpu")) == torch.float32
    assert resolve_dtype("int8", torch.device("cpu")) == torch.int8
    with pytest.raises(ValueError, match=r"unsupported dtype 'float64'; expected one of \['bfloat16', 'float16', 'float32', 'int8'\]"):  # fmt: skip
        resolve_dtype("float64", torch.device("cpu"))
    with pytest.raises(ValueError, match="unsupported dtype"):
        resolve_dtype(torch.int16, torch.device("cpu"))
    with pytest.raises(ValueError, match="invalid device"):
        resolve_device("gpu-please")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")


def test_cuda_device_gets_its_index(monkeypatch):
    """ "cuda" and "cuda:0" are one device, so shared engines do not load a model twice."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    assert resolve_device("cuda") == resolve_device("cuda:0") == resolve_device(None) == torch.device("cuda", 0)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)


def test_default_device_and_dtype_load():
    engine = JinaCLIPEngine.from_pretrained(V2_TINY, show_progress=False)
    assert engine.device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert engine.dtype == (torch.bfloat16 if torch.cuda.is_available() or cpu_has_native_bf16() else torch.float32)


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_low_precision_on_cpu_stays_close(dtype, manifest, golden, image_paths):
    """Same tolerance as the GPU parity check: cosine >= 0.999 to the fp32 goldens."""
    engine = load_engine(V2_TINY, dtype)
    assert engine.dtype == getattr(torch, dtype)
    text = engine.encode_text(manifest["texts"], task="retrieval.query")
    image = engine.encode_image(image_paths)
    assert (text * golden["text_emb_query"]).sum(1).min() >= 0.999
    assert (image * golden["image_emb"]).sum(1).min() >= 0.999
    assert text.dtype == image.dtype == np.float32


def test_concurrent_loads_build_sound_models(manifest, golden):
    """Loads in parallel threads (fp32 and bf16) each get their own dtype; nothing global leaks."""
    init_normal = torch.nn.init.normal_
    default = torch.get_default_dtype()

    def load(dtype):
        engine = JinaCLIPEngine.from_pretrained(V2_TINY, device="cpu", dtype=dtype, show_progress=False)
        return dtype, engine

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        results = list(pool.map(load, ["float32", "bfloat16"] * 4))
    assert torch.nn.init.normal_ is init_normal and torch.get_default_dtype() == default
    for dtype, engine in results:
        modules = list(engine.model.modules())
        weights = {p.dtype for m in modules if isinstance(m, (nn.Linear, nn.Embedding, nn.Conv2d)) for p in m.parameters()}  # fmt: skip
        assert weights == {getattr(torch, dtype)}
        # LayerNorms and the logit scale stay float32 in a bf16 model
        assert {p.dtype for m in modules if isinstance(m, nn.LayerNorm) for p in m.parameters()} == {torch.float32}
        assert engine.model.logit_scale.dtype == torch.float32
        # RoPE frequencies and tables stay float32 in a bf16 model
        assert engine.model.text.transformer.rotary_emb.inv_freq.dtype == torch.float32
        assert engine.model.vision.rope_cos.dtype == torch.float32
        cosine = (engine.encode_text(manifest["texts"][:4]) * golden["text_emb_none"][:4]).sum(1)
        assert cosine.min() >= 0.999


def test_progress_bar_only_when_asked_or_on_a_terminal(engine, capsys):
    engine.encode_text(["a", "b"], show_progress=True)
    assert "Embedding texts" in capsys.readouterr().err
    engine.encode_image([V2_TINY / "rgb_tiny_5x7.png"], show_progress=True)
    assert "Embedding images" in capsys.readouterr().err
    engine.encode_text(["a", "b"], show_progress=False)
    engine.encode_text(["a", "b"])  # stderr is not a terminal under pytest: quiet
    assert capsys.readouterr().err == ""
    JinaCLIPEngine.from_pretrained(V2_TINY, device="cpu", show_progress=True)
    assert "Loading weights" in capsys.readouterr().err


def test_concurrent_calls_from_threads(engine, manifest, golden, image_paths):
    def work(i):
        if i % 2:
            return engine.encode_image(image_paths, batch_size=3), golden["image_emb"]
        return engine.encode_text(manifest["texts"], batch_size=4), golden["text_emb_none"]

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        for out, expected in pool.map(work, range(8)):
            np.testing.assert_allclose(out, expected, **EMB)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_gpu_parity(dtype, manifest, golden, image_paths):
    """On the GPU, bf16/fp16 embeddings agree with the fp32 CPU goldens: cosine >= 0.999."""
    engine = JinaCLIPEngine.from_pretrained(V2_TINY, device="cuda", dtype=dtype, show_progress=False)
    for task, key in ((None, "none"), ("retrieval.query", "query")):
        text = engine.encode_text(manifest["texts"], task=task)
        assert np.isfinite(text).all() and (text * golden[f"text_emb_{key}"]).sum(1).min() >= 0.999
    image = engine.encode_image(image_paths)
    assert np.isfinite(image).all() and (image * golden["image_emb"]).sum(1).min() >= 0.999


# -- jina-clip-v1: no task instructions, no Matryoshka dimensions, longer texts ---------------


@pytest.fixture(scope="module")
def v1():
    return load_engine(V1_TINY)


def test_v1_refuses_task_and_truncate_dim_naming_the_model(v1):
    """The reference only warns and goes on; the spec asks for an error that says why."""
    assert v1.tasks == () and v1.matryoshka_dims == () and v1.embedding_dim == 64
    with pytest.raises(ValueError, match=r"jina-clip-v1-tiny was not trained with task instructions; task must be None"):  # fmt: skip
        v1.encode_text(["a"], task="retrieval.query")
    message = r"jina-clip-v1-tiny was not trained for Matryoshka truncation; truncate_dim must be None"
    for d in (16, 64):
        with pytest.raises(ValueError, match=message):
            v1.encode_text(["a"], truncate_dim=d)
        with pytest.raises(ValueError, match=message):
            v1.encode_image([V1_TINY / "rgb_tiny_5x7.png"], truncate_dim=d)
    assert v1.encode_text([]).shape == v1.encode_image([]).shape == (0, 64)


def test_v1_max_length_default_and_limit(v1):
    assert v1.max_length == 512
    assert JinaCLIPEngine(v1.model, v1.tokenizer, max_length=8192).max_length == 8192
    with pytest.raises(ValueError, match="max_length must be between 2 and 8192"):
        JinaCLIPEngine(v1.model, v1.tokenizer, max_length=8193)


def test_v1_long_text_beyond_512_tokens(v1):
    """ALiBi has no position table: a 2000-token text runs, and batching still changes nothing."""
    long = JinaCLIPEngine(v1.model, v1.tokenizer, max_length=2048)
    texts = ["a photo of a cat " * 400, "a dog", "the beach at sunset " * 100]
    ids = long.tokenizer.encode(texts, 2048)
    assert len(ids[0]) == 2048 and ids[0][-1] == 102  # truncated, still ends with [SEP]
    np.testing.assert_allclose(long.encode_text(texts, batch_size=1), long.encode_text(texts), **EMB)


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_v1_low_precision_on_cpu_stays_close(dtype):
    """The ALiBi + padding mask is cast to the query dtype; cosine >= 0.999 to the fp32 goldens."""
    engine = load_engine(V1_TINY, dtype)
    manifest = json.loads((V1_TINY / "manifest.json").read_text())
    with np.load(V1_TINY / "golden.npz") as golden:
        text_golden, image_golden = golden["text_emb_none"], golden["image_emb"]
    assert engine.model.text.alibi_slopes.dtype == torch.float32
    assert (engine.encode_text(manifest["texts"]) * text_golden).sum(1).min() >= 0.999
    images = engine.encode_image([V1_TINY / name for name in manifest["images"]])
    assert (images * image_golden).sum(1).min() >= 0.999


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_v1_gpu_parity(dtype):
    """On the GPU, v1's bf16/fp16 embeddings agree with the fp32 CPU goldens: cosine >= 0.999."""
    engine = JinaCLIPEngine.from_pretrained(V1_TINY, device="cuda", dtype=dtype, show_progress=False)
    manifest = json.loads((V1_TINY / "manifest.json").read_text())
    with np.load(V1_TINY / "golden.npz") as golden:
        text_golden, image_golden = golden["text_emb_none"], golden["image_emb"]
    text = engine.encode_text(manifest["texts"])
    assert np.isfinite(text).all() and (text * text_golden).sum(1).min() >= 0.999
    image = engine.encode_image([V1_TINY / name for name in manifest["images"]])
    assert np.isfinite(image).all() and (image * image_golden).sum(1).min() >= 0.999
