"""ONNX export: ``jinaclip export-onnx`` writes both towers and the checkpoint's files, and the
towers, run in ONNX Runtime, give the torch engine's features at batch sizes and lengths other
than the export's example (batch 2, length 16), and the engine's embeddings end to end.

One export for the module (about 20 s on the tiny checkpoint), through the command line.
"""

from __future__ import annotations

import contextlib
import io
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from conftest import V2_TINY, load_engine
from jinaclip_integrations import cli, settings
from jinaclip_integrations.engine import JinaCLIPEngine, truncate_normalize
from jinaclip_integrations.engine.onnx import CHECKPOINT_FILES, export_onnx

#: Most absolute difference between ONNX Runtime's and torch's fp32 features (the tiny model's
#: features are of order 1; measured: under 2e-6).
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[Path, str]:
    """The folder ``jinaclip export-onnx`` wrote for the tiny checkpoint, and what it printed."""
    out = tmp_path_factory.mktemp("onnx") / "tiny"
    with pytest.MonkeyPatch.context() as env:
        for var in (*(s.env for s in settings.SETTINGS.values()), "JINACLIP_CONFIG"):
            env.delenv(var, raising=False)
        env.setenv("XDG_CONFIG_HOME", str(out.parent / "config"))
        env.setenv("JINACLIP_MODEL", str(V2_TINY))
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            assert cli.main(["export-onnx", str(out), "-q"]) == 0
    return out, printed.getvalue()


def session(path: Path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def test_the_command_writes_both_towers_and_the_checkpoint_files(exported):
    out, printed = exported
    towers = ["text.onnx", "text.onnx.data", "vision.onnx", "vision.onnx.data"]
    assert sorted(p.name for p in out.iterdir()) == sorted([*towers, *CHECKPOINT_FILES])
    assert printed.startswith(f"exported {V2_TINY} to {out}: text.onnx, text.onnx.data, vision.onnx")
    for name in CHECKPOINT_FILES:
        assert (out / name).read_bytes() == (V2_TINY / name).read_bytes()
    # the folder is a checkpoint without weights: the engine reads its config and tokenizer from it
    spec = JinaCLIPEngine.from_pretrained(out, weights=False)
    assert spec.tokenize(["a photo"]).ids == load_engine(V2_TINY).tokenize(["a photo"]).ids


def test_the_axes_are_named_and_dynamic(exported):
    out, _ = exported
    text, vision = session(out / "text.onnx"), session(out / "vision.onnx")
    assert [(i.name, i.shape, i.type) for i in text.get_inputs()] == [
        ("input_ids", ["batch", "length"], "tensor(int64)"),
        ("attention_mask", ["batch", "length"], "tensor(int64)"),
    ]
    size = load_engine(V2_TINY).preprocessor.size
    assert [(i.name, i.shape, i.type) for i in vision.get_inputs()] == [("pixels", ["batch", 3, size, size], "tensor(float)")]  # fmt: skip
    for tower in (text, vision):
        assert [(o.name, o.shape) for o in tower.get_outputs()] == [("features", ["batch", 64])]


@pytest.mark.parametrize(("batch", "length"), [(1, 5), (3, 40)])
def test_text_tower_matches_torch(exported, batch, length):
    engine = load_engine(V2_TINY)
    generator = torch.Generator().manual_seed(batch * length)
    ids = torch.randint(3, engine.config.text.vocab_size, (batch, length), generator=generator)
    lengths = torch.tensor([length, *torch.randint(2, length, (batch - 1,), generator=generator).tolist()])
    mask = (torch.arange(length) < lengths[:, None]).long()  # rows after the first are padded
    ids = ids.masked_fill(mask == 0, engine.tokenizer.pad_token_id)
    with torch.inference_mode():
        expected = engine.model.text(ids, mask).numpy()
    (got,) = session(exported[0] / "text.onnx").run(None, {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})
    assert got.shape == expected.shape == (batch, engine.embedding_dim)
    np.testing.assert_allclose(got, expected, rtol=0, atol=TOLERANCE)


@pytest.mark.parametrize("batch", [1, 3])
def test_vision_tower_matches_torch(exported, batch):
    engine = load_engine(V2_TINY)
    size = engine.preprocessor.size
    pixels = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(batch))
    with torch.inference_mode():
        expected = engine.model.vision(pixels).numpy()
    (got,) = session(exported[0] / "vision.onnx").run(None, {"pixels": pixels.numpy()})
    assert got.shape == expected.shape == (batch, engine.embedding_dim)
    np.testing.assert_allclose(got, expected, rtol=0, atol=TOLERANCE)


def test_the_folder_gives_the_engines_embeddings(exported, image_paths):
    """Tokenized and preprocessed by the exported folder's files, run in ONNX Runtime, truncated
    and normalized: the engine's own vectors, for texts of several lengths and a task."""
    out, _ = exported
    engine, spec = load_engine(V2_TINY), JinaCLIPEngine.from_pretrained(out, weights=False)
    texts = ["a dog", "a red circle on a white background, drawn twice", "x" * 300]
    ids = spec.tokenizer.pad(spec.tokenize(texts, task="retrieval.query").ids)
    mask = (ids != spec.tokenizer.pad_token_id).long()
    (features,) = session(out / "text.onnx").run(None, {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})
    expected = engine.encode_text(texts, task="retrieval.query", truncate_dim=32)
    np.testing.assert_allclose(truncate_normalize(features, 32), expected, rtol=0, atol=TOLERANCE)

    pixels = torch.stack([spec.preprocessor.prepare(path, i, None) for i, path in enumerate(image_paths)])
    (features,) = session(out / "vision.onnx").run(None, {"pixels": pixels.numpy()})
    np.testing.assert_allclose(truncate_normalize(features), engine.encode_image(image_paths), rtol=0, atol=TOLERANCE)


def test_without_the_extra_the_command_says_what_to_install(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # importing it raises ImportError
    # a model that does not exist: the check comes before any loading
    assert cli.main(["export-onnx", str(tmp_path / "out"), "--model", str(tmp_path / "no-model")]) == 1
    err = capsys.readouterr().err
    assert 'jinaclip export-onnx needs onnxscript: pip install "jinaclip-integrations[onnx]"' in err
    assert not (tmp_path / "out").exists()


def test_only_float32_engines_are_exported(tmp_path):
    with pytest.raises(ValueError, match="float32"):
        export_onnx(load_engine(V2_TINY, "bfloat16"), tmp_path)
    assert not any(tmp_path.iterdir())
