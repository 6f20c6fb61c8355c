"""Ingestion end to end: documents/s and chunks/s of `sync` against the model's own forward time.

Generates a folder of long texts (Markdown) and PDFs with text and embedded photos, then:

1. **end to end**: ``QdrantVectorizer.sync`` of the folder into a fresh embedded Qdrant store
   (walking, reading PDFs, chunking, embedding, writing, indexing), timed;
2. **forward only**: the same chunks' texts and the same images embedded by the engine
   directly (``encode_text`` / ``encode_image``, the batching ``sync`` uses), timed;

and reports documents/s, chunks/s and the ingestion overhead ``(end to end - forward) /
forward``: what parsing, chunking and store writes cost on top of the model. Both on the tiny
test checkpoint (where the model is nearly free, so the overhead is large) and on a random
full-size jina-clip-v2 (the target: overhead under 20% of the embedding time). The full-size
model uses the tiny checkpoint's tokenizer (no real one is available offline): about one
token per character, so a chunk covers fewer words than with the real tokenizer.

    python benchmarks/bench_ingest.py --smoke          # tiny model only, seconds (CI runs it)
    python benchmarks/bench_ingest.py --write          # tiny + full size on the CPU, to RESULTS.md
"""

from __future__ import annotations

import argparse
import datetime
import io
import platform
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from jinaclip_integrations.engine import JinaCLIPEngine  # noqa: E402
from jinaclip_integrations.ingest.chunking import ChunkOptions  # noqa: E402
from jinaclip_integrations.ingest.files import file_items  # noqa: E402
from jinaclip_integrations.ingest.sync import fit_chunking  # noqa: E402
from jinaclip_integrations.qdrant import QdrantVectorizer  # noqa: E402

TINY = ROOT / "tests" / "fixtures" / "jina-clip-v2-tiny"
FULL_CONFIG = ROOT / "benchmarks" / "configs" / "jina-clip-v2"
WORDS = [
    "river",
    "stone",
    "cloud",
    "paper",
    "window",
    "garden",
    "silver",
    "market",
    "candle",
    "orange",
    "bridge",
    "winter",
]


def make_folder(root: Path, texts: int, words: int, pdfs: int, pages: int) -> None:
    """``texts`` Markdown files of ``words`` words in sections, ``pdfs`` PDFs of ``pages`` pages
    with a paragraph and one photo each."""
    from PIL import Image
    from reportlab.lib.utils import ImageReader
    from reportlab.pdfgen import canvas

    rng = random.Random(0)
    root.mkdir(parents=True)
    for t in range(texts):
        sections, left = [], words
        while left > 0:
            n = min(left, rng.randint(80, 300))
            sections.append(f"## Section {len(sections)}\n\n" + " ".join(rng.choice(WORDS) for _ in range(n)) + ".")
            left -= n
        (root / f"notes-{t}.md").write_text(f"# Notes {t}\n\n" + "\n\n".join(sections), encoding="utf-8")
    pixels = np.random.default_rng(0)
    for p in range(pdfs):
        out = io.BytesIO()
        pdf = canvas.Canvas(out)
        for _ in range(pages):
            text = pdf.beginText(72, 720)
            for _ in range(30):
                text.textLine(" ".join(rng.choice(WORDS) for _ in range(12)))
            pdf.drawText(text)
            photo = Image.fromarray(pixels.integers(0, 256, (96, 128, 3), dtype=np.uint8))
            pdf.drawImage(ImageReader(photo), 72, 100, width=256, height=192)
            pdf.showPage()
        pdf.save()
        (root / f"report-{p}.pdf").write_bytes(out.getvalue())


def measure(engine, folder: Path, options: ChunkOptions) -> dict:
    """Time a sync of ``folder`` and the forward passes of the same chunks and images."""
    options = fit_chunking(options, engine.max_positions)
    files = sorted(folder.iterdir())
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        start = time.perf_counter()
        with QdrantVectorizer(Path(tmp), engine=engine, show_progress=False) as store:
            report = store.sync(folder, chunking=options)
            points = store.count()
        end_to_end = time.perf_counter() - start
    texts, images = [], []
    for path in files:
        items = file_items(str(path), path.read_bytes(), offsets=engine.token_offsets, options=options, size=0, mtime_ns=0)[1]  # fmt: skip
        texts += [item.content for item in items if item.modality == "text"]
        images += [item.content for item in items if item.modality == "image"]
    start = time.perf_counter()
    for batch in range(0, len(texts), 64):  # the batches sync embeds in (64 points, texts apart from images)
        engine.encode_text(texts[batch : batch + 64], max_length=options.max_tokens + 2, show_progress=False)
    if images:
        engine.encode_image(images, show_progress=False)
    forward = time.perf_counter() - start
    assert points == len(texts) + len(images) == report.added, (points, len(texts), len(images), report)
    return {
        "documents": len(files),
        "chunks": len(texts),
        "images": len(images),
        "end_to_end_s": end_to_end,
        "forward_s": forward,
        "docs_per_s": len(files) / end_to_end,
        "chunks_per_s": len(texts) / end_to_end,
        "overhead": (end_to_end - forward) / forward,
    }


def full_size_engine(device: str = "cpu", dtype: str = "float32") -> JinaCLIPEngine:
    """A random full-size jina-clip-v2 (std-0.02 init) with the tiny checkpoint's tokenizer."""
    import torch

    from jinaclip_integrations.engine.engine import resolve_dtype
    from jinaclip_integrations.engine.tokenizer import TextTokenizer
    from jinaclip_integrations.engine.weights import build_model, load_config

    torch.manual_seed(0)
    config = load_config(FULL_CONFIG)
    model = build_model(config, torch.device(device), resolve_dtype(dtype, torch.device(device)), random_init=True)
    return JinaCLIPEngine(model, TextTokenizer.from_folder(TINY, config.text.pad_token_id), name_or_path="jina-clip-v2-random")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="the tiny model on a small folder only")
    parser.add_argument("--write", action="store_true", help="append the table to benchmarks/RESULTS.md")
    args = parser.parse_args()
    runs = [("tiny", lambda: JinaCLIPEngine.from_pretrained(TINY, device="cpu", dtype="float32", show_progress=False),
             dict(texts=2, words=2000, pdfs=2, pages=2) if args.smoke else dict(texts=20, words=6000, pdfs=10, pages=5),
             ChunkOptions())]  # fmt: skip
    if not args.smoke:  # full size: ~4 s per 512-token chunk and ~7 s per image on 2 cores
        runs.append(("full-size random", full_size_engine, dict(texts=2, words=600, pdfs=2, pages=2), ChunkOptions()))
    rows = []
    for name, load, shape, options in runs:
        engine = load()
        with tempfile.TemporaryDirectory(prefix="bench-ingest-data-") as tmp:
            make_folder(Path(tmp) / "docs", **shape)
            engine.encode_text(["warm up"], show_progress=False)
            row = measure(engine, Path(tmp) / "docs", options)
        rows.append((name, row))
        print(f"{name}: {row}", flush=True)
    lines = [
        "| model | documents | text chunks | images | end to end | forward only | documents/s | chunks/s | overhead |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in rows:
        lines.append(
            f"| {name} | {r['documents']} | {r['chunks']} | {r['images']} | {r['end_to_end_s']:.1f} s | "
            f"{r['forward_s']:.1f} s | {r['docs_per_s']:.2f} | {r['chunks_per_s']:.2f} | {100 * r['overhead']:+.0f}% |"
        )
    table = "\n".join(lines)
    print(table)
    if args.write:
        import os

        from bench_engine import append_results

        heading = (
            f"## Ingestion end to end (`bench_ingest.py`), {datetime.date.today()}\n\n"
            f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, fp32 on the CPU; `sync` of a "
            "generated folder (Markdown texts in sections, PDFs of text pages with a photo each) into a fresh "
            "embedded Qdrant store, against the engine embedding the same chunks and images directly. Overhead = "
            "(end to end - forward) / forward: walking, reading PDFs, chunking, store writes and indexing.\n\n"
        )
        append_results(heading + table + "\n")


if __name__ == "__main__":
    main()
