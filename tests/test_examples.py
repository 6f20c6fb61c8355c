"""End to end: the two framework examples' pipelines on qdrant-client's local mode (on disk).

The pipelines run with ``query_task=None`` so that a query is embedded exactly as the stored
item was: the item a query was built from must then be the top hit (cosine 1), for text and
for image queries. Random tiny weights say nothing about which *other* item is most similar.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
from llama_index.core.schema import ImageNode

from conftest import V2_TINY

ROOT = Path(__file__).parents[1]
DATA = ROOT / "examples" / "data"
TEXT = (DATA / "circles.txt").read_text(encoding="utf-8").strip()
IMAGE = DATA / "red_circle.png"


def load_example(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def vector_sizes(client, collection: str) -> set[int]:
    """Sizes of the collection's dense vectors, and of every stored point's vectors."""
    vectors = client.get_collection(collection).config.params.vectors
    sizes = {v.size for v in vectors.values()} if isinstance(vectors, dict) else {vectors.size}
    points, _ = client.scroll(collection, with_vectors=True, limit=1000)
    assert points
    for point in points:
        sizes |= {len(v) for v in point.vector.values()} if isinstance(point.vector, dict) else {len(point.vector)}
    return sizes


@pytest.mark.parametrize("dimensions, size", [(None, 64), (16, 16)])
def test_langchain_pipeline(tmp_path, dimensions, size):
    example = load_example("langchain_multimodal")
    result = example.run(
        str(V2_TINY), DATA, str(tmp_path), dimensions=dimensions, query=TEXT, image_query=IMAGE, query_task=None
    )
    store = result["store"]
    assert vector_sizes(store.client, store.collection_name) == {size}
    assert store.client.count(store.collection_name).count == 6
    assert [doc.metadata["modality"] for doc, _ in result["images_for_text"]] == ["image"] * 3
    assert [doc.metadata["modality"] for doc, _ in result["texts_for_image"]] == ["text"] * 3
    top, score = store.similarity_search_with_score(TEXT, k=1)[0]
    assert top.page_content == TEXT and score == pytest.approx(1, abs=1e-5)
    top, score = store.similarity_search_by_image_with_score(str(IMAGE), k=1)[0]
    assert top.metadata["source"] == str(IMAGE) and score == pytest.approx(1, abs=1e-5)
    assert result["mixed_for_text"][0].page_content == TEXT
    store.client.close()


@pytest.mark.parametrize("dimensions, size", [(None, 64), (16, 16)])
def test_llama_index_pipeline(tmp_path, dimensions, size):
    example = load_example("llama_index_multimodal")
    result = example.run(
        str(V2_TINY), DATA, str(tmp_path), dimensions=dimensions, query=TEXT, image_query=IMAGE, query_task=None
    )
    client = result["client"]
    assert vector_sizes(client, "texts") == vector_sizes(client, "images") == {size}
    assert client.count("texts").count == 3 and client.count("images").count == 3
    top = result["images_for_image"][0]
    assert top.node.image_path == str(IMAGE) and top.score == pytest.approx(1, abs=1e-5)
    # LlamaIndex embeds a text node with its metadata (file name, path...), so not at cosine 1
    top, second = result["texts_for_text"][:2]
    assert top.node.get_content() == TEXT and top.score > second.score
    assert [isinstance(hit.node, ImageNode) for hit in result["images_for_text"]] == [True] * 3
    assert result["mixed_for_text"][0].node.get_content() == TEXT
    client.close()


def test_pipelines_with_the_query_task(tmp_path):
    """As the scripts run by default: queries carry the retrieval.query instruction."""
    lc = load_example("langchain_multimodal").run(str(V2_TINY), DATA, str(tmp_path / "lc"), query=TEXT)
    assert len(lc["images_for_text"]) == len(lc["texts_for_image"]) == len(lc["mixed_for_text"]) == 3
    instructed = lc["store"].embeddings.embed_query(TEXT)
    assert lc["images_for_text"][0][1] == pytest.approx(
        max(sum(a * b for a, b in zip(instructed, lc["store"].embeddings.embed_image([str(p)])[0], strict=True))
            for p in DATA.glob("*.png")), abs=1e-5,
    )  # fmt: skip
    lc["store"].client.close()
    li = load_example("llama_index_multimodal").run(str(V2_TINY), DATA, str(tmp_path / "li"), query=TEXT)
    assert [len(li[key]) for key in ("images_for_text", "images_for_image", "texts_for_text", "mixed_for_text")] == [
        3
    ] * 4
    li["client"].close()


@pytest.mark.parametrize(
    "script, heading",
    [("langchain_multimodal.py", "texts for the image"), ("llama_index_multimodal.py", "image-to-image")],
)
def test_example_scripts_run(script, heading):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / script)], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert heading in result.stdout and "cross-modal retriever" in result.stdout
