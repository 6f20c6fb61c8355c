"""Text batching: padding wasted, and CPU tokens/s, greedy batches against length-tight ones.

The engine sorts a call's texts by length and cuts them into batches of at most ``batch_size``
texts and ``max_batch_tokens`` padded tokens. Before, batches were filled greedily from the
longest text on (:func:`greedy_batches`, kept here as the baseline); now
(``engine.batching.length_sorted_batches``) they are the cheapest consecutive cut, a batch
costing its padded tokens plus a fixed ``overhead`` in tokens (the engine's: 16 on the CPU).

Two length mixes, in calls of 64 texts (what ``jinaclip index`` hands the engine per call;
batch size 32, 16384 padded tokens at most):

- ``queries+passages``: half queries of 5-30 tokens, half passages of 50-2000 (log-uniform);
- ``index chunks``: files cut into 514-token chunks (512 and the 2 special tokens), each
  file's last chunk shorter (uniform), 1-8 chunks a file.

Padding fraction = padded tokens not belonging to any text / all padded tokens. The speed is
measured on the CPU with the full-width v2 text tower (1024 wide, 16 heads) cut to 2 layers
(every layer costs the same, so the ratio holds for 24), fp32, one thread (this machine is
shared), on one call of the first mix.

    python benchmarks/bench_text_batches.py             # ~1 minute
    python benchmarks/bench_text_batches.py --write     # and append to RESULTS.md
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import math
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from jinaclip_integrations.engine.batching import length_sorted_batches  # noqa: E402
from jinaclip_integrations.engine.engine import (  # noqa: E402
    ACCELERATOR_BATCH_OVERHEAD_TOKENS,
    BATCH_OVERHEAD_TOKENS,
    DEFAULT_BATCH_SIZE,
    DEFAULT_MAX_BATCH_TOKENS,
)

CALL = 64  # texts per engine call in `jinaclip index`


def greedy_batches(lengths: Sequence[int], batch_size: int, max_tokens: int) -> list[list[int]]:
    """The engine's plan before length-tight batches: sorted longest first, each batch filled
    until ``batch_size`` texts or ``max_tokens`` padded tokens (the baseline)."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:
        if current and (len(current) >= batch_size or (len(current) + 1) * lengths[current[0]] > max_tokens):
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches


def text_mix(queries: int, passages: int, seed: int = 0) -> list[int]:
    """Token counts: queries uniform in 5..30, passages log-uniform in 50..2000, shuffled."""
    rng = np.random.default_rng(seed)
    lengths = [*rng.integers(5, 31, queries).tolist(), *np.exp(rng.uniform(math.log(50), math.log(2000), passages)).astype(int).tolist()]  # fmt: skip
    rng.shuffle(lengths)
    return lengths


def index_chunks(texts: int, seed: int = 0) -> list[int]:
    """Token counts of files chunked at 514 tokens: 1-8 chunks a file, the last one shorter."""
    rng = np.random.default_rng(seed)
    lengths: list[int] = []
    while len(lengths) < texts:
        lengths += [514] * int(rng.integers(0, 8)) + [int(rng.integers(20, 515))]
    return lengths[:texts]


def padding_fraction(lengths: Sequence[int], batches: list[list[int]]) -> float:
    """Padded tokens that belong to no text, over all padded tokens."""
    padded = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    return 1 - sum(lengths) / padded


def plans(overhead: int) -> dict:
    return {
        "greedy (before)": lambda lengths: greedy_batches(lengths, DEFAULT_BATCH_SIZE, DEFAULT_MAX_BATCH_TOKENS),
        f"tight, overhead {overhead} (now, CPU)": lambda lengths: length_sorted_batches(
            lengths, DEFAULT_BATCH_SIZE, DEFAULT_MAX_BATCH_TOKENS, overhead
        ),
    }


def per_call(lengths: list[int], plan) -> list[list[list[int]]]:
    """The plan of each call of :data:`CALL` texts."""
    return [plan(lengths[start : start + CALL]) for start in range(0, len(lengths), CALL)]


def padding_rows(overhead: int) -> list[str]:
    """Padding per mix and plan, the plan of accelerators (a larger overhead) included."""
    rows = []
    every = {
        **plans(overhead),
        f"tight, overhead {ACCELERATOR_BATCH_OVERHEAD_TOKENS} (now, GPU)": lambda lengths: length_sorted_batches(
            lengths, DEFAULT_BATCH_SIZE, DEFAULT_MAX_BATCH_TOKENS, ACCELERATOR_BATCH_OVERHEAD_TOKENS
        ),
    }
    for mix, lengths in (("queries+passages", text_mix(512, 512)), ("index chunks", index_chunks(1024))):
        cells = []
        for name, plan in every.items():
            calls = per_call(lengths, plan)
            padded = sum(len(b) * max(lengths[start * CALL + i] for i in b) for start, call in enumerate(calls) for b in call)  # fmt: skip
            cells.append(f"{name}: **{1 - sum(lengths) / padded:.1%}** in {sum(map(len, calls))} batches")
        rows.append(f"| {mix} | {len(lengths)} | {' / '.join(cells)} |")
    return rows


def cpu_speed(overhead: int) -> list[str]:
    """Tokens/s of one call of the first mix through each plan (ratio against the greedy plan)."""
    import torch

    from jinaclip_integrations.engine.weights import build_model, load_config

    torch.set_num_threads(1)
    torch.manual_seed(0)
    cfg = load_config(ROOT / "benchmarks" / "configs" / "jina-clip-v2")
    cfg = dataclasses.replace(cfg, text=dataclasses.replace(cfg.text, num_hidden_layers=2))
    model = build_model(cfg, torch.device("cpu"), torch.float32, random_init=True)
    lengths = text_mix(CALL // 2, CALL // 2, seed=1)
    pad = cfg.text.pad_token_id
    ids = [torch.randint(3, 1000, (n,)) for n in lengths]
    rows, base = [], None
    with torch.inference_mode():
        model.text(ids[0][None], ids[0][None] != pad)  # warm-up
        for name, plan in plans(overhead).items():
            batches = plan(lengths)
            start = time.perf_counter()
            for batch in batches:
                width = max(lengths[i] for i in batch)
                x = torch.full((len(batch), width), pad)
                for row, i in enumerate(batch):
                    x[row, : lengths[i]] = ids[i]
                model.text(x, x != pad)
            seconds = time.perf_counter() - start
            speed = sum(lengths) / seconds
            base = base or speed
            rows.append(
                f"| {name} | {len(batches)} | {padding_fraction(lengths, batches):.1%} | {seconds:.1f} s | "
                f"{speed:,.0f} tokens/s | **{speed / base:.2f}x** |"
            )
    return rows


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", action="store_true", help="append the result to benchmarks/RESULTS.md")
    args = parser.parse_args(argv)
    overhead = BATCH_OVERHEAD_TOKENS["cpu"]
    lines = [
        "| mix | texts (calls of 64) | padding fraction per plan |",
        "|---|---|---|",
        *padding_rows(overhead),
        "",
        f"One call of {CALL} texts (queries+passages, {sum(text_mix(CALL // 2, CALL // 2, seed=1)):,} tokens), "
        "full-width v2 text tower at 2 layers, fp32, 1 thread:",
        "",
        "| plan | batches | padding | time | speed | vs greedy |",
        "|---|---|---|---|---|---|",
        *cpu_speed(overhead),
    ]
    report = "\n".join(lines)
    print(report)
    if args.write:
        from bench_engine import append_results

        heading = (
            f"## Text batching: greedy against length-tight (`bench_text_batches.py`), {datetime.date.today()}\n\n"
            f"{platform.processor() or platform.machine()}, torch on 1 thread (shared 2-core machine). "
            "Command: `python benchmarks/bench_text_batches.py --write`.\n\n"
        )
        append_results(heading + report + "\n")
    return report


if __name__ == "__main__":
    main()
