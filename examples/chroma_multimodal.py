"""Chroma: texts and images in one embedded collection, searched across modalities.

The texts (``*.txt``) and images (``*.png``) of ``examples/data`` go into one Chroma collection
on disk (``chromadb.PersistentClient``, in-process, no server) whose embedding function is
jina-clip's and whose data loader reads images from their paths. Then one sentence and one image
are searched, each over both modalities. Items are added by path: in a ``--store`` that has them,
Chroma keeps the ones it has.

    python examples/chroma_multimodal.py                                   # tiny offline test model
    python examples/chroma_multimodal.py --model jinaai/jina-clip-v2 --dimensions 256 --store ./chroma
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

import chromadb
from chromadb.utils.data_loaders import ImageLoader

from jinaclip_integrations import settings
from jinaclip_integrations.chroma import JinaCLIPEmbeddingFunction

HERE = Path(__file__).parent
#: the model setting ($JINACLIP_MODEL or the config file) if there is one, else the tiny offline test checkpoint
DEFAULT_MODEL = settings.configured("model") or str(HERE.parent / "tests" / "fixtures" / "jina-clip-v2-tiny")
DATA = HERE / "data"


def run(
    store: str,
    model: str = DEFAULT_MODEL,
    data: Path = DATA,
    *,
    device: str | None = None,
    dimensions: int | None = None,
    query: str = "a red circle",
    image_query: Path = DATA / "red_circle.png",
    k: int = 4,
) -> dict[str, Any]:
    """Index ``data`` into the collection ``things`` of the Chroma store at ``store`` and search it;
    returns the collection and Chroma's results for the text and the image query."""
    function = JinaCLIPEmbeddingFunction(model, dimensions=dimensions, device=device)
    client = chromadb.PersistentClient(path=store)
    collection = client.get_or_create_collection("things", embedding_function=function, data_loader=ImageLoader())
    texts = sorted(data.glob("*.txt"))
    images = sorted(data.glob("*.png"))
    collection.add(
        ids=[str(p) for p in texts],
        documents=[p.read_text(encoding="utf-8").strip() for p in texts],
        metadatas=[{"source": p.name, "modality": "text"} for p in texts],
    )
    collection.add(
        ids=[str(p) for p in images],
        uris=[str(p) for p in images],
        metadatas=[{"source": p.name, "modality": "image"} for p in images],
    )
    include = ["metadatas", "distances"]
    return {
        "collection": collection,
        "for_text": collection.query(query_texts=[query], n_results=k, include=include),
        "for_image": collection.query(query_uris=[str(image_query)], n_results=k, include=include),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=DEFAULT_MODEL, help="hub name or checkpoint folder")
    parser.add_argument("--device", help="torch device (default: CUDA if available, else CPU)")
    parser.add_argument("--dimensions", type=int, help="Matryoshka size (default: the full one)")
    parser.add_argument("--data", type=Path, default=DATA, help="folder of .txt and .png files")
    parser.add_argument("--store", help="Chroma folder (default: a temporary one)")
    parser.add_argument("--query", default="a red circle", help="the sentence to search with")
    parser.add_argument("--image", type=Path, default=DATA / "red_circle.png", help="the image to search with")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        result = run(args.store or tmp, args.model, args.data, device=args.device, dimensions=args.dimensions,
                     query=args.query, image_query=args.image)  # fmt: skip
        collection = result["collection"]
        config = collection.configuration_json["embedding_function"]
        print(f"{collection.count()} items in {collection.name!r}, embedding function {config['name']}: {config['config']}")  # fmt: skip
        for label, found in ((f"text {args.query!r}", result["for_text"]), (f"image {args.image.name}", result["for_image"])):  # fmt: skip
            print(f"\nsearch by {label} (cosine distance):")
            for meta, distance in zip(found["metadatas"][0], found["distances"][0], strict=True):
                print(f"  {distance:6.3f}  {meta['modality']:5}  {meta['source']}")


if __name__ == "__main__":
    main()
