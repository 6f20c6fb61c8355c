"""LangChain + Qdrant: texts and images in one collection, searched across modalities.

The texts (``*.txt``) and images (``*.png``) of ``examples/data`` go into one
``langchain_qdrant`` collection on disk in qdrant-client's local mode (a brute-force Python
stand-in for Qdrant, not the embedded engine; ``url=`` for a server). Then a text query
retrieves images, an image query retrieves texts, and the cross-modal retriever merges both.

    python examples/langchain_multimodal.py                                   # tiny offline test model
    python examples/langchain_multimodal.py --model jinaai/jina-clip-v2 --dimensions 256
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from jinaclip_integrations import settings
from jinaclip_integrations.langchain import (
    JinaCLIPEmbeddings,
    LangChainCrossModalRetriever,
    MultimodalQdrantVectorStore,
)

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
    """Build the collection and run the three searches; returns the store and the hits."""
    embeddings = JinaCLIPEmbeddings(model_name=model, dimensions=dimensions, query_task=query_task)
    texts = sorted(data.glob("*.txt"))
    images = sorted(data.glob("*.png"))
    store = MultimodalQdrantVectorStore.from_texts(
        [path.read_text(encoding="utf-8").strip() for path in texts],
        embeddings,
        metadatas=[{"source": str(path), "modality": "text"} for path in texts],
        path=qdrant_path or tempfile.mkdtemp(prefix="jinaclip-qdrant-"),
        collection_name="jinaclip-langchain",
        force_recreate=True,
    )
    store.add_images([str(path) for path in images])
    image_query = image_query or images[0]
    return {
        "store": store,
        "images_for_text": store.similarity_search_with_score(query, k=k, filter=store.modality_filter("image")),
        "texts_for_image": store.similarity_search_by_image_with_score(
            str(image_query), k=k, filter=store.modality_filter("text")
        ),
        "mixed_for_text": LangChainCrossModalRetriever(vectorstore=store, k=k).invoke(query),
    }


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
    print(f"images for the text {args.query!r}:")
    for doc, score in result["images_for_text"]:
        print(f"  {score:.3f}  {doc.metadata['source']}")
    print(f"texts for the image {str(args.image_query or sorted(DATA.glob('*.png'))[0])!r}:")
    for doc, score in result["texts_for_image"]:
        print(f"  {score:.3f}  {doc.page_content[:70]}")
    print(f"texts and images for {args.query!r} (cross-modal retriever):")
    for doc in result["mixed_for_text"]:
        print(f"  {doc.metadata['fused_score']:.3f}  {doc.metadata['modality']:<5}  {doc.page_content[:60]}")


if __name__ == "__main__":
    main()
