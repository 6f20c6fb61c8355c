"""End to end: the two framework examples' pipelines on the embedded Qdrant (local mode, on disk).

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
    assert all(doc.metadata["modality"] == "image" for doc, _ in result["images_for_text"])
    assert {doc.metadata["modality"] for doc, _ in result["texts_for_image"]} == {"text"}
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
    assert all(isinstance(hit.node, ImageNode) for hit in result["images_for_text"])
    assert len(result["images_for_text"]) == 3
    assert result["mixed_for_text"][0].node.get_content() == TEXT
    client.close()


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
