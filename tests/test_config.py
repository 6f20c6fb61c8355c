"""config.json parsing, and how the text tower's sizes are found (kwargs > base config > built-in),
for both text architectures (v2: XLM-RoBERTa, v1: JinaBERT)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest

from conftest import V1_TINY, V2_TINY, copy_fixture
from jinaclip_integrations import CheckpointError, JinaCLIPEngine
from jinaclip_integrations.engine.config import (
    JINA_BERT_TEXT_CONFIG,
    JINA_EMBEDDINGS_V3_TEXT_CONFIG,
    JinaBertConfig,
    parse_config,
)
from jinaclip_integrations.engine.weights import load_config

FULL = Path(__file__).parents[1] / "benchmarks" / "configs" / "jina-clip-v2"
SIZE_KEYS = set(JINA_EMBEDDINGS_V3_TEXT_CONFIG)


def published_full_config() -> dict:
    """The real jina-clip-v2 config.json: the full-size one without the text sizes, which the
    published file does not list."""
    config = json.loads((FULL / "config.json").read_text())
    kwargs = config["text_config"]["hf_model_config_kwargs"]
    for key in SIZE_KEYS - {"pad_token_id"}:
        kwargs.pop(key, None)
    return config


def test_tiny_fixture_sizes_come_from_kwargs():
    cfg = load_config(V2_TINY)
    assert (cfg.text.hidden_size, cfg.text.num_hidden_layers, cfg.text.num_attention_heads) == (64, 2, 4)
    assert (cfg.text.vocab_size, cfg.text.intermediate_size, cfg.text.rotary_emb_base) == (272, 128, 20000.0)
    assert cfg.text.lora_adaptations == ("retrieval.query",) and cfg.text.lora_scaling == 1.0
    assert cfg.text.active_adapter == 0
    assert (cfg.vision.width, cfg.vision.layers, cfg.vision.num_heads, cfg.vision.mlp_hidden) == (64, 2, 4, 170)
    assert (cfg.vision.grid_size, cfg.preprocess.size) == (4, 56)
    assert cfg.matryoshka_dims == (8, 16, 32, 64) and cfg.tasks == ("retrieval.query",)


def test_published_config_falls_back_to_builtin_jina_embeddings_v3():
    """Offline and without jina-embeddings-v3 in the cache, the published config yields the same
    text tower as the config with every size written out."""
    written_out = parse_config(json.loads((FULL / "config.json").read_text()))
    published = parse_config(published_full_config(), base_text_config=None)
    assert published == written_out
    assert published.text.rotary_emb_base == 20000.0  # not the flash config class default 10000
    assert (published.vision.grid_size, published.vision.mlp_hidden) == (36, 2730)


def test_base_config_from_a_local_folder_and_kwargs_win(tmp_path):
    base = tmp_path / "base-model"
    base.mkdir()
    (base / "config.json").write_text(json.dumps({**JINA_EMBEDDINGS_V3_TEXT_CONFIG, "num_hidden_layers": 7, "hidden_act": "gelu_new"}))  # fmt: skip
    config = published_full_config()
    config["text_config"]["hf_model_name_or_path"] = str(base)
    config["text_config"]["hf_model_config_kwargs"]["hidden_act"] = "gelu"
    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(config))
    cfg = load_config(folder)
    assert cfg.text.num_hidden_layers == 7  # from the base config
    assert cfg.text.hidden_act == "gelu"  # kwargs win


def test_base_config_from_the_hub_cache(tmp_path):
    cache = tmp_path / "hub"
    snapshot = cache / "models--jinaai--jina-embeddings-v3" / "snapshots" / "0123abc"
    snapshot.mkdir(parents=True)
    cached = {**JINA_EMBEDDINGS_V3_TEXT_CONFIG, "num_hidden_layers": 5}
    del cached["rotary_emb_base"]  # a field the cached file lacks comes from the built-in values
    (snapshot / "config.json").write_text(json.dumps(cached))
    (cache / "models--jinaai--jina-embeddings-v3" / "refs").mkdir()
    (cache / "models--jinaai--jina-embeddings-v3" / "refs" / "main").write_text("0123abc")
    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(published_full_config()))
    from_cache = load_config(folder, cache_dir=cache).text
    assert (from_cache.num_hidden_layers, from_cache.rotary_emb_base) == (5, 20000.0)
    assert load_config(folder, cache_dir=tmp_path / "empty").text.num_hidden_layers == 24  # built-in


def test_unknown_base_model_without_sizes_names_the_missing_field():
    config = published_full_config()
    config["text_config"]["hf_model_name_or_path"] = "someone/unknown-model"
    with pytest.raises(CheckpointError, match="has no 'hidden_size'"):
        parse_config(config)


@pytest.mark.parametrize(
    "path, value, message",
    [
        (("add_projections",), True, "add_projections"),
        (("text_config", "proj_type"), "linear", "proj_type"),
        (("vision_config", "post_norm"), True, "post_norm"),
        (("vision_config", "naive_swiglu"), False, "naive_swiglu"),
        (("vision_config", "ls_init_value"), 0.1, "ls_init_value"),
        (("vision_config", "head_width"), 48, "head_width"),
        (("model_type",), "clip", "model_type"),
        (("matryoshka_dimensions",), [8, 128], r"\[128\]"),
        (("text_config", "default_lora_task"), "retrieval.passage", "default_lora_task"),
    ],
)
def test_unsupported_or_inconsistent_config_is_a_checkpoint_error(path, value, message):
    config = copy.deepcopy(json.loads((V2_TINY / "config.json").read_text()))
    target = config
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(CheckpointError, match=message):
        parse_config(config)


def test_config_defaults_for_task_and_truncation(tmp_path, engine, manifest):
    def defaults(config):
        config["text_config"]["default_instruction_task"] = "retrieval.query"
        config["truncate_dim"] = 16

    folder = copy_fixture(tmp_path / "ckpt", config_edit=defaults)
    other = JinaCLIPEngine.from_pretrained(folder, device="cpu", dtype="float32", show_progress=False)
    texts = manifest["texts"][:4]
    np.testing.assert_allclose(other.encode_text(texts), engine.encode_text(texts, task="retrieval.query", truncate_dim=16), atol=1e-6)  # fmt: skip
    assert other.encode_image([np.full((8, 8, 3), 7, np.uint8)]).shape == (1, 16)
    assert other.encode_text(texts, truncate_dim=64).shape == (4, 64)


# -- jina-clip-v1 (JinaBERT text tower) ------------------------------------------------------


def published_v1_config() -> dict:
    """A jina-clip-v1 config.json as published: the v1 fixture's fields with the real sizes, and
    ``hf_model_config_kwargs`` holding only ``use_flash_attn`` (the text sizes are not listed)."""
    config = json.loads((V1_TINY / "config.json").read_text())
    config["text_config"]["hf_model_config_kwargs"] = {"use_flash_attn": False}
    config["vision_config"].update(width=768, layers=12, head_width=64, image_size=224, pt_hw_seq_len=14)
    config["text_config"]["embed_dim"] = config["vision_config"]["embed_dim"] = config["projection_dim"] = 768
    return config


def test_v1_tiny_fixture_is_jinabert_with_sizes_from_kwargs():
    cfg = load_config(V1_TINY)
    assert isinstance(cfg.text, JinaBertConfig)
    t = cfg.text
    assert (t.vocab_size, t.hidden_size, t.num_hidden_layers, t.num_attention_heads, t.intermediate_size) == (420, 64, 2, 4, 128)  # fmt: skip
    assert (t.layer_norm_eps, t.type_vocab_size, t.pad_token_id, t.hidden_act) == (1e-12, 2, 0, "gelu")
    assert t.max_position_embeddings == 8192  # not in the kwargs: the jina-bert built-in value
    assert cfg.tasks == () and t.default_instruction_task is None and cfg.matryoshka_dims == ()
    v = cfg.vision
    assert (v.intp_freq, v.pt_hw_seq_len, v.grid_size, v.rope_grid, v.num_heads) == (False, 4, 4, 4, 4)


def test_published_v1_config_falls_back_to_builtin_jina_bert():
    cfg = parse_config(published_v1_config(), base_text_config=None)
    t = cfg.text
    assert isinstance(t, JinaBertConfig)
    assert (t.vocab_size, t.hidden_size, t.num_hidden_layers, t.num_attention_heads) == (30528, 768, 12, 12)
    assert (t.intermediate_size, t.layer_norm_eps, t.type_vocab_size, t.pad_token_id) == (3072, 1e-12, 2, 0)
    assert (cfg.vision.grid_size, cfg.vision.rope_grid, cfg.vision.mlp_hidden) == (14, 14, 2048)


def test_v1_base_config_from_the_hub_cache_is_jinabert_by_name(tmp_path):
    """A cached jina-bert config.json that does not name its position scheme is still JinaBERT."""
    name = "models--jinaai--jina-bert-flash-implementation"
    snapshot = tmp_path / "hub" / name / "snapshots" / "0123abc"
    snapshot.mkdir(parents=True)
    cached = {k: v for k, v in JINA_BERT_TEXT_CONFIG.items() if k != "position_embedding_type"}
    (snapshot / "config.json").write_text(json.dumps({**cached, "num_hidden_layers": 5}))
    (tmp_path / "hub" / name / "refs").mkdir()
    (tmp_path / "hub" / name / "refs" / "main").write_text("0123abc")
    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(published_v1_config()))
    text = load_config(folder, cache_dir=tmp_path / "hub").text
    assert isinstance(text, JinaBertConfig) and text.num_hidden_layers == 5


def test_v1_alibi_base_config_from_a_local_folder_and_kwargs_win(tmp_path):
    base = tmp_path / "my-jina-bert"
    base.mkdir()
    (base / "config.json").write_text(json.dumps({**JINA_BERT_TEXT_CONFIG, "num_hidden_layers": 3, "num_attention_heads": 6}))  # fmt: skip
    config = published_v1_config()
    config["text_config"]["hf_model_name_or_path"] = str(base)
    config["text_config"]["hf_model_config_kwargs"]["num_attention_heads"] = 3
    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(config))
    text = load_config(folder).text
    assert isinstance(text, JinaBertConfig)
    assert (text.num_hidden_layers, text.num_attention_heads) == (3, 3)


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("mlp_type", "mlp", "mlp_type='mlp' is not supported"),
        ("hidden_act", "gelu_new", "hidden_act='gelu_new' is not supported"),
        ("use_qk_norm", True, "use_qk_norm=True is not supported"),
        ("window_size", [256, 256], r"window_size=\[256, 256\] is not supported"),
        ("num_attention_heads", 5, "hidden_size=64 is not a multiple of num_attention_heads=5"),
        ("vocab_size", None, "has no 'vocab_size'"),
    ],
)
def test_unsupported_v1_text_options_are_checkpoint_errors(key, value, message):
    config = json.loads((V1_TINY / "config.json").read_text())
    kwargs = config["text_config"]["hf_model_config_kwargs"]
    if value is None:
        del kwargs[key]
        config["text_config"]["hf_model_name_or_path"] = "someone/unknown-alibi-model"
        kwargs["position_embedding_type"] = "alibi"
    else:
        kwargs[key] = value
    with pytest.raises(CheckpointError, match=message):
        parse_config(config)


@pytest.mark.parametrize(
    "path, value, message",
    [
        (("text_config", "proj_type"), "linear", "proj_type"),
        (("text_config", "embed_dim"), 32, "embed_dim=32 differs from hidden_size=64"),
        (("text_config", "default_instruction_task"), "retrieval.query", "default_instruction_task"),
        (("vision_config", "pt_hw_seq_len"), 14, "RoPE table side 14"),
    ],
)
def test_inconsistent_v1_config_is_a_checkpoint_error(path, value, message):
    config = json.loads((V1_TINY / "config.json").read_text())
    config[path[0]][path[1]] = value
    with pytest.raises(CheckpointError, match=message):
        parse_config(config)
