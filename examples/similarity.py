"""Embed texts and images into one vector space and print their cosine similarities.

Texts in three languages are embedded as search queries (the ``retrieval.query`` task when
the model has it), the images of ``examples/data`` as documents; each row of the printed
matrix is a text, each column an image, and the best image per text is marked.

    python examples/similarity.py                                # tiny offline test checkpoint
    python examples/similarity.py --model jinaai/jina-clip-v2    # the real model (hub)
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from jinaclip_integrations import JinaCLIPEngine, settings

HERE = Path(__file__).parent
#: the model setting ($JINACLIP_MODEL or the config file) if there is one, else the tiny offline test checkpoint
DEFAULT_MODEL = settings.configured("model") or str(HERE.parent / "tests" / "fixtures" / "jina-clip-v2-tiny")
IMAGES = sorted((HERE / "data").glob("*.png"))
TEXTS = [
    "a red circle",  # English
    "ein blaues Quadrat",  # German: a blue square
    "un triangle vert",  # French: a green triangle
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=DEFAULT_MODEL, help="hub name or checkpoint folder")
    parser.add_argument("--device", help="torch device (default: CUDA if available, else CPU)")
    parser.add_argument(
        "--dtype",
        help="float32 / bfloat16 / float16 / int8 (default: bf16 on CUDA and on CPUs with native bf16, else float32)",
    )
    parser.add_argument("--dimensions", type=int, help="Matryoshka truncation (e.g. 256)")
    parser.add_argument("--images", nargs="+", type=Path, default=IMAGES, help="image files")
    parser.add_argument("--texts", nargs="+", default=TEXTS, help="texts")
    args = parser.parse_args()

    engine = JinaCLIPEngine.from_pretrained(args.model, device=args.device, dtype=args.dtype)
    task = "retrieval.query" if "retrieval.query" in engine.tasks else None
    texts = engine.encode_text(args.texts, task=task, truncate_dim=args.dimensions)
    images = engine.encode_image(args.images, truncate_dim=args.dimensions)
    similarity = texts @ images.T

    print(f"{engine!r}, task={task}, dims={texts.shape[1]}")
    names = [path.stem for path in args.images]
    width = max(map(len, args.texts))
    print(" " * width + "".join(f"{name:>16}" for name in names))
    for text, row in zip(args.texts, similarity, strict=True):
        best = int(np.argmax(row))
        cells = "".join(f"{value:>15.3f}{'*' if i == best else ' '}" for i, value in enumerate(row))
        print(f"{text:<{width}}{cells}")


if __name__ == "__main__":
    main()
