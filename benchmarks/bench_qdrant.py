"""Qdrant stores: ingest and query throughput, recall@10 and bytes per point, per preset.

Runs the vectorizer's own store code (``jinaclip_integrations.qdrant``: the same point layout,
writes and Query-API plans as ``QdrantVectorizer``) on random-but-clustered unit vectors, without
the model, for each preset on two engines measured in the same run:

- ``edge``: the embedded Qdrant engine (qdrant-edge-py), on disk, with its HNSW indexes built;
- ``local``: qdrant-client's local mode in memory (brute-force search that ignores
  quantization: exact for the int8 and binary presets, exact within the prefetched candidates
  for the default one).

recall@10 is against exact full-vector search in numpy. Bytes per point: the store's files on
disk (edge), and the process's RSS growth from an empty store to the end of the run (both; it
includes allocator slack, so read it as an upper bound). Each (engine, preset) runs in its own
subprocess so memory figures do not mix.

    python benchmarks/bench_qdrant.py                 # 100k points x 1024 dims
    python benchmarks/bench_qdrant.py --write         # and append to RESULTS.md
    python benchmarks/bench_qdrant.py --smoke         # 2k x 64, seconds (the tests run it)
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from jinaclip_integrations.qdrant import open_store  # noqa: E402
from jinaclip_integrations.store import PRESETS, CollectionLayout  # noqa: E402

K = 10


def clustered(n: int, dim: int, seed: int, isotropic: bool, centers: int = 1000) -> np.ndarray:
    """Unit vectors around ``centers`` random cluster centres (one fixed set for every seed).

    By default dimension ``i`` is scaled by ``(1 + i) ** -0.5``: a power-law spectrum whose
    leading dimensions carry the most variance, as Matryoshka training arranges embeddings.
    ``isotropic`` drops the scaling: every dimension alike, the worst case for a prefix vector.
    """
    middle = np.random.default_rng(12345).standard_normal((centers, dim), dtype=np.float32)
    rng = np.random.default_rng(seed)
    scale = np.ones(dim, np.float32) if isotropic else (1.0 + np.arange(dim, dtype=np.float32)) ** -0.5
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 10_000):
        stop = min(n, start + 10_000)
        noise = rng.standard_normal((stop - start, dim), dtype=np.float32) * 0.9
        out[start:stop] = (middle[rng.integers(0, centers, stop - start)] + noise) * scale
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def worker(engine: str, preset: str, n: int, dim: int, queries: int, batch: int, isotropic: bool) -> dict:
    """One (engine, preset) measurement; returns the figures as a dict."""
    data = clustered(n, dim, 0, isotropic)
    query = clustered(queries, dim, 1, isotropic)
    truth = np.argsort(-(query @ data.T), axis=1)[:, :K]
    short_dim = dim // 8 if preset == "default" else None
    layout = CollectionLayout("random", dim, short_dim, preset)  # type: ignore[arg-type]
    with tempfile.TemporaryDirectory(prefix="bench-qdrant-") as tmp:
        return measure(Path(tmp), engine, layout, data, query, truth, batch)


def measure(tmp: Path, engine: str, layout: CollectionLayout, data: np.ndarray, query: np.ndarray, truth: np.ndarray, batch: int) -> dict:  # fmt: skip
    """Fill a store at ``tmp`` (edge) or in memory (local), then query it."""
    n, ids = len(data), [str(uuid.UUID(int=i + 1)) for i in range(len(data))]
    base = rss_bytes()
    if engine == "edge":
        store = open_store(tmp, "store")
    else:
        from qdrant_client import QdrantClient

        store = open_store(QdrantClient(":memory:"), "bench")
    store.open(layout)
    start = time.perf_counter()
    for lo in range(0, n, batch):
        rows = range(lo, min(n, lo + batch))
        store.upsert([ids[i] for i in rows], data[lo : lo + batch], [{"modality": "image", "source": f"item-{i}"} for i in rows])  # fmt: skip
    written = time.perf_counter() - start
    store.optimize()
    indexed = time.perf_counter() - start
    position = {pid: i for i, pid in enumerate(ids)}
    hits = 0
    start = time.perf_counter()
    for q in range(len(query)):
        found = store.query(query[q], K, None)
        hits += len({position[h.id] for h in found} & set(truth[q].tolist()))
    searched = time.perf_counter() - start
    result = {
        "engine": engine,
        "preset": layout.preset,
        "ingest_per_s": n / indexed,
        "write_per_s": n / written,
        "index_s": indexed - written,
        "qps": len(query) / searched,
        "recall": hits / (len(query) * K),
        "rss_per_point": (rss_bytes() - base) / n,
    }
    store.close()  # flushed: the write-ahead log no longer holds the points twice
    result["disk_per_point"] = folder_bytes(tmp / "store") / n if engine == "edge" else None
    return result


def table(rows: list[dict], n: int, dim: int, queries: int, isotropic: bool) -> str:
    spread = "isotropic" if isotropic else "power-law spectrum (Matryoshka-like)"
    lines = [
        f"{n:,} clustered unit vectors x {dim} dims, {spread}, {queries} queries, top-{K}; "
        "recall against exact numpy search.",
        "",
        "| engine | preset | ingest (points/s, incl. index build) | index build | queries/s | recall@10 | RSS bytes/point | disk bytes/point |",  # noqa: E501
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        disk = f"{r['disk_per_point']:,.0f}" if r["disk_per_point"] is not None else "-"
        lines.append(
            f"| {r['engine']} | {r['preset']} | {r['ingest_per_s']:,.0f} | {r['index_s']:.1f} s | {r['qps']:,.1f} | "
            f"{r['recall']:.3f} | {r['rss_per_point']:,.0f} | {disk} |"
        )
    edge = {r["preset"]: r for r in rows if r["engine"] == "edge"}
    local = {r["preset"]: r for r in rows if r["engine"] == "local"}
    ratios = [f"{p}: {edge[p]['qps'] / local[p]['qps']:.1f}x" for p in PRESETS if p in edge and p in local]
    lines += ["", "Query throughput, embedded engine over local mode: " + ", ".join(ratios) + "."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--batch", type=int, default=256, help="points per upsert")
    parser.add_argument("--isotropic", action="store_true", help="no Matryoshka-like spectrum (worst case)")
    parser.add_argument("--smoke", action="store_true", help="2,000 x 64, 20 queries")
    parser.add_argument("--write", action="store_true", help="append the result to benchmarks/RESULTS.md")
    parser.add_argument("--worker", nargs=2, metavar=("ENGINE", "PRESET"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.smoke:
        args.n, args.dim, args.queries = 2000, 64, 20
    if args.worker:
        print(json.dumps(worker(*args.worker, args.n, args.dim, args.queries, args.batch, args.isotropic)))
        return ""
    rows = []
    for engine in ("edge", "local"):
        for preset in PRESETS:
            cmd = [sys.executable, __file__, "--worker", engine, preset, "--n", str(args.n), "--dim", str(args.dim),
                   "--queries", str(args.queries), "--batch", str(args.batch)] + ["--isotropic"] * args.isotropic  # fmt: skip
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode:
                sys.exit(f"{engine}/{preset} failed:\n{done.stderr}")
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(f"{engine}/{preset}: {rows[-1]}", file=sys.stderr)
    report = table(rows, args.n, args.dim, args.queries, args.isotropic)
    print(report)
    if args.write:
        from importlib.metadata import version

        header = (
            f"\n### bench_qdrant.py, {args.n:,} x {args.dim} ({datetime.date.today()})\n\n"
            f"Machine: {platform.processor() or platform.machine()}, {platform.system()}; qdrant-edge-py "
            f"{version('qdrant-edge-py')}, qdrant-client {version('qdrant-client')}, "
            f"Python {platform.python_version()}. Command: `python benchmarks/bench_qdrant.py --n {args.n} --dim {args.dim} --queries {args.queries}{' --isotropic' * args.isotropic} --write`.\n\n"  # noqa: E501
        )
        with open(ROOT / "benchmarks" / "RESULTS.md", "a", encoding="utf-8") as f:
            f.write(header + report + "\n")
    return report


if __name__ == "__main__":
    main()
