"""ONNX Runtime against the torch engine on the CPU, side by side in one process.

Builds a random jina-clip-v2 (default: the full-size config in benchmarks/configs/jina-clip-v2,
std-0.02 init), exports both towers with :func:`~jinaclip_integrations.engine.onnx.export_onnx`,
and runs the same inputs through

- torch fp32: the engine's towers, fp32 eager (the engine's CPU default where the CPU has no
  native bf16);
- torch bf16: the same weights in bfloat16, eager (the faster setting on CPUs with native bf16,
  AVX512-BF16 or AMX);
- ORT fp32: the exported towers in ONNX Runtime's CPU provider, every graph optimization on;
- ORT int8 (``--int8``): the same after ``onnxruntime.quantization.quantize_dynamic`` (MatMul
  weights int8 per output channel, 7-bit as ORT advises on CPUs without VNNI, activations uint8
  per tensor),

for short texts (5-30 tokens), 512-token texts and images at the config's size, interleaved:
every round runs each backend once on each workload and each figure is the best of the rounds,
after a warm-up call of each backend on each workload's first batch. Torch and ONNX Runtime get
the same number of threads (``--threads``). Besides wall-clock throughput, each figure's ratio is
also given in process CPU time (best of the rounds too), which other processes on a shared
machine disturb far less than the wall clock (with ``--threads 1`` nothing spins waiting for a
busy core); the load average before and after is noted. Each backend's features are compared with torch fp32's for the same
inputs: the lowest cosine over the rows, raw and centred (torch's mean row subtracted from both:
random weights give every row a large shared component that hides differences in the rest).

``--smoke`` runs the same code on the tiny test checkpoint in seconds.

    python benchmarks/bench_onnx.py --threads 1   # full size, about 8 minutes on 2 shared cores
    python benchmarks/bench_onnx.py --write   # and append to RESULTS.md
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench_engine import append_results, machine, text_batches  # noqa: E402 - this folder's batches and machine line

from jinaclip_integrations.engine import JinaCLIPEngine  # noqa: E402
from jinaclip_integrations.engine.onnx import TEXT_FILE, VISION_FILE, export_onnx  # noqa: E402
from jinaclip_integrations.engine.tokenizer import TextTokenizer  # noqa: E402
from jinaclip_integrations.engine.weights import build_model, load_config  # noqa: E402

FULL_CONFIG = ROOT / "benchmarks" / "configs" / "jina-clip-v2"
TINY = ROOT / "tests" / "fixtures" / "jina-clip-v2-tiny"
#: (short texts, 512-token texts, images, text batch size, timed rounds)
WORKLOADS = {"full": (32, 2, 2, 32, 2), "smoke": (16, 2, 2, 8, 2)}


def rss_gib() -> float:
    """The process's resident memory now, GiB."""
    with open("/proc/self/status", encoding="utf-8") as f:
        kib = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    return kib / 2**20


def ort_session(path: Path, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def quantized(path: Path) -> Path:
    """``path`` with its MatMul weights quantized to int8 (dynamic quantization), beside it."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    out = path.with_suffix(".int8.onnx")
    quantize_dynamic(
        path, out, weight_type=QuantType.QInt8, per_channel=True, reduce_range=True,
        op_types_to_quantize=["MatMul"], use_external_data_format=True,
    )  # fmt: skip
    return out


def cosines(got: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
    """The lowest row cosine of ``got`` to ``ref``: raw, and with ``ref``'s mean row subtracted from both."""

    def lowest(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.min((a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))))

    mean = ref.mean(0, keepdims=True)
    return lowest(got, ref), lowest(got - mean, ref - mean)


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="the tiny checkpoint's config, for a quick check")
    parser.add_argument("--int8", action="store_true", help="also ONNX Runtime after int8 dynamic quantization")
    parser.add_argument("--threads", type=int, help="threads of torch and ONNX Runtime (default: torch's)")
    parser.add_argument("--write", action="store_true", help="append the result to benchmarks/RESULTS.md")
    args = parser.parse_args(argv)
    import onnxruntime

    short_n, long_n, images, batch_size, rounds = WORKLOADS["smoke" if args.smoke else "full"]
    folder = TINY if args.smoke else FULL_CONFIG
    cpu = torch.device("cpu")
    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    load = os.getloadavg()[0]
    cfg = load_config(folder)
    torch.manual_seed(0)
    started = time.perf_counter()
    engine = JinaCLIPEngine(
        build_model(cfg, cpu, torch.float32, random_init=True),
        TextTokenizer.from_folder(TINY, cfg.text.pad_token_id),
        name_or_path=str(folder),
    )
    bf16 = build_model(cfg, cpu, torch.bfloat16, random_init=True)  # the engine's bf16 layout
    bf16.load_state_dict(engine.model.state_dict())  # the same weights, rounded where bf16
    notes = [f"random {folder.name} built in {time.perf_counter() - started:.0f} s, RSS {rss_gib():.1f} GiB"]

    generator = torch.Generator().manual_seed(1)
    short = torch.randint(5, 31, (short_n,), generator=generator).tolist()
    long = [min(512, cfg.text.max_position_embeddings)] * long_n
    size = cfg.vision.image_size
    pixels = torch.randn(images, 3, size, size, generator=generator)
    pad = cfg.text.pad_token_id
    workloads = {
        f"text, short 5-30 tokens ({short_n} texts, {sum(short)} tokens)": (
            "text",
            text_batches(short, cfg, batch_size, cpu),
            sum(short),
            "tokens/s",
        ),
        f"text, 512 tokens ({long_n} texts, {sum(long)} tokens)": (
            "text",
            text_batches(long, cfg, batch_size, cpu),
            sum(long),
            "tokens/s",
        ),
        f"vision {size}x{size} (batch {images})": ("vision", [pixels], images, "images/s"),
    }

    with tempfile.TemporaryDirectory(prefix="bench_onnx_") as tmp:
        out = Path(tmp)
        started = time.perf_counter()
        written = export_onnx(engine, out, checkpoint=folder)
        sizes = {name: path.stat().st_size / 1e9 for name, path in written.items()}
        notes.append(
            f"export_onnx: {time.perf_counter() - started:.0f} s for both towers; text {sizes['text.onnx'] + sizes['text.onnx.data']:.2f} GB, "
            f"vision {sizes['vision.onnx'] + sizes['vision.onnx.data']:.2f} GB"
        )  # fmt: skip
        files = {"ORT fp32": (out / TEXT_FILE, out / VISION_FILE)}
        if args.int8:
            started = time.perf_counter()
            files["ORT int8"] = (quantized(out / TEXT_FILE), quantized(out / VISION_FILE))
            notes.append(f"quantize_dynamic: {time.perf_counter() - started:.0f} s for both towers")
        sessions = {}
        for name, (text, vision) in files.items():
            started = time.perf_counter()
            sessions[name] = {"text": ort_session(text, threads), "vision": ort_session(vision, threads)}
            notes.append(f"{name} sessions: {time.perf_counter() - started:.0f} s to create, RSS after {rss_gib():.1f} GiB")  # fmt: skip

        def torch_run(model, tower: str, batches: list[torch.Tensor]) -> list[np.ndarray]:
            dtype = model.compute_dtype
            with torch.inference_mode():
                if tower == "text":
                    return [model.text(ids, ids != pad).float().numpy() for ids in batches]
                return [model.vision(x.to(dtype)).float().numpy() for x in batches]

        def ort_run(session, tower: str, batches: list[torch.Tensor]) -> list[np.ndarray]:
            if tower == "text":
                return [session.run(None, {"input_ids": ids.numpy(), "attention_mask": (ids != pad).long().numpy()})[0] for ids in batches]  # fmt: skip
            return [session.run(None, {"pixels": x.numpy()})[0] for x in batches]

        backends: dict[str, Callable[[str, list[torch.Tensor]], list[np.ndarray]]] = {
            "torch fp32": lambda tower, batches: torch_run(engine.model, tower, batches),
            "torch bf16": lambda tower, batches: torch_run(bf16, tower, batches),
        }
        for name, towers in sessions.items():
            backends[name] = lambda tower, batches, towers=towers: ort_run(towers[tower], tower, batches)
        for tower, batches, _, _ in workloads.values():  # warm-up: each backend, each workload's first batch
            for run in backends.values():
                run(tower, [batches[0][:1]])
        best: dict[tuple[str, str], float] = {}
        cpu_best: dict[tuple[str, str], float] = {}
        outputs: dict[tuple[str, str], np.ndarray] = {}
        for _ in range(rounds):
            for workload, (tower, batches, _, _) in workloads.items():
                for backend, run in backends.items():
                    started, cpu_started = time.perf_counter(), time.process_time()
                    result = run(tower, batches)
                    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
                    best[backend, workload] = min(best.get((backend, workload), seconds), seconds)
                    cpu_best[backend, workload] = min(cpu_best.get((backend, workload), cpu_seconds), cpu_seconds)
                    outputs[backend, workload] = np.concatenate(result)
        notes.append(f"load average (1 min) {load:.1f} before building the model, {os.getloadavg()[0]:.1f} after the last round")  # fmt: skip

    names = list(backends)
    header = "| workload | " + " | ".join(names) + " |"
    rows = [header, "|---|" + "---|" * len(names)]
    for workload, (_, _, count, unit) in workloads.items():
        base, cpu_base = best[names[0], workload], cpu_best[names[0], workload]
        cells = [f"{count / base:,.2f} {unit}"]
        for backend in names[1:]:
            raw, centred = cosines(outputs[backend, workload], outputs[names[0], workload])
            seconds, cpu_seconds = best[backend, workload], cpu_best[backend, workload]
            versus = f"**{base / seconds:.2f}x** (CPU time {cpu_base / cpu_seconds:.2f}x)"
            if backend.startswith("ORT"):
                bf16_wall, bf16_cpu = best["torch bf16", workload], cpu_best["torch bf16", workload]
                versus += f"; vs bf16 **{bf16_wall / seconds:.2f}x** (CPU time {bf16_cpu / cpu_seconds:.2f}x)"
            cells.append(f"{count / seconds:,.2f} {unit}, {versus}; cosine {raw:.5f} / {centred:.4f}")
        rows.append(f"| {workload} | " + " | ".join(cells) + " |")

    command = "python benchmarks/bench_onnx.py " + " ".join(argv if argv is not None else sys.argv[1:])
    report = "\n".join(
        [
            f"### {folder.name}, cpu, torch eager fp32 and bf16 vs ONNX Runtime ({datetime.date.today()})",
            "",
            f"Machine: {machine(cpu)}, onnxruntime {onnxruntime.__version__} ({threads} threads). Command: `{command.strip()}`.",
            "",
            *rows,
            "",
            "Ratio: throughput over torch fp32's in the same run, by wall clock and by process CPU time (ORT: "
            "also over torch bf16's); cosine: lowest over the rows to torch fp32's features, raw / centred.",
            "",
            *(f"- {note}" for note in notes),
            "",
        ]
    )
    print(report)
    if args.write:
        append_results(report)
    return report


if __name__ == "__main__":
    main()
