"""Engine speed and memory, as ratios against a peer measured in the same run.

Builds a random model from a jina-clip config (default: the full-size jina-clip-v2 config in
benchmarks/configs/jina-clip-v2) and reports, on one device and dtype:

- text tokens/s for short texts (5-30 tokens) and 512-token texts, through the engine's own
  length-sorted batching, against transformers' ``XLMRobertaModel`` with the same sizes (SDPA
  attention, random weights) fed the same padded batches: the ratio is ours / peer;
- images/s at the config's image size, with model FLOPs utilization (MFU) against the
  device's peak measured in this run with a large matmul in the same dtype;
- peak memory per workload (CUDA: ``max_memory_allocated``; CPU: the process's peak RSS).

``--smoke`` runs the same code on the tiny test checkpoint's config in seconds (CI runs it).

    python benchmarks/bench_engine.py                       # full size, CUDA if available
    python benchmarks/bench_engine.py --device cpu --write  # and append to RESULTS.md
"""

from __future__ import annotations

import argparse
import datetime
import platform
import resource
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from jinaclip_integrations.engine.batching import length_sorted_batches  # noqa: E402
from jinaclip_integrations.engine.config import JinaCLIPConfig, VisionConfig  # noqa: E402
from jinaclip_integrations.engine.engine import (  # noqa: E402
    ACCELERATOR_BATCH_OVERHEAD_TOKENS,
    BATCH_OVERHEAD_TOKENS,
    DEFAULT_MAX_BATCH_TOKENS,
    resolve_device,
    resolve_dtype,
)
from jinaclip_integrations.engine.weights import build_model, load_config  # noqa: E402

FULL_CONFIG = ROOT / "benchmarks" / "configs" / "jina-clip-v2"
SMOKE_CONFIG = ROOT / "tests" / "fixtures" / "jina-clip-v2-tiny"


@dataclass
class Workload:
    short_texts: int
    long_texts: int
    images: int
    batch_size: int
    repeats: int


WORKLOADS = {
    "cuda": Workload(short_texts=4096, long_texts=256, images=256, batch_size=128, repeats=5),
    "cpu": Workload(short_texts=64, long_texts=4, images=2, batch_size=32, repeats=2),
    "smoke": Workload(short_texts=16, long_texts=2, images=2, batch_size=8, repeats=1),
}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device, repeats: int) -> float:
    """Best wall time of ``repeats`` runs after one warm-up run."""
    fn()
    sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return min(times)


def peak_memory(device: torch.device) -> float:
    """GiB: CUDA's peak allocation since the last reset, else the process's peak RSS."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def matmul_peak(device: torch.device, dtype: torch.dtype) -> float:
    """Measured dense matmul throughput in TFLOP/s (random operands, never zeros)."""
    n = 8192 if device.type == "cuda" else 2048
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    seconds = timed(lambda: a @ b, device, 10 if device.type == "cuda" else 3)
    return 2 * n**3 / seconds / 1e12


def vision_flops(cfg: VisionConfig) -> float:
    """Model FLOPs per image (2 per multiply-add): patch embedding, the linear layers of every
    block (fused qkv, proj, SwiGLU w12 and w3) and the two attention matmuls."""
    n, d, h = cfg.grid_size**2 + 1, cfg.width, cfg.mlp_hidden
    per_layer = 2 * n * (4 * d * d + 3 * d * h) + 4 * n * n * d
    return cfg.layers * per_layer + 2 * cfg.grid_size**2 * 3 * cfg.patch_size**2 * d


def peer_text_model(cfg: JinaCLIPConfig, device: torch.device, dtype: torch.dtype):
    """transformers' XLMRobertaModel with the text tower's sizes, random weights, SDPA."""
    from transformers import XLMRobertaConfig, XLMRobertaModel
    from transformers.initialization import no_init_weights

    t = cfg.text
    config = XLMRobertaConfig(
        vocab_size=t.vocab_size, hidden_size=t.hidden_size, num_hidden_layers=t.num_hidden_layers,
        num_attention_heads=t.num_attention_heads, intermediate_size=t.intermediate_size,
        max_position_embeddings=t.max_position_embeddings + 2, type_vocab_size=t.type_vocab_size,
        layer_norm_eps=t.layer_norm_eps, pad_token_id=t.pad_token_id, attn_implementation="sdpa",
    )  # fmt: skip
    with torch.device(device), no_init_weights():
        model = XLMRobertaModel(config, add_pooling_layer=False).to(dtype)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.02)
    return model.eval()


def batch_overhead(device: torch.device) -> int:
    """The engine's cost of one more text batch on ``device``, in tokens."""
    return BATCH_OVERHEAD_TOKENS.get(device.type, ACCELERATOR_BATCH_OVERHEAD_TOKENS)


def text_batches(
    lengths: list[int], cfg: JinaCLIPConfig, batch_size: int, device: torch.device, overhead: int | None = None
):
    """Random token ids of the given lengths, padded into the engine's length-sorted batches
    (``overhead``: the cost of a batch in tokens, default the engine's for ``device``)."""
    pad = cfg.text.pad_token_id
    generator = torch.Generator().manual_seed(0)
    batches = []
    overhead = batch_overhead(device) if overhead is None else overhead
    for batch in length_sorted_batches(lengths, batch_size, DEFAULT_MAX_BATCH_TOKENS, overhead):
        width = max(lengths[i] for i in batch)
        ids = torch.full((len(batch), width), pad, dtype=torch.long)
        for row, i in enumerate(batch):
            ids[row, : lengths[i]] = torch.randint(3, cfg.text.vocab_size, (lengths[i],), generator=generator)
        batches.append(ids.to(device))
    return batches


def bench_text(name, lengths, cfg, ours, peer, work, device):
    batches = text_batches(lengths, cfg, work.batch_size, device)
    pad = cfg.text.pad_token_id
    tokens = sum(lengths)
    rows = {}
    for label, run in (
        ("ours", lambda ids: ours.text(ids, ids != pad)),
        ("peer", lambda ids: peer(input_ids=ids, attention_mask=(ids != pad).long()).last_hidden_state),
    ):
        reset_peak(device)
        with torch.inference_mode():
            seconds = timed(lambda run=run: [run(ids) for ids in batches], device, work.repeats)
        rows[label] = (tokens / seconds, peak_memory(device))
    ratio = rows["ours"][0] / rows["peer"][0]
    return (
        f"| text, {name} ({len(lengths)} texts, {tokens} tokens) | {rows['ours'][0]:,.0f} tokens/s | "
        f"{rows['peer'][0]:,.0f} tokens/s (XLMRobertaModel, SDPA) | **{ratio:.2f}x** | {rows['ours'][1]:.2f} GiB |"
    )


def bench_vision(cfg, ours, work, device, dtype, peak_tflops):
    size = cfg.vision.image_size
    pixels = torch.randn(min(work.images, work.batch_size), 3, size, size, device=device, dtype=dtype)
    batches = max(1, work.images // pixels.shape[0])
    reset_peak(device)
    with torch.inference_mode():
        seconds = timed(lambda: [ours.vision(pixels) for _ in range(batches)], device, work.repeats)
    images_per_s = batches * pixels.shape[0] / seconds
    tflops = images_per_s * vision_flops(cfg.vision) / 1e12
    return (
        f"| vision forward {size}x{size} (batch {pixels.shape[0]}, {vision_flops(cfg.vision) / 1e9:,.1f} GFLOP each) | "
        f"{images_per_s:,.2f} images/s | {peak_tflops:,.1f} TFLOP/s matmul peak | "
        f"**{tflops / peak_tflops:.0%} MFU** | {peak_memory(device):.2f} GiB |"
    )


def machine(device: torch.device) -> str:
    import transformers

    if device.type == "cuda":
        hw = torch.cuda.get_device_name(device)
    else:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), platform.processor())  # fmt: skip
        hw = f"{cpu}, {torch.get_num_threads()} threads"
    return (
        f"{hw}; torch {torch.__version__}, transformers {transformers.__version__}, Python {platform.python_version()}"
    )


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, help="checkpoint folder whose config.json to use (random weights)")
    parser.add_argument("--device", help="torch device (default: CUDA if available)")
    parser.add_argument("--dtype", help="float32 / bfloat16 / float16 (default: the engine's, resolve_dtype)")
    parser.add_argument("--smoke", action="store_true", help="tiny config and workload, for CI")
    parser.add_argument("--write", action="store_true", help="append the result to benchmarks/RESULTS.md")
    args = parser.parse_args(argv)

    device = resolve_device(args.device)
    dtype = resolve_dtype(args.dtype, device)
    folder = args.config or (SMOKE_CONFIG if args.smoke else FULL_CONFIG)
    work = WORKLOADS["smoke" if args.smoke else device.type]
    cfg = load_config(folder)
    torch.manual_seed(0)

    peak = matmul_peak(device, dtype)
    ours = build_model(cfg, device, dtype, random_init=True)
    peer = peer_text_model(cfg, device, dtype)
    generator = torch.Generator().manual_seed(1)
    short = torch.randint(5, 31, (work.short_texts,), generator=generator).tolist()
    long = [min(512, cfg.text.max_position_embeddings)] * work.long_texts
    rows = [
        bench_text("short 5-30 tokens", short, cfg, ours, peer, work, device),
        bench_text("512 tokens", long, cfg, ours, peer, work, device),
    ]
    del peer
    rows.append(bench_vision(cfg, ours, work, device, dtype, peak))

    command = "python benchmarks/bench_engine.py " + " ".join(argv if argv is not None else sys.argv[1:])
    report = "\n".join(
        [
            f"### {folder.name}, {device.type}, {str(dtype).removeprefix('torch.')} ({datetime.date.today()})",
            "",
            f"Machine: {machine(device)}. Command: `{command.strip()}`.",
            "",
            "| workload | this engine | peer / ceiling (same run) | ratio | peak memory* |",
            "|---|---|---|---|---|",
            *rows,
            "",
            "*CUDA: peak allocated by the workload; CPU: peak RSS of the whole process (both text models loaded).",
            "",
        ]
    )
    print(report)
    if args.write:
        append_results(report)
    return report


def append_results(report: str) -> None:
    """Append a run's ``report`` (a markdown section) to ``benchmarks/RESULTS.md``."""
    with open(ROOT / "benchmarks" / "RESULTS.md", "a", encoding="utf-8") as f:
        f.write("\n" + report)


if __name__ == "__main__":
    main()
