"""Number formats: the default dtype follows the CPU, bf16 keeps float32 norms, int8 weights stay
close to float32, and the model is built on the meta device and loaded straight into its dtype."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from conftest import V1_TINY, V2_TINY, load_engine
from jinaclip_integrations.engine import precision
from jinaclip_integrations.engine.jinabert import alibi_slopes
from jinaclip_integrations.engine.precision import Float32LayerNorm, cpu_has_native_bf16, float_dtype
from jinaclip_integrations.engine.vision import rope_table
from jinaclip_integrations.engine.weights import build_model, load_config

CPU = torch.device("cpu")


def goldens(folder: Path) -> tuple[list[str], list[Path], dict[str, np.ndarray]]:
    manifest = json.loads((folder / "manifest.json").read_text())
    with np.load(folder / "golden.npz") as npz:
        return manifest["texts"], [folder / name for name in manifest["images"]], dict(npz)


def min_cosines(engine, folder: Path) -> tuple[float, float]:
    """Minimum cosine to the float32 goldens over the texts and over the images."""
    texts, images, golden = goldens(folder)
    text = (engine.encode_text(texts) * golden["text_emb_none"]).sum(1).min()
    image = (engine.encode_image(images) * golden["image_emb"]).sum(1).min()
    return float(text), float(image)


def test_native_bf16_is_read_from_the_cpu_flags(tmp_path, monkeypatch):
    cases = {
        "zen4": ("fpu avx2 avx512f avx512_vnni avx512_bf16", True),
        "sapphire": ("fpu avx512f amx_bf16 amx_tile amx_int8", True),
        "avx512_only": ("fpu avx2 avx512f avx512_vnni avx512bw", False),
        "no_flags_line": ("", False),
    }
    for name, (flags, expected) in cases.items():
        path = tmp_path / name
        flags_line = "flags\t\t: " + flags if flags else ""
        path.write_text(f"processor\t: 0\nmodel name\t: x\n{flags_line}\n")
        assert cpu_has_native_bf16(path) is expected, name
    assert cpu_has_native_bf16(tmp_path / "missing") is False
    monkeypatch.setattr(sys, "platform", "darwin")  # no /proc/cpuinfo to read
    assert cpu_has_native_bf16(tmp_path / "zen4") is False


def test_default_dtype_follows_the_cpu(monkeypatch):
    for native, expected in ((True, torch.bfloat16), (False, torch.float32)):
        monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda native=native: native)
        assert float_dtype(CPU) == expected
        assert float_dtype(torch.device("cuda", 0)) == torch.bfloat16


@pytest.mark.parametrize("folder", [V2_TINY, V1_TINY], ids=["v2", "v1"])
def test_default_dtype_stays_close_to_the_goldens(folder):
    """The default dtype of this machine's CPU (bf16 where it is native): cosine >= 0.9995 to the
    float32 goldens. Measured in bf16: texts 0.99998 / images 0.99995 (v2), 0.99995 / 0.99994 (v1)."""
    engine = load_engine(folder, None)
    assert engine.dtype == float_dtype(CPU)
    text, image = min_cosines(engine, folder)
    assert text >= 0.9995 and image >= 0.9995


def test_bf16_runs_its_norms_and_logit_scale_in_float32():
    """Every LayerNorm (ours and transformers') is a float32 one under bf16; float32 models keep
    the plain LayerNorm, the reference's path exactly."""
    for dtype, norm_type in (("bfloat16", Float32LayerNorm), ("float32", nn.LayerNorm)):
        model = load_engine(V2_TINY, dtype).model
        norms = [m for m in model.modules() if isinstance(m, nn.LayerNorm)]
        assert len(norms) > 10 and {type(m) for m in norms} == {norm_type}
        assert {p.dtype for m in norms for p in m.parameters()} == {torch.float32}
        assert model.logit_scale.dtype == torch.float32
        assert model.vision.blocks[0].attn.qkv.weight.dtype == getattr(torch, dtype)
    assert Float32LayerNorm(64)(torch.randn(3, 5, 64, dtype=torch.bfloat16)).dtype == torch.bfloat16


@pytest.mark.parametrize("folder", [V2_TINY, V1_TINY], ids=["v2", "v1"])
def test_int8_weights_stay_close_to_float32(folder):
    """int8 Linear weights (opt-in): cosine >= 0.999 to the float32 goldens (measured: texts
    0.99998 / images 0.99977 on v2, 0.99956 / 0.99971 on v1), and a text's embedding does not
    depend on the batch it is in beyond bf16 rounding (measured max |diff| 4.4e-4 v2, 0 v1)."""
    pytest.importorskip("torchao")
    engine = load_engine(folder, "int8")
    assert engine.dtype == torch.int8 and engine.model.compute_dtype == float_dtype(CPU)
    linears = [m for m in engine.model.modules() if isinstance(m, nn.Linear)]
    assert linears and all(type(m.weight).__name__ == "Int8Tensor" for m in linears)
    text, image = min_cosines(engine, folder)
    assert text >= 0.999 and image >= 0.999
    texts = goldens(folder)[0][:6]
    alone = np.concatenate([engine.encode_text([t]) for t in texts])
    np.testing.assert_allclose(engine.encode_text(texts), alone, atol=2e-3, rtol=0)


def test_int8_without_torchao_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "torchao.quantization", None)  # import fails as if not installed
    with pytest.raises(ImportError, match=r"jinaclip-integrations\[int8\]"):
        build_model(load_config(V1_TINY), CPU, torch.int8, random_init=True)


def test_model_is_built_on_meta_and_loaded_into_its_dtype():
    """Built on the meta device (no memory, nothing initialized); loaded, every tensor is real,
    the weights in the asked dtype and the buffers float32, equal to the config's tables."""
    cfg = load_config(V1_TINY)
    empty = build_model(cfg, CPU, torch.bfloat16)
    assert {p.device.type for p in empty.parameters()} == {"meta"}
    for folder in (V1_TINY, V2_TINY):
        model = load_engine(folder, "bfloat16").model
        assert {t.device.type for t in [*model.parameters(), *model.buffers()]} == {"cpu"}
        assert torch.equal(model.vision.rope_cos, rope_table(model.cfg.vision)[0])
    assert model.text.transformer.rotary_emb.inv_freq.dtype == torch.float32
    assert torch.equal(model.text.transformer.embeddings.position_ids[0, :5], torch.arange(5))
    v1 = load_engine(V1_TINY, "bfloat16").model
    assert v1.text.alibi_slopes.tolist() == alibi_slopes(cfg.text.num_attention_heads)


def test_random_init_materializes_every_tensor():
    model = build_model(load_config(V2_TINY), CPU, torch.bfloat16, random_init=True)
    assert {t.device.type for t in [*model.parameters(), *model.buffers()]} == {"cpu"}
    assert torch.equal(model.vision.norm.weight, torch.ones_like(model.vision.norm.weight))
    ids = torch.tensor([[0, 5, 6, 2]])
    assert model.text(ids, torch.ones_like(ids)).isfinite().all()
