"""Image decoding: a 12-megapixel JPEG decoded in full against decoded at a reduced scale.

For a model reading 512x512, the engine decodes a JPEG whose shortest side is at least four
times 512 at 1/2, 1/4 or 1/8 scale (``engine.inputs.draft_decoding``: the JPEG decoder scales
the DCT, so most pixels are never made). This measures, on a synthetic photo (smooth color
fields, soft-edged discs, sensor noise; JPEG quality 90):

- decode + resize + crop time per image, full against reduced scale, on one thread and on the
  engine's decoding pool (``engine.batching.prepared_batches``, every core);
- how far the reduced-scale crop is from the full one (mean and largest absolute difference,
  in 0..255 levels).

    python benchmarks/bench_decode.py             # 4000x3000 and 640x512 photos
    python benchmarks/bench_decode.py --write     # and append to RESULTS.md
"""

from __future__ import annotations

import argparse
import datetime
import io
import os
import platform
import struct
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def photo_jpeg(width: int, height: int, seed: int = 0, quality: int = 90) -> bytes:
    """A photo-like JPEG: smooth color fields, overlapping discs with soft edges, sensor noise."""
    rng = np.random.default_rng(seed)
    base = Image.fromarray(rng.integers(0, 256, (max(2, height // 64), max(2, width // 64), 3), dtype=np.uint8))
    img = base.resize((width, height), Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(img)
    for _ in range(40):
        x, y, r = rng.integers(0, width), rng.integers(0, height), rng.integers(width // 60 + 1, width // 6 + 2)
        draw.ellipse((x - r, y - r, x + r, y + r), fill=tuple(int(c) for c in rng.integers(0, 256, 3)))
    noisy = np.asarray(img.filter(ImageFilter.GaussianBlur(2)), dtype=np.float32) + rng.normal(0, 6, (height, width, 3))
    out = io.BytesIO()
    Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)).save(out, "JPEG", quality=quality)
    return out.getvalue()


def with_comment(jpeg: bytes, text: str) -> bytes:
    """The same JPEG with a comment segment after its start marker: other bytes (another
    content hash, so an index stores it as a new image), the same pixels and decoding work."""
    payload = text.encode()
    return jpeg[:2] + b"\xff\xfe" + struct.pack(">H", len(payload) + 2) + payload + jpeg[2:]


def crops(preprocessor, data: list[bytes], reduced: bool, threads: bool) -> tuple[float, list[np.ndarray]]:
    """Seconds to decode, resize and crop every image (reduced scale or full), and the crops."""
    from jinaclip_integrations.engine import inputs
    from jinaclip_integrations.engine.batching import prepared_batches

    def one(index: int, item: bytes) -> np.ndarray:
        img = inputs.load_image(item, index, None, min_side=preprocessor.size if reduced else None)
        return np.asarray(preprocessor.resize_and_crop(img), dtype=np.float32)

    start = time.perf_counter()
    if threads:
        out = [crop for batch in prepared_batches(one, data, batch_size=len(data)) for crop in batch]
    else:
        out = [one(i, item) for i, item in enumerate(data)]
    return time.perf_counter() - start, out


def measure(size: int, width: int, height: int, count: int) -> dict:
    """Per-image decode times (one thread, and the pool) full against reduced, and the crops'
    difference, for ``count`` copies (distinct bytes) of one ``width`` x ``height`` photo."""
    from jinaclip_integrations.engine.config import PreprocessConfig
    from jinaclip_integrations.engine.preprocess import ImagePreprocessor

    preprocessor = ImagePreprocessor(PreprocessConfig(size=size))
    base = photo_jpeg(width, height)
    data = [with_comment(base, f"copy {i}") for i in range(count)]
    row: dict = {"image": f"{width}x{height}", "size": size, "count": count, "jpeg_bytes": len(base)}
    for threads in (False, True):
        key = "pool" if threads else "one_thread"
        full_s, full = crops(preprocessor, data, reduced=False, threads=threads)
        reduced_s, reduced = crops(preprocessor, data, reduced=True, threads=threads)
        row[f"{key}_full_ms"] = 1000 * full_s / count
        row[f"{key}_reduced_ms"] = 1000 * reduced_s / count
    diff = np.abs(full[0] - reduced[0])
    row["mean_abs_diff"], row["max_abs_diff"] = float(diff.mean()), float(diff.max())
    return row


def table(rows: list[dict]) -> str:
    lines = [
        "| photo | model input | full decode (1 thread) | reduced scale (1 thread) | speed-up | full (pool) | reduced (pool) | crop difference, mean / max (of 255) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['image']} JPEG ({r['jpeg_bytes'] / 1e6:.1f} MB) | {r['size']}x{r['size']} | "
            f"{r['one_thread_full_ms']:.1f} ms | {r['one_thread_reduced_ms']:.1f} ms | "
            f"**{r['one_thread_full_ms'] / r['one_thread_reduced_ms']:.1f}x** | {r['pool_full_ms']:.1f} ms | "
            f"{r['pool_reduced_ms']:.1f} ms | {r['mean_abs_diff']:.2f} / {r['max_abs_diff']:.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=8, help="images per measurement")
    parser.add_argument("--write", action="store_true", help="append the result to benchmarks/RESULTS.md")
    args = parser.parse_args(argv)
    rows = [measure(512, 4000, 3000, args.count), measure(512, 640, 512, args.count)]
    report = table(rows)
    print(report)
    if args.write:
        from bench_engine import append_results

        heading = (
            f"## Image decoding at reduced scale (`bench_decode.py`), {datetime.date.today()}\n\n"
            f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs (shared), Pillow "
            f"{Image.__version__}. Per image: decode, resize and 512x512 crop, mean of {args.count} copies "
            "(distinct bytes); 'pool': the engine's decoding threads. Reduced scale applies only to JPEGs at "
            "least 4x the model's input on their shortest side, so the 640x512 photo is decoded in full both ways. "
            f"Command: `python benchmarks/bench_decode.py --write`.\n\n"
        )
        append_results(heading + report + "\n")
    return report


if __name__ == "__main__":
    main()
