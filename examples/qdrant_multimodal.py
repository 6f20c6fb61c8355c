"""Index a folder of images and texts into the embedded Qdrant engine, then search it.

The store is a folder on disk (qdrant-edge-py: Qdrant's engine in-process, no server). The store
follows the folder: indexing it again skips the unchanged files. Then one sentence and one image
are searched, each over both modalities, in one ranking (the fused score, then the cosine).

    python examples/qdrant_multimodal.py                              # tiny offline test checkpoint
    python examples/qdrant_multimodal.py --model jinaai/jina-clip-v2 --store ~/my-store photos/ notes/
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from jinaclip_integrations import QdrantVectorizer, settings, shared_engine

HERE = Path(__file__).parent
#: the model setting ($JINACLIP_MODEL or the config file) if there is one, else the tiny offline test checkpoint
DEFAULT_MODEL = settings.configured("model") or str(HERE.parent / "tests" / "fixtures" / "jina-clip-v2-tiny")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="*", type=Path, default=[HERE / "data"], help="files and folders to index")
    parser.add_argument("--model", default=DEFAULT_MODEL, help="hub name or checkpoint folder")
    parser.add_argument("--device", help="torch device (default: CUDA if available, else CPU)")
    parser.add_argument("--store", type=Path, help="store folder (default: a temporary one)")
    parser.add_argument("--query", default="a red circle", help="the sentence to search with")
    parser.add_argument("--image", type=Path, default=HERE / "data" / "red_circle.png", help="the image to search with")
    args = parser.parse_args()

    engine = shared_engine(args.model, device=args.device)
    with tempfile.TemporaryDirectory() as tmp, QdrantVectorizer(args.store or tmp, engine=engine) as store:
        for run in ("first", "second"):
            report = store.sync(args.paths)
            files = report.files
            print(f"{run} index run: {files['new']} new files, {files['unchanged']} unchanged, {report.added} points "
                  f"added, {len(report.failed)} failed")  # fmt: skip
        layout = store.layout
        short = f" + short {layout.short_dim}-d" if layout.short_dim else ""
        print(f"{store.count()} points of {layout.model}: full {layout.dim}-d{short} vectors, preset {layout.preset}")
        for label, hits in (
            (f"text {args.query!r}", store.search_text(args.query, limit=3)),
            (f"image {args.image.name}", store.search_image(args.image, limit=3)),
        ):
            print(f"\nsearch by {label}:")
            for hit in hits:
                print(f"  {hit.score:6.3f}  {hit.cosine:6.3f}  {hit.modality:5}  {Path(hit.source).name}")


if __name__ == "__main__":
    main()
