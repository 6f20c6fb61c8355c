"""Ray scale-out: items/s of the Ray Data job (``jinaclip_integrations.ray``) against the
single-process path, on the same generated files, each run into a fresh embedded Qdrant store.

- ``single process``: ``QdrantVectorizer.sync`` (the engine loaded in the same process);
- ``ray, N CPU actors``: ``index_with_ray(..., store=folder)``, N embedding actors on the CPU, on
  a local Ray instance started once beforehand (its start is not timed); the driver writes the
  embedded store, as it does for every single-process store;
- ``ray, 1 GPU actor`` (with CUDA): the same with one actor on the GPU; the single-process row
  then runs on the GPU too.

End to end includes loading the model (in the process, or in the actors: process start, imports,
weights); "start-up" is the end-to-end time of the same job on one file (full runs only): the
fixed cost that a large job spreads over its items. (Subtracting it from a run's time would
overstate the rate of several actors, which start in parallel with work.) Generated data: ``--n`` small images (random colours,
16-64 px, PNG and JPEG) and half as many texts of 3-60 words.

    python benchmarks/bench_ray.py                 # 3,000 images + 1,500 texts, the tiny test model
    python benchmarks/bench_ray.py --model jinaai/jina-clip-v2 --write
    python benchmarks/bench_ray.py --smoke         # 60 images + 30 texts (the tests run it)
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TINY = ROOT / "tests" / "fixtures" / "jina-clip-v2-tiny"
SECTION = "## Ray scale-out (bench_ray.py)"


def generate(root: Path, images: int, seed: int = 0) -> int:
    """``images`` small images and half as many texts under ``root``; returns the item count."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for i in range(images):
        side = int(rng.integers(16, 65))
        pixels = np.clip(rng.integers(0, 256, 3) + rng.integers(-20, 21, (side, side, 3)), 0, 255).astype(np.uint8)
        path = root / f"photos/{i % 16}/img{i}.{'png' if i % 2 else 'jpg'}"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(path)
    for i in range(images // 2):
        path = root / f"notes/note{i}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"note {i}: " + " ".join(f"word{j}" for j in rng.integers(0, 500, int(rng.integers(3, 60)))))
    return images + images // 2


def single(model: str, data: Path, store: Path) -> tuple[float, float]:
    """``(model load s, sync s)`` of the single-process path."""
    from jinaclip_integrations import JinaCLIPEngine, QdrantVectorizer

    start = time.perf_counter()
    engine = JinaCLIPEngine.from_pretrained(model, show_progress=False)
    loaded = time.perf_counter()
    with QdrantVectorizer(store, engine=engine, show_progress=False) as vectorizer:
        report = vectorizer.sync([data])
    assert report.added and not report.failed, report
    return loaded - start, time.perf_counter() - loaded


def with_ray(model: str, data: Path | list[Path], store: Path, workers: int, gpus: float) -> float:
    """Seconds of one Ray job, end to end."""
    from jinaclip_integrations.ray import index_with_ray

    start = time.perf_counter()
    report = index_with_ray(
        data if isinstance(data, list) else [data], store=store, model_name=model, device=None if gpus else "cpu",
        workers=workers, gpus_per_worker=gpus, show_progress=False,
    )  # fmt: skip
    assert report.added == report.stored and report.files["new"] and not report.failed, report
    return time.perf_counter() - start


def machine() -> str:
    import ray
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        names = re.findall(r"model name\s*:\s*(.+)", Path("/proc/cpuinfo").read_text())
        cpu = names[0].strip() if names else cpu
    except OSError:
        pass
    gpu = f", {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""
    return (f"{cpu}, {os.cpu_count()} threads{gpu}, {platform.system()}; torch {torch.__version__}, "
            f"ray {ray.__version__}, Python {platform.python_version()}")  # fmt: skip


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(TINY), help="hub name or checkpoint folder (the tiny test model)")
    parser.add_argument("--n", type=int, default=3000, help="images (plus half as many texts)")
    parser.add_argument("--smoke", action="store_true", help="60 images + 30 texts, no start-up runs")
    parser.add_argument("--write", action="store_true", help=f"replace the section '{SECTION}' of RESULTS.md")
    args = parser.parse_args(argv)
    if args.smoke:
        args.n = 60
    import ray
    import torch

    cuda = torch.cuda.is_available()
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, logging_level="WARNING")
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-ray-") as tmp:
        tmp_path = Path(tmp)
        data = tmp_path / "data"
        items = generate(data, args.n)
        one = next((data / "photos").rglob("*.png"))
        load, run = single(args.model, data, tmp_path / "single")
        rows.append(("single process" + (" (GPU)" if cuda else ""), items / (load + run), load))
        configs = [("ray, 1 CPU actor", 1, 0.0), ("ray, 2 CPU actors", 2, 0.0)] + [("ray, 1 GPU actor", 1, 1.0)] * cuda
        for i, (name, workers, gpus) in enumerate(configs):
            total = with_ray(args.model, data, tmp_path / f"ray{i}", workers, gpus)
            startup = None if args.smoke else with_ray(args.model, [one], tmp_path / f"one{i}", workers, gpus)
            rows.append((name, items / total, startup))
            print(f"{name}: {rows[-1]}", file=sys.stderr)
    ray.shutdown()
    base = rows[0]
    lines = [
        f"{items:,} items ({args.n:,} images of 16-64 px, {args.n // 2:,} texts), model `{Path(args.model).name}`, "
        "into fresh embedded Qdrant stores.",
        "",
        "| run | items/s end to end | vs single process | start-up (a one-file job) |",
        "|---|---|---|---|",
    ]
    for name, e2e, startup in rows:
        shown = "-" if startup is None else f"{startup:.1f} s"
        lines.append(f"| {name} | {e2e:,.0f} | **{e2e / base[1]:.2f}x** | {shown} |")
    report = "\n".join(lines)
    print(report)
    if args.write:
        command = "python benchmarks/bench_ray.py" + (f" --model {args.model}" if args.model != str(TINY) else "")
        section = (
            f"{SECTION}\n\nThe Ray Data job against the single-process path on the same files (see the script's "
            "docstring). On a CPU-only Ray, Ray Data fuses the read and decode stages into the embedding "
            "actors (they ask for the same resources), so each actor reads, decodes and embeds; with GPUs the CPU "
            f"stages run as separate tasks.\n\n### {datetime.date.today()}\n\nMachine: {machine()}. Command: "
            f"`{command} --n {args.n} --write`.\n\n{report}\n"
        )
        results = ROOT / "benchmarks" / "RESULTS.md"
        text = results.read_text(encoding="utf-8")
        pattern = re.compile(rf"^{re.escape(SECTION)}\n.*?(?=^## |\Z)", re.S | re.M)
        text = pattern.sub(lambda _: section + "\n", text) if pattern.search(text) else text.rstrip("\n") + "\n\n" + section  # fmt: skip
        results.write_text(text, encoding="utf-8")
    return report


if __name__ == "__main__":
    main()
