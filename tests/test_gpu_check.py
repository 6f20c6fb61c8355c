"""The GPU check script's dry run (what CI can run of it): every step runs on the CPU with the
tiny checkpoints and leaves its results, so the script cannot rot between GPU runs."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STEPS = ("parity", "engine", "ingest", "server")


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("gpu-check")
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--dry-run", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return out


@pytest.mark.parametrize("name", STEPS)
def test_every_step_ran_and_wrote_its_results(dry_run, name):
    log = (dry_run / "gpu_check.log").read_text()
    data = json.loads((dry_run / f"{name}.json").read_text())
    assert data["step"] == name and data["dry_run"] is True
    assert data["status"] == "ok", (data, log[-4000:])  # not failed, not timed out, no figure raised
    assert data["results"], log[-4000:]
    line = next(line for line in (dry_run / "summary.md").read_text().splitlines() if line.startswith(f"| {name} |"))
    assert "| ok |" in line


def test_the_figures_are_there(dry_run):
    """The keys the GPU run reports, and what the dry run can already check of them."""
    parity = json.loads((dry_run / "parity.json").read_text())
    assert parity["skipped"]["pytest_gpu_parity"].startswith("dry run")
    for model in ("jina-clip-v2-tiny", "jina-clip-v1-tiny"):
        cos = parity["results"][f"cosine_to_fp32_golden/{model}/bfloat16"]
        assert cos["text"]["min_cosine"] >= 0.999 and cos["image"]["min_cosine"] >= 0.999
    oom = parity["results"]["oom_halving"]
    assert oom["simulated"] and oom["sizes_tried"][0] == oom["images"] and oom["sizes_tried"][1] == oom["images"] // 2
    assert oom["max_abs_diff"] <= 1e-5  # fp32 on the CPU: halving changes nothing

    engine = json.loads((dry_run / "engine.json").read_text())["results"]
    for key in ("matmul_peak_tflops", "vision/ours/eager", "vision/ours/compiled", "text_8192_tokens"):
        assert key in engine
    plans = {name: engine[f"text_mix/{name}"] for name in ("engine", "no_overhead", "fullest")}
    assert plans["no_overhead"]["padding_fraction"] <= plans["engine"]["padding_fraction"] <= plans["fullest"]["padding_fraction"]  # fmt: skip
    assert "xlmroberta_sdpa_tokens_per_s" in plans["engine"]

    ingest = json.loads((dry_run / "ingest.json").read_text())["results"]
    for key in ("jpeg_to_qdrant/640x512", "jpeg_to_qdrant/12MP", "jpeg_to_qdrant/12MP/full_decode"):
        assert ingest[key]["images"] == ingest[key]["added"] > 0

    server = json.loads((dry_run / "server.json").read_text())["results"]
    (row,) = server.values()
    assert row["rps"] > 0 and row["items_per_call"] >= 1


@pytest.mark.skipif(shutil.which("bash") is None, reason="no bash")
@pytest.mark.parametrize("script", ["gpu_check.sh", "gpu_wheels.sh"])
def test_shell_scripts_parse(script):
    subprocess.run(["bash", "-n", str(ROOT / "benchmarks" / script)], check=True)
