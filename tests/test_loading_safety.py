"""Loading a checkpoint runs no code from it: safetensors only, no pickle, no remote code.

A checkpoint folder is untrusted input (a hub repository anyone can publish). Pickle files
(``pytorch_model.bin``) execute code when unpickled, and ``trust_remote_code`` runs the
repository's Python files; neither may happen, whatever the folder holds.
"""

from __future__ import annotations

import ast
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

import jinaclip_integrations
from conftest import V2_TINY, copy_fixture
from jinaclip_integrations import CheckpointError, JinaCLIPEngine
from jinaclip_integrations.engine import weights

PACKAGE = Path(jinaclip_integrations.__file__).parent
UNSAFE_MODULES = {"pickle", "cPickle", "dill", "cloudpickle", "joblib", "marshal", "shelve"}
UNSAFE_CALLS = {"torch.load", "eval", "exec", "np.load", "numpy.load", "pickle.load", "pickle.loads"}


class _Planted:
    """Unpickling this creates ``marker``: proof that a pickle was loaded."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _dotted(node: ast.expr) -> str:
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return node.id if isinstance(node, ast.Name) else ""


@pytest.mark.parametrize("module", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_pickle_eval_or_remote_code_in_the_package(module: Path):
    """Static check of every module: no unpickling import or call, no eval/exec, and no
    ``trust_remote_code`` other than False."""
    tree = ast.parse(module.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            assert not {alias.name.split(".")[0] for alias in node.names} & UNSAFE_MODULES, ast.unparse(node)
        elif isinstance(node, ast.ImportFrom):
            assert (node.module or "").split(".")[0] not in UNSAFE_MODULES, ast.unparse(node)
        elif isinstance(node, ast.Call):
            assert _dotted(node.func) not in UNSAFE_CALLS, f"{module}:{node.lineno}: {ast.unparse(node)}"
            for keyword in node.keywords:
                if keyword.arg == "trust_remote_code":
                    assert isinstance(keyword.value, ast.Constant) and keyword.value.value is False, ast.unparse(node)


def test_the_hub_download_fetches_no_pickles_or_code():
    """Only JSON, safetensors and text files are downloaded from the hub."""
    assert all(pattern.rsplit(".", 1)[-1] in {"json", "safetensors", "txt"} for pattern in weights.HUB_PATTERNS)


def test_a_pickle_checkpoint_is_refused_without_unpickling(tmp_path):
    folder = copy_fixture(tmp_path / "ckpt")
    (folder / "model.safetensors").unlink()
    marker = tmp_path / "unpickled"
    with open(folder / "pytorch_model.bin", "wb") as f:
        pickle.dump({"weights": _Planted(marker)}, f)
    with pytest.raises(CheckpointError, match=r"no model\.safetensors"):
        JinaCLIPEngine.from_pretrained(folder, device="cpu")
    assert not marker.exists()


def test_remote_code_in_the_folder_is_never_run(tmp_path):
    """A folder whose config names remote code (``auto_map``) loads on the native modules;
    the Python files in it are not imported."""
    marker = tmp_path / "imported"
    folder = copy_fixture(
        tmp_path / "ckpt",
        config_edit=lambda c: c.update(auto_map={"AutoModel": "modeling_evil.Evil", "AutoConfig": "modeling_evil.Cfg"}),
    )
    (folder / "modeling_evil.py").write_text(f"from pathlib import Path\nPath({str(marker)!r}).touch()\n")
    engine = JinaCLIPEngine.from_pretrained(folder, device="cpu", show_progress=False)
    reference = JinaCLIPEngine.from_pretrained(V2_TINY, device="cpu", show_progress=False)
    np.testing.assert_array_equal(engine.encode_text(["hello"]), reference.encode_text(["hello"]))
    assert not marker.exists()


def test_loading_and_embedding_never_unpickle(monkeypatch, tmp_path, image_paths):
    """With every unpickling entry point booby-trapped, a checkpoint loads and embeds."""

    def trap(*args, **kwargs):
        raise AssertionError("something unpickled during loading")

    for owner, name in [(pickle, "load"), (pickle, "loads"), (pickle, "Unpickler"), (torch, "load")]:
        monkeypatch.setattr(owner, name, trap)
    engine = JinaCLIPEngine.from_pretrained(copy_fixture(tmp_path / "ckpt"), device="cpu", show_progress=False)
    assert engine.encode_text(["a"]).shape == engine.encode_image(image_paths[:1]).shape == (1, engine.embedding_dim)
