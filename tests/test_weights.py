"""Strict weight loading (errors name the published key) and checkpoint resolution."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

import conftest
from conftest import V1_TINY, V2_TINY
from jinaclip_integrations import CheckpointError, JinaCLIPEngine

EMB = dict(atol=1e-5, rtol=1e-4)


def copy_fixture(tmp_path: Path, tensors: dict | None = None, config_edit=None) -> Path:
    return conftest.copy_fixture(tmp_path / "ckpt", tensors, config_edit)


def load(folder: Path) -> JinaCLIPEngine:
    return JinaCLIPEngine.from_pretrained(folder, device="cpu", dtype="float32", show_progress=False)


@pytest.fixture(scope="module")
def published() -> dict[str, torch.Tensor]:
    return load_file(str(V2_TINY / "model.safetensors"))


@pytest.mark.parametrize(
    "key",
    [
        "vision_model.blocks.1.attn.q_bias",
        "text_model.transformer.roberta.encoder.layers.0.mixer.Wqkv.parametrizations.weight.0.lora_B",
        "logit_scale",
    ],
)
def test_missing_key_is_named(tmp_path, published, key):
    tensors = {k: v for k, v in published.items() if k != key}
    with pytest.raises(CheckpointError, match="missing key") as info:
        load(copy_fixture(tmp_path, tensors))
    assert repr(key) in str(info.value)


def test_unexpected_key_is_named(tmp_path, published):
    key = "vision_model.blocks.0.attn.k_bias"
    with pytest.raises(CheckpointError, match="unexpected key") as info:
        load(copy_fixture(tmp_path, {**published, key: torch.zeros(64)}))
    assert key in str(info.value)


def test_checkpoint_deeper_than_its_config(tmp_path):
    def one_layer(config):
        config["text_config"]["hf_model_config_kwargs"]["num_hidden_layers"] = 1

    with pytest.raises(CheckpointError, match="unexpected key") as info:
        load(copy_fixture(tmp_path, config_edit=one_layer))
    assert "text_model.transformer.roberta.encoder.layers.1." in str(info.value)


def test_shape_mismatch_names_weight_and_shapes(tmp_path):
    def wider_ffn(config):
        config["text_config"]["hf_model_config_kwargs"]["intermediate_size"] = 96

    with pytest.raises(CheckpointError, match=r"mlp\.fc1\.weight.*\(128, 64\).*\(96, 64\)"):
        load(copy_fixture(tmp_path, config_edit=wider_ffn))


@pytest.mark.parametrize(
    "drop, add, expected",
    [
        ("text_model.transformer.encoder.layers.1.mlp.gated_layers.weight", None, "missing key"),
        (None, "text_model.transformer.encoder.layers.0.mlp.gated_layers.bias", "unexpected key"),
        (None, "text_model.transformer.embeddings.position_embeddings.weight", "unexpected key"),
    ],
)
def test_v1_checkpoint_is_loaded_strictly(tmp_path, drop, add, expected):
    """jina-clip-v1's JinaBERT keys are checked like v2's: a missing or extra tensor is named."""
    tensors = {k: v for k, v in load_file(str(V1_TINY / "model.safetensors")).items() if k != drop}
    if add is not None:
        tensors[add] = torch.zeros(8)
    folder = tmp_path / "v1"
    shutil.copytree(V1_TINY, folder)
    save_file(tensors, str(folder / "model.safetensors"))
    with pytest.raises(CheckpointError, match=expected) as info:
        load(folder)
    assert (drop or add) in str(info.value)


@pytest.mark.parametrize("name", ["model.safetensors", "tokenizer.json", "config.json"])
def test_missing_file(tmp_path, name):
    folder = copy_fixture(tmp_path)
    (folder / name).unlink()
    with pytest.raises(CheckpointError, match=name.replace(".", r"\.")):
        load(folder)


def test_corrupt_files(tmp_path):
    folder = copy_fixture(tmp_path)
    (folder / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load(folder)
    folder = copy_fixture(tmp_path / "b")
    (folder / "model.safetensors").write_bytes(b"\x00" * 16)
    with pytest.raises(CheckpointError, match="cannot read"):
        load(folder)


def test_sharded_checkpoint(tmp_path, published, golden, manifest):
    folder = copy_fixture(tmp_path)
    (folder / "model.safetensors").unlink()
    keys = sorted(published)
    shards = {"model-00001-of-00002.safetensors": keys[::2], "model-00002-of-00002.safetensors": keys[1::2]}
    for name, shard_keys in shards.items():
        save_file({k: published[k] for k in shard_keys}, str(folder / name))
    index = {"metadata": {}, "weight_map": {k: name for name, ks in shards.items() for k in ks}}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    np.testing.assert_allclose(load(folder).encode_text(manifest["texts"]), golden["text_emb_none"], **EMB)


def test_bf16_checkpoint_like_the_published_one(tmp_path, published, golden, manifest, image_paths):
    """The real checkpoint stores bf16 weights; loading it in fp32 merges LoRA in fp32."""
    engine = load(copy_fixture(tmp_path, {k: v.to(torch.bfloat16) for k, v in published.items()}))
    assert engine.dtype == torch.float32
    cos_text = (engine.encode_text(manifest["texts"]) * golden["text_emb_none"]).sum(1)
    cos_image = (engine.encode_image(image_paths) * golden["image_emb"]).sum(1)
    assert cos_text.min() > 0.999 and cos_image.min() > 0.999


def _fake_hub_cache(cache: Path, repo: str, revision: str = "abc123") -> None:
    root = cache / ("models--" + repo.replace("/", "--"))
    shutil.copytree(V2_TINY, root / "snapshots" / revision)
    (root / "refs").mkdir()
    (root / "refs" / "main").write_text(revision)


def test_hub_name_resolves_through_the_local_cache(tmp_path, monkeypatch, golden, manifest):
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)  # read at import, not from env
    _fake_hub_cache(tmp_path, "someone/jina-clip-v2-tiny")
    engine = JinaCLIPEngine.from_pretrained("someone/jina-clip-v2-tiny", cache_dir=tmp_path, device="cpu", dtype="float32", show_progress=False)  # fmt: skip
    np.testing.assert_allclose(engine.encode_text(manifest["texts"]), golden["text_emb_none"], **EMB)
    assert engine.name_or_path == "someone/jina-clip-v2-tiny"


def test_unknown_hub_name_offline(tmp_path, monkeypatch):
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    with pytest.raises(CheckpointError, match="could not be fetched"):
        JinaCLIPEngine.from_pretrained("nobody/no-such-model", cache_dir=tmp_path)


def test_missing_local_folder_is_a_checkpoint_error(monkeypatch):
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    with pytest.raises(CheckpointError, match="'./models/does-not-exist' is not a local folder"):
        JinaCLIPEngine.from_pretrained("./models/does-not-exist")


def test_a_file_is_not_a_checkpoint():
    with pytest.raises(CheckpointError, match="is a file"):
        JinaCLIPEngine.from_pretrained(V2_TINY / "config.json")


@pytest.mark.parametrize(
    ("entry", "why"),
    [
        ({"dtype": "F32", "shape": [4], "data_offsets": [0, 2**40]}, "offsets"),  # past the file: no 1 TiB allocation
        ({"dtype": "F32", "shape": [100], "data_offsets": [0, 16]}, "offsets"),  # shape larger than its bytes
        ({"dtype": "F8_E4M3", "shape": [16], "data_offsets": [0, 16]}, "dtype"),
    ],
)
def test_a_tensor_entry_that_does_not_fit_its_file_is_a_checkpoint_error(tmp_path, entry, why):
    """The weights are read with plain reads after safe_open checked the file; each entry is
    checked again as it is read (the file could have been replaced in between)."""
    from jinaclip_integrations.engine.weights import _Shard

    header = json.dumps({"w": entry}).encode()
    path = tmp_path / "model.safetensors"
    path.write_bytes(len(header).to_bytes(8, "little") + header + bytes(16))
    with open(path, "rb") as file, pytest.raises(CheckpointError, match=f"'w'.*{why}"):
        _Shard(path, file).read("w")
