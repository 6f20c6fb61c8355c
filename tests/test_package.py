"""Packaging: lazy imports, public names, core dependencies, and the scripts the README runs."""

from __future__ import annotations

import importlib.metadata
import os
import re
import subprocess
import sys
from pathlib import Path

from packaging.requirements import Requirement

import jinaclip_integrations

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).parents[1]
CORE = {"torch", "transformers", "tokenizers", "huggingface-hub", "safetensors", "pillow", "numpy", "tqdm", "tomli"}


def run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_importing_the_package_does_not_import_torch():
    code = "import sys, jinaclip_integrations as j; j.InputError; assert 'torch' not in sys.modules, 'torch imported'"
    result = run("-c", code)
    assert result.returncode == 0, result.stderr


def test_public_names():
    core = {"CheckpointError", "InputError", "JinaCLIPError", "StoreError", "__version__", "JinaCLIPEngine",
            "shared_engine", "FusedHit", "fuse_modalities", "ImageRef"}  # fmt: skip
    integrations = {"JinaCLIPEmbeddingFunction", "JinaCLIPEmbeddings", "MultimodalQdrantVectorStore", "LangChainCrossModalRetriever",
                    "JinaCLIPEmbedding", "LlamaIndexCrossModalRetriever", "QdrantVectorizer", "WeaviateVectorizer",
                    "create_inference_app", "create_app", "ServerSettings", "index_with_ray", "RayIndexResult"}  # fmt: skip
    assert set(jinaclip_integrations.__all__) == core
    assert set(dir(jinaclip_integrations)) == core | integrations
    for name in core | integrations:
        assert getattr(jinaclip_integrations, name) is not None
    assert issubclass(jinaclip_integrations.InputError, ValueError)
    assert issubclass(jinaclip_integrations.CheckpointError, jinaclip_integrations.JinaCLIPError)


BLOCK_FRAMEWORKS = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("langchain_core", "langchain_qdrant", "llama_index", "qdrant_client",
                                  "qdrant_edge", "weaviate", "fastapi", "ray", "chromadb"):  # fmt: skip
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, Block())
"""


def test_integrations_without_their_extra_give_an_install_hint():
    code = (
        BLOCK_FRAMEWORKS
        + """
import jinaclip_integrations as j
from jinaclip_integrations import *  # needs no extra
j.JinaCLIPEngine, j.fuse_modalities  # the core still works
def qdrant(cls):  # imports without its client: opening a store needs it
    cls("unused-store", engine=object())


for name, extra, use in (("JinaCLIPEmbeddings", "langchain", None), ("JinaCLIPEmbedding", "llama-index", None),
                         ("QdrantVectorizer", "qdrant", qdrant), ("WeaviateVectorizer", "weaviate", None),
                         ("create_inference_app", "server", None), ("create_app", "server", None),
                         ("JinaCLIPEmbeddingFunction", "chroma", None)):
    try:
        found = getattr(j, name)
        if use is not None:
            use(found)
    except ImportError as exc:
        assert f'pip install "jinaclip-integrations[{extra}]"' in str(exc), str(exc)
    else:
        raise AssertionError(name + " imported without its framework")
try:  # the Ray job's module imports without Ray; running the job needs it
    j.index_with_ray(["examples/data"], parquet="unused")
except ImportError as exc:
    assert 'pip install "jinaclip-integrations[ray]"' in str(exc), str(exc)
else:
    raise AssertionError("index_with_ray ran without Ray")
"""
    )
    result = run("-c", code)
    assert result.returncode == 0, result.stderr


def test_core_dependencies_only():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = {Requirement(dep).name.lower() for dep in project["dependencies"]}
    assert names == CORE
    assert project["dynamic"] == ["version"]  # read from jinaclip_integrations/_version.py
    assert importlib.metadata.version("jinaclip-integrations") == jinaclip_integrations.__version__
    extras = project["optional-dependencies"]
    assert {"langchain", "llama-index", "qdrant", "weaviate", "server", "heif", "ray", "test"} <= set(extras)
    assert {"pdf", "docx", "documents"} <= set(extras)
    assert "ray[data]>=2.40,<3" in extras["ray"] and "jinaclip-integrations[qdrant]" in extras["ray"]
    assert "qdrant-edge-py==0.9.0" in extras["qdrant"]  # pinned: its API still changes


def expand(extras: dict[str, list[str]], name: str) -> list[Requirement]:
    """The requirements of an extra, with the project's own extras it names expanded."""
    found = []
    for requirement in map(Requirement, extras[name]):
        if requirement.name == "jinaclip-integrations":
            found += [r for extra in sorted(requirement.extras) for r in expand(extras, extra)]
        else:
            found.append(requirement)
    return found


def test_all_is_every_integration_and_test_is_all_and_the_tools():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    integrations = set(extras) - {"all", "test", "test-minimal"}
    everything = {str(r) for r in expand(extras, "all")}
    assert everything == {str(r) for extra in integrations for r in expand(extras, extra)}
    assert not {"pytest", "hypothesis", "schemathesis"} & {r.name for r in expand(extras, "all")}
    assert {str(r) for r in expand(extras, "test")} >= everything | {str(r) for r in expand(extras, "test-minimal")}
    # the suite runs on what `all` declares: each requirement is installed here, at an allowed version
    for requirement in expand(extras, "test"):
        if requirement.marker is None or requirement.marker.evaluate():
            installed = importlib.metadata.version(requirement.name)
            assert requirement.specifier.contains(installed, prereleases=True), f"{requirement}: {installed} installed"


MAIN_JOB = 'export JINACLIP_MODEL=tests/fixtures/jina-clip-v2-tiny JINACLIP_STORE=.jinaclip-store && jinaclip index examples/data && jinaclip search "a red circle" && jinaclip search --image examples/data/red_circle.png'  # noqa: E501


def quick_start() -> tuple[list[str], list[str]]:
    """The steps of the README's two quick-start commands: the main job's, the tests'."""
    section = (ROOT / "README.md").read_text().split("\n## Quick start\n")[1].split("\n## ")[0]
    main, tests = re.findall(r"```bash\n(.*?)\n```", section, re.S)
    return main.split(" && "), tests.split(" && ")


def test_ci_installs_and_runs_as_the_readme_says():
    main, tests = quick_start()
    assert " && ".join(main).endswith(MAIN_JOB)
    install = [step for step in main if step.startswith("pip install -e")]
    assert install == ['pip install -e ".[qdrant,documents]"']  # the main job's extras, not the test tools
    assert tests[-1] == "python -m pytest -q" and 'pip install -e ".[test]"' in tests
    ci = [line.replace(" -q ", " ") for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    ci = [line for line in ci if line and not line.startswith("#")]
    steps = iter(ci)  # each README step, in order, is a line of .ci/run
    assert all(step in steps for step in main + tests), f"{main + tests} not in order in {ci}"
    assert ci[-1] == "python -m pytest -q" and any(line.startswith("bash .ci/lowest-deps") for line in ci)


def test_readme_main_job_runs(tmp_path):
    """The README's main job, as CI runs it, in a scratch store."""
    job = MAIN_JOB.replace(".jinaclip-store", str(tmp_path / "store"))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    result = subprocess.run(["bash", "-c", job], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].endswith("6 added, 0 already stored, 0 removed, 0 failed; 6 points in all")
    assert lines[1].startswith("files: 6 new,") and lines[2].split() == ["score", "cosine", "kind", "source"]
    by_text, by_image = lines[3:9], lines[10:16]
    assert {row.split()[3] for row in by_text[:2]} == {"text", "image"}  # one ranking: texts and images mixed
    # searching with a stored image finds that image among the first, at cosine 1
    assert ["1.0000", "image", "examples/data/red_circle.png"] in [row.split()[2:5] for row in by_image[:2]]


def test_hypothesis_draws_the_same_examples_in_ci():
    """CI sets CI=true: conftest then loads the derandomized profile every @settings inherits."""
    code = "import conftest; from hypothesis import settings; s = settings(max_examples=5); print(s.derandomize, s.deadline, s.database)"  # noqa: E501
    for ci, expected in (("true", "True None None"), (None, "False")):
        env = {"PATH": os.environ["PATH"], "PYTHONPATH": f"{ROOT / 'tests'}:{ROOT}"} | ({"CI": ci} if ci else {})
        result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith(expected)


def test_qdrant_example_runs():
    result = run("examples/qdrant_multimodal.py", "--model", "tests/fixtures/jina-clip-v2-tiny")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[:3] == [
        "first index run: 6 new files, 0 unchanged, 6 points added, 0 failed",
        "second index run: 0 new files, 6 unchanged, 0 points added, 0 failed",
        "6 points of jina-clip-v2-tiny: full 64-d + short 8-d vectors, preset default",
    ]


def test_similarity_example_runs():
    result = run("examples/similarity.py", "--model", "tests/fixtures/jina-clip-v2-tiny", "--dimensions", "16")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "task=retrieval.query, dims=16" in lines[0]
    assert len(lines) == 2 + 3 and lines[2].startswith("a red circle") and lines[2].count("*") == 1


def test_benchmark_smoke():
    result = run("benchmarks/bench_engine.py", "--smoke")
    assert result.returncode == 0, result.stderr
    assert "| text, short 5-30 tokens" in result.stdout and "MFU" in result.stdout


def test_qdrant_benchmark_smoke():
    result = run("benchmarks/bench_qdrant.py", "--smoke")
    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if line.startswith(("| edge", "| local"))]
    assert len(rows) == 6  # 2 engines x 3 presets
    assert "Query throughput, embedded engine over local mode" in result.stdout


def test_ingest_benchmark_smoke():
    result = run("benchmarks/bench_ingest.py", "--smoke")
    assert result.returncode == 0, result.stderr
    assert "| tiny | 4 |" in result.stdout and "overhead" in result.stdout


def test_server_benchmark_smoke():
    result = run("benchmarks/bench_server.py", "--smoke")
    assert result.returncode == 0, result.stderr
    assert "merged / unmerged" in result.stdout


def test_load_benchmark_smoke():
    result = run("benchmarks/bench_load.py", "--smoke")
    assert result.returncode == 0, result.stderr
    assert "| **all good** |" in result.stdout and "unexpected: **0**" in result.stdout
    assert "MiB/min" in result.stdout and "server / direct" in result.stdout


def test_ray_benchmark_smoke():
    result = run("benchmarks/bench_ray.py", "--smoke")
    assert result.returncode == 0, result.stderr
    runs = [line.split(" | ")[0][2:] for line in result.stdout.splitlines() if line.startswith(("| single", "| ray"))]
    assert runs[:3] == ["single process", "ray, 1 CPU actor", "ray, 2 CPU actors"]  # and one GPU actor with CUDA
