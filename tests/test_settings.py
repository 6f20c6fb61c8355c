"""One configuration source: the environment over the config file over the built-in defaults,
for every entry point (the CLI, the vectorizers, the adapters, the Ray job, the server)."""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

import pytest

from conftest import V2_TINY, load_engine
from jinaclip_integrations import JinaCLIPError, settings

ROOT = Path(__file__).parents[1]


@pytest.fixture
def clean(tmp_path, monkeypatch) -> Path:
    """No setting from this machine: every variable unset; returns the config file's path."""
    for setting in settings.SETTINGS.values():
        monkeypatch.delenv(setting.env, raising=False)
    config = tmp_path / "config.toml"
    monkeypatch.setenv("JINACLIP_CONFIG", str(config))
    return config


def test_environment_over_file_over_default(clean, monkeypatch):
    assert settings.value("model") == "jinaai/jina-clip-v2" and settings.configured("model") is None
    assert settings.value("max_items") == 2048 and settings.value("allow_image_urls") is False
    clean.write_text('model = "from-file"\nmax_items = 7\nallow_image_urls = true\ncollection = "c"\n')
    assert (settings.value("model"), settings.value("max_items"), settings.value("allow_image_urls")) == ("from-file", 7, True)  # fmt: skip
    monkeypatch.setenv("JINACLIP_MODEL", "from-env")
    monkeypatch.setenv("JINACLIP_MAX_ITEMS", "9")
    monkeypatch.setenv("JINACLIP_ALLOW_IMAGE_URLS", "off")
    monkeypatch.setenv("JINACLIP_COLLECTION", "")  # empty: unset
    found = settings.values()
    assert (found["model"], found["max_items"], found["allow_image_urls"], found["collection"]) == ("from-env", 9, False, "c")  # fmt: skip


@pytest.mark.parametrize(
    "variable, text, message",
    [("JINACLIP_MAX_ITEMS", "many", "$JINACLIP_MAX_ITEMS='many'"), ("JINACLIP_ALLOW_PRIVATE_URLS", "maybe", "not a boolean"),
     ("JINACLIP_DTYPE", "fp8", "not one of")],
)  # fmt: skip
def test_a_bad_value_names_its_variable(clean, monkeypatch, variable, text, message):
    monkeypatch.setenv(variable, text)
    with pytest.raises(JinaCLIPError, match=message.replace("$", r"\$")):
        settings.values()


def test_a_bad_file_names_the_key(clean):
    clean.write_text('colection = "typo"\n')
    with pytest.raises(JinaCLIPError, match="unknown keys .*colection"):
        settings.value("model")
    clean.write_text("max_wait_ms = 'soon'\n")
    with pytest.raises(JinaCLIPError, match="max_wait_ms = 'soon'"):
        settings.value("model")


def test_the_vectorizer_takes_model_and_collection_from_the_settings(clean, monkeypatch, tmp_path):
    from jinaclip_integrations.qdrant import QdrantVectorizer

    monkeypatch.setenv("JINACLIP_MODEL", str(V2_TINY))
    monkeypatch.setenv("JINACLIP_COLLECTION", "from-env")
    with QdrantVectorizer(tmp_path / "store") as store:
        assert (store.engine.name_or_path, store.collection_name) == (str(V2_TINY), "from-env")
        assert (tmp_path / "store" / "from-env").is_dir()


def test_the_adapters_take_the_model_from_the_settings(clean, monkeypatch):
    from jinaclip_integrations.langchain import JinaCLIPEmbeddings
    from jinaclip_integrations.llama_index import JinaCLIPEmbedding

    clean.write_text(f'model = "{V2_TINY}"\ndevice = "cpu"\n')
    engine = load_engine(V2_TINY)
    assert JinaCLIPEmbeddings(engine=engine).model_name == JinaCLIPEmbedding(engine=engine).model_name == str(V2_TINY)
    assert JinaCLIPEmbeddings().device == "cpu"


def test_the_ray_job_takes_model_and_collection_from_the_settings(clean, monkeypatch, tmp_path):
    from jinaclip_integrations.engine import JinaCLIPEngine

    monkeypatch.setenv("JINACLIP_MODEL", str(V2_TINY))
    monkeypatch.setenv("JINACLIP_COLLECTION", "rays")
    asked = []

    def spec(name, **options):  # the driver's first use of the model: then stop the job
        asked.append(name)
        raise RuntimeError("stop here")

    monkeypatch.setattr(JinaCLIPEngine, "from_pretrained", spec)
    from jinaclip_integrations.ray import index_with_ray

    (tmp_path / "a.txt").write_text("a")
    with pytest.raises(RuntimeError, match="stop here"):
        index_with_ray([tmp_path / "a.txt"], store=tmp_path / "store")
    assert asked == [str(V2_TINY)]


def test_the_server_takes_its_limits_from_the_settings(clean, monkeypatch):
    from jinaclip_integrations.server import ServerSettings, add_server_arguments, settings_from_args

    monkeypatch.setenv("JINACLIP_API_KEY", "secret")
    monkeypatch.setenv("JINACLIP_MAX_BODY_MB", "2")
    monkeypatch.setenv("JINACLIP_WEAVIATE_OPEN", "yes")
    clean.write_text("max_items = 5\nallow_image_urls = true\n")
    found = ServerSettings.from_env()
    assert (found.api_key, found.max_body_bytes, found.max_items) == ("secret", 2 << 20, 5)
    assert found.allow_image_urls and not found.weaviate_routes_auth
    assert ServerSettings.from_env(max_items=3).max_items == 3  # an argument wins
    parser = argparse.ArgumentParser()
    add_server_arguments(parser)
    from_flags = settings_from_args(parser.parse_args(["--max-items", "4", "--no-allow-image-urls"]))
    assert (from_flags.max_items, from_flags.allow_image_urls, from_flags.max_body_bytes) == (4, False, 2 << 20)


def test_the_examples_take_the_model_from_the_settings(clean, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "examples"))
    monkeypatch.setenv("JINACLIP_MODEL", "from-env")
    for name in ("similarity", "qdrant_multimodal", "langchain_multimodal", "llama_index_multimodal"):
        sys.modules.pop(name, None)
        assert importlib.import_module(name).DEFAULT_MODEL == "from-env"
        sys.modules.pop(name, None)
