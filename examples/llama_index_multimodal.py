"""LlamaIndex + Qdrant: a ``MultiModalVectorStoreIndex`` over a folder of images and texts.

The text files of ``examples/data`` are read with ``SimpleDirectoryReader`` and its images become
``ImageDocument``s (without ``llama-index-readers-file`` installed, ``SimpleDirectoryReader``
would read a PNG as text); the index stores them in two collections of one
``QdrantClient(path=...)``: qdrant-client's local mode on disk, a brute-force Python stand-in for
Qdrant, not the embedded engine (``QdrantClient(url=...)`` for a server). Both are embedded by
jina-clip. Then text-to-image, image-to-image, text-to-text and the merged cross-modal retrieval.

    python examples/llama_index_multimodal.py                                   # tiny offline test model
    python examples/llama_index_multimodal.py --model jinaai/jina-clip-v2 --dimensions 256
"""

from __future__ import annotations

import argparse
import tempfile
import warnings
from pathlib import Path

from llama_index.core import SimpleDirectoryReader, StorageContext
from llama_index.core.indices import MultiModalVectorStoreIndex
from llama_index.core.schema import ImageDocument
from llama_index.vector_stores.qdrant import QdrantVectorStore
from qdrant_client import QdrantClient

from jinaclip_integrations import settings
from jinaclip_integrations.llama_index import JinaCLIPEmbedding, LlamaIndexCrossModalRetriever

# llama-index asks the store for payload indexes, which local-mode Qdrant does not need
warnings.filterwarnings("ignore", message="Payload indexes have no effect in the local Qdrant")

HERE = Path(__file__).parent
#: the model setting ($JINACLIP_MODEL or the config file) if there is one, else the tiny offline test checkpoint
DEFAULT_MODEL = settings.configured("model") or str(HERE.parent / "tests" / "fixtures" / "jina-clip-v2-tiny")
DATA = HERE / "data"


def run(
    model: str = DEFAULT_MODEL,
    data: Path = DATA,
    qdrant_path: str | None = None,
    *,
    dimensions: int | None = None,
    query: str = "a red circle",
    image_query: Path | None = None,
    query_task: str | None = "retrieval.query",
    k: int = 3,
) -> dict:
    """Index the folder and run the four retrievals; returns the index, client and the hits."""
    embed_model = JinaCLIPEmbedding(model_name=model, dimensions=dimensions, query_task=query_task)
    client = QdrantClient(path=qdrant_path or tempfile.mkdtemp(prefix="jinaclip-qdrant-"))
    for name in ("texts", "images"):
        if client.collection_exists(name):
            client.delete_collection(name)
    storage = StorageContext.from_defaults(
        vector_store=QdrantVectorStore(client=client, collection_name="texts"),
        image_store=QdrantVectorStore(client=client, collection_name="images"),
    )
    images = sorted(data.glob("*.png"))
    documents = SimpleDirectoryReader(str(data), required_exts=[".txt"]).load_data()
    documents += [ImageDocument(image_path=str(path), metadata={"file_path": str(path)}) for path in images]
    index = MultiModalVectorStoreIndex.from_documents(
        documents, storage_context=storage, embed_model=embed_model, image_embed_model=embed_model
    )
    retriever = index.as_retriever(similarity_top_k=k, image_similarity_top_k=k)
    image_query = image_query or images[0]
    return {
        "index": index,
        "client": client,
        "images_for_text": retriever.text_to_image_retrieve(query),
        "images_for_image": retriever.image_to_image_retrieve(str(image_query)),
        "texts_for_text": retriever.text_retrieve(query),
        "mixed_for_text": LlamaIndexCrossModalRetriever(index, k=k).retrieve(query),
    }


def describe(node) -> str:
    path = getattr(node.node, "image_path", None)
    return path or node.node.get_content()[:60]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=DEFAULT_MODEL, help="hub name or checkpoint folder")
    parser.add_argument("--dimensions", type=int, help="Matryoshka truncation (e.g. 256)")
    parser.add_argument("--qdrant-path", help="folder for qdrant-client's local mode (default: a new temporary one)")
    parser.add_argument("--query", default="a red circle")
    parser.add_argument("--image-query", type=Path, help="image to search with (default: the first image)")
    args = parser.parse_args()
    result = run(
        args.model, DATA, args.qdrant_path, dimensions=args.dimensions, query=args.query, image_query=args.image_query
    )
    for title, key in (
        (f"text-to-image for {args.query!r}", "images_for_text"),
        ("image-to-image for the query image", "images_for_image"),
        (f"text-to-text for {args.query!r}", "texts_for_text"),
        (f"texts and images for {args.query!r} (cross-modal retriever)", "mixed_for_text"),
    ):
        print(f"{title}:")
        for hit in result[key]:
            print(f"  {hit.score:.3f}  {describe(hit)}")


if __name__ == "__main__":
    main()
