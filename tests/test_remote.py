"""``jinaclip search``/``embed --server URL``: the query embedded by a running server on
loopback, the model never loaded by the command (vectors equal the engine's, atol 1e-5)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from _servers import serve
from conftest import V2_TINY
from jinaclip_integrations import JinaCLIPError, cli, settings
from jinaclip_integrations.remote import RemoteEmbedder
from jinaclip_integrations.server import ServerSettings, create_app

DATA = Path(__file__).parents[1] / "examples" / "data"
ATOL = 1e-5


@pytest.fixture
def server(engine):
    with serve(create_app(engine, ServerSettings(api_key="k"))) as url:
        yield url


@pytest.fixture
def env(tmp_path, monkeypatch) -> Path:
    for setting in settings.SETTINGS.values():
        monkeypatch.delenv(setting.env, raising=False)
    monkeypatch.setenv("JINACLIP_DTYPE", "float32")  # the goldens' dtype, not this CPU's default (bf16 where native)
    monkeypatch.setenv("JINACLIP_CONFIG", str(tmp_path / "none.toml"))
    monkeypatch.setenv("JINACLIP_MODEL", str(V2_TINY))
    monkeypatch.setenv("JINACLIP_STORE", str(tmp_path / "store"))
    monkeypatch.setenv("JINACLIP_API_KEY", "k")
    shutil.copytree(DATA, tmp_path / "data")
    return tmp_path


def test_search_and_embed_through_the_server_load_no_model(env, server, engine, capsys, monkeypatch):
    assert cli.main(["index", str(env / "data"), "-q"]) == 0
    capsys.readouterr()
    local = cli.main(["search", "a red circle", "--json", "-q"])
    expected = json.loads(capsys.readouterr().out)
    from jinaclip_integrations.engine import engine as engine_module

    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(engine_module, "shared_engine", refuse)
    monkeypatch.setattr(engine_module.JinaCLIPEngine, "from_pretrained", refuse)
    assert local == cli.main(["search", "a red circle", "--json", "--server", server]) == 0
    found = json.loads(capsys.readouterr().out)
    assert [h["id"] for h in found] == [h["id"] for h in expected]
    np.testing.assert_allclose([h["cosine"] for h in found], [h["cosine"] for h in expected], atol=ATOL)
    image = str(env / "data" / "red_circle.png")
    assert cli.main(["search", "--image", image, "--modality", "image", "--json", "--server", server]) == 0
    assert json.loads(capsys.readouterr().out)[0]["cosine"] == pytest.approx(1, abs=ATOL)

    monkeypatch.setenv("JINACLIP_SERVER", server)  # the setting, as for every other default
    assert cli.main(["embed", "a cat", "--image", image, "--task", "retrieval.query", "--dimensions", "16"]) == 0
    rows = [json.loads(line)["embedding"] for line in capsys.readouterr().out.splitlines()]
    np.testing.assert_allclose(rows[0], engine.encode_text(["a cat"], task="retrieval.query", truncate_dim=16)[0], atol=ATOL)  # fmt: skip
    np.testing.assert_allclose(rows[1], engine.encode_image([image], truncate_dim=16)[0], atol=ATOL)


def test_a_server_that_is_down_or_refuses_is_one_clear_error(server, tmp_path):
    with pytest.raises(JinaCLIPError, match="answered 401"):
        RemoteEmbedder(server).encode_text(["x"])
    with pytest.raises(JinaCLIPError, match="cannot reach the server .* leave out --server"):
        RemoteEmbedder("http://127.0.0.1:9", timeout=5).model()
