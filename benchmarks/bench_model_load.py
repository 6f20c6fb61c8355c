"""Peak memory and time of loading a full-size checkpoint, against reading the file whole.

Writes a random full-size jina-clip-v2 checkpoint once (the published layout and dtype: bf16
safetensors with the LoRA tensors, by tests/checkpoints.py's writer) to a temporary folder, then
in a fresh process for each run:

- ``engine``: ``JinaCLIPEngine.from_pretrained(folder, dtype=...)`` (the model is built on the
  meta device, each tensor read, converted and cast into place);
- ``baseline``: ``safetensors.torch.load_file`` (the whole file in memory) plus the model built
  normally in float32 (initialized), cast to the dtype, then filled by ``load_state_dict``:
  the usual way, which holds the file and the model at once.

Each run reports its peak RSS (``ru_maxrss``), its RSS before loading (Python, torch and
transformers imported), the bytes of the loaded weights in their dtype, and the load time.

    python benchmarks/bench_model_load.py           # full size, a few minutes
    python benchmarks/bench_model_load.py --write   # and append to RESULTS.md
"""

from __future__ import annotations

import argparse
import datetime
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

FULL_CONFIG = ROOT / "benchmarks" / "configs" / "jina-clip-v2"
TINY = ROOT / "tests" / "fixtures" / "jina-clip-v2-tiny"
GIB = 2**30


def write(folder: Path, template: Path) -> None:
    """The random checkpoint in bf16, as published, with the tiny fixture's tokenizer files."""
    import torch

    from checkpoints import TOKENIZER_FILES, write_checkpoint

    write_checkpoint(folder, template, text={}, vision={}, dtype=torch.bfloat16)
    for name in TOKENIZER_FILES:
        if (TINY / name).is_file() and not (folder / name).is_file():
            shutil.copy(TINY / name, folder / name)


def rss_gib() -> float:
    with open("/proc/self/statm", encoding="utf-8") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / GIB


def child(mode: str, dtype: str, folder: Path) -> dict:
    """One load in this (fresh) process."""
    import torch
    import transformers  # noqa: F401  (imported before the baseline RSS, as loading imports it)

    from jinaclip_integrations import JinaCLIPEngine
    from jinaclip_integrations.engine.model import JinaCLIPModel, checkpoint_filter_fn
    from jinaclip_integrations.engine.weights import load_config

    before = rss_gib()
    start = time.perf_counter()
    if mode == "engine":
        model = JinaCLIPEngine.from_pretrained(folder, device="cpu", dtype=dtype, show_progress=False).model
    else:
        from safetensors.torch import load_file

        published = load_file(str(folder / "model.safetensors"))
        cfg = load_config(folder)
        model = JinaCLIPModel(cfg).to(getattr(torch, dtype))  # built normally: fp32, initialized, then cast
        model.load_state_dict(dict(checkpoint_filter_fn(published.pop, cfg)), strict=True)
        del published
    seconds = time.perf_counter() - start
    weights = sum(p.numel() * p.element_size() for p in model.parameters()) / GIB
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return {"before": before, "peak": peak, "weights": weights, "seconds": seconds}


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=FULL_CONFIG, help="checkpoint folder whose config.json to use")
    parser.add_argument("--write", action="store_true", help="append the result to benchmarks/RESULTS.md")
    parser.add_argument("--child", nargs=3, metavar=("MODE", "DTYPE", "FOLDER"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        mode, dtype, folder = args.child
        if mode == "write":
            write(Path(folder), args.config)
        else:
            print(json.dumps(child(mode, dtype, Path(folder))))
        return ""

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "checkpoint"
        started = time.perf_counter()
        subprocess.run([sys.executable, __file__, "--config", str(args.config), "--child", "write", "-", str(folder)], check=True)  # fmt: skip
        write_seconds = time.perf_counter() - started
        file_gib = (folder / "model.safetensors").stat().st_size / GIB
        for dtype in ("float32", "bfloat16"):
            for mode in ("engine", "baseline"):
                out = subprocess.run(
                    [sys.executable, __file__, "--child", mode, dtype, str(folder)],
                    capture_output=True, text=True, check=True,
                )  # fmt: skip
                r = json.loads(out.stdout.strip().splitlines()[-1])
                rows.append(
                    f"| {dtype} | {mode} | {r['weights']:.2f} GiB | {r['peak']:.2f} GiB | {r['before']:.2f} GiB | "
                    f"**{(r['peak'] - r['before']) / r['weights']:.2f}x** | {r['peak'] / r['weights']:.2f}x | {r['seconds']:.1f} s |"
                )
                print(rows[-1], flush=True)

    import torch
    from bench_engine import append_results, machine

    command = "python benchmarks/bench_model_load.py " + " ".join(argv if argv is not None else sys.argv[1:])
    report = "\n".join(
        [
            f"### bench_model_load: loading full-size jina-clip-v2 ({datetime.date.today()})",
            "",
            f"Machine: {machine(torch.device('cpu'))}. Command: `{command.strip()}`. Checkpoint: random, "
            f"bf16 safetensors as published ({file_gib:.2f} GiB, written in {write_seconds:.0f} s). "
            "Each row is a fresh process; RSS before = after importing torch and transformers.",
            "",
            "| dtype | loader | weights | peak RSS | RSS before | (peak - before) / weights | peak / weights | load time |",
            "|---|---|---|---|---|---|---|---|",
            *rows,
            "",
        ]
    )
    print(report)
    if args.write:
        append_results(report)
    return report


if __name__ == "__main__":
    main()
