"""Shared fixtures: the checkpoint folders under tests/fixtures and engines loaded from them."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from functools import cache
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

#: CI (which sets CI=true) draws the same examples on every run, so what fails there fails again
#: on a rerun, and has no deadline on its shared CPUs. Loaded here, before the test modules'
#: own @settings, which inherit what they do not set. (Hypothesis loads a built-in profile like
#: it from 6.130 on; the floor in pyproject.toml is older.)
settings.register_profile(
    "ci", derandomize=True, database=None, deadline=None, print_blob=True, suppress_health_check=[HealthCheck.too_slow]
)
if os.environ.get("CI"):
    settings.load_profile("ci")

#: The tests compare embeddings with float32 goldens at 1e-5, so every entry point that takes its
#: dtype from the settings (adapters, CLI, server; here and in the subprocesses tests start)
#: loads float32, whatever this CPU's default is (bf16 where it is native: test_precision.py
#: checks that default against the goldens).
os.environ.setdefault("JINACLIP_DTYPE", "float32")

FIXTURES = Path(__file__).parent / "fixtures"
V2_TINY = FIXTURES / "jina-clip-v2-tiny"
V1_TINY = FIXTURES / "jina-clip-v1-tiny"


def _golden_folders(text_base_model: str) -> list[Path]:
    """Fixture folders with golden outputs whose text tower is built on ``text_base_model``."""
    found = []
    for folder in sorted(FIXTURES.iterdir()):
        if (folder / "golden.npz").is_file() and (folder / "config.json").is_file():
            config = json.loads((folder / "config.json").read_text())
            if config.get("text_config", {}).get("hf_model_name_or_path") == text_base_model:
                found.append(folder)
    return found


def golden_v2_folders() -> list[Path]:
    """Every jina-clip-v2 fixture folder with golden outputs (the public tiny set, and any
    other set dropped into tests/fixtures: all get the same parity checks)."""
    return _golden_folders("jinaai/jina-embeddings-v3")


def golden_v1_folders() -> list[Path]:
    """Every jina-clip-v1 fixture folder with golden outputs, likewise."""
    return _golden_folders("jinaai/jina-bert-flash-implementation")


def copy_fixture(
    destination: Path, tensors: dict | None = None, config_edit: Callable[[dict], None] | None = None
) -> Path:
    """A copy of the tiny v2 checkpoint at ``destination``, optionally with other weights
    (``tensors``, saved as model.safetensors) or an edited config.json."""
    shutil.copytree(V2_TINY, destination)
    if tensors is not None:
        from safetensors.torch import save_file

        save_file(tensors, str(destination / "model.safetensors"), metadata={"format": "pt"})
    if config_edit is not None:
        config = json.loads((destination / "config.json").read_text())
        config_edit(config)
        (destination / "config.json").write_text(json.dumps(config))
    return destination


@cache
def load_engine(folder: Path, dtype: str = "float32"):
    """One engine per (folder, dtype) for the whole session, loaded through the real path."""
    from jinaclip_integrations import JinaCLIPEngine

    return JinaCLIPEngine.from_pretrained(folder, device="cpu", dtype=dtype, show_progress=False)


@pytest.fixture(scope="session")
def engine():
    return load_engine(V2_TINY)


@pytest.fixture(scope="session")
def manifest() -> dict:
    return json.loads((V2_TINY / "manifest.json").read_text())


@pytest.fixture(scope="session")
def golden() -> dict[str, np.ndarray]:
    with np.load(V2_TINY / "golden.npz") as npz:
        return dict(npz)


@pytest.fixture(scope="session")
def image_paths(manifest) -> list[Path]:
    return [V2_TINY / name for name in manifest["images"]]
