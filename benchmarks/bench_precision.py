"""Speed and accuracy of each dtype against float32, measured in one process, settings interleaved.

Settings: ``float32`` (the reference's arithmetic), ``bfloat16`` (float32 LayerNorms, the
engine's), ``bfloat16, bf16 norms`` (the same without :func:`use_float32_norms`: what the
float32 norms buy) and ``int8`` (torchao int8 weight-only Linear layers on the default float dtype).

1. Full-size jina-clip-v2 with random weights (std 0.02, ``init_random_`` as bench_engine.py
   builds them; every setting gets the very same weights, cast): vision images/s at 512 px,
   short-text (5-30 tokens) and 512-token text throughput, and the cosine of each setting's
   features to float32's on the same inputs (texts also centred: random weights give every
   text nearly the same embedding, which hides errors in the raw cosine).
2. The tiny fixtures' goldens (v2 and v1, the reference's float32 outputs): each setting's
   minimum cosine over the golden texts and images, through ``JinaCLIPEngine.from_pretrained``.

Rounds run each setting in turn, so machine noise hits all of them alike; the reported time is
each setting's best round, and the speed-ups are given in wall time and in the process's CPU
time (which other jobs on a shared machine disturb less).

    python benchmarks/bench_precision.py            # full size on the CPU, a few minutes
    python benchmarks/bench_precision.py --smoke    # tiny config, seconds
    python benchmarks/bench_precision.py --write    # and append to RESULTS.md
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from unittest import mock

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench_engine import FULL_CONFIG, SMOKE_CONFIG, append_results, machine, text_batches  # noqa: E402

from jinaclip_integrations import JinaCLIPEngine  # noqa: E402
from jinaclip_integrations.engine import precision  # noqa: E402
from jinaclip_integrations.engine.weights import build_model, fill_model, load_config  # noqa: E402

FIXTURES = ROOT / "tests" / "fixtures"
CPU = torch.device("cpu")
#: (label, dtype, float32 LayerNorms under bf16)
SETTINGS = [
    ("float32", torch.float32, True),
    ("bfloat16", torch.bfloat16, True),
    ("bfloat16, bf16 norms", torch.bfloat16, False),
    ("int8", torch.int8, True),
]


def norms(fp32: bool):
    """Build with (the engine's way) or without float32 LayerNorms."""
    return nullcontext() if fp32 else mock.patch.object(precision, "use_float32_norms", lambda model: None)


def cosines(a: torch.Tensor, b: torch.Tensor, centre: torch.Tensor | None = None) -> float:
    """Minimum row cosine of ``a`` to ``b`` (after subtracting ``centre`` from both)."""
    if centre is not None:
        a, b = a - centre, b - centre
    return torch.nn.functional.cosine_similarity(a.float(), b.float(), dim=1).min().item()


def weight_gib(model: torch.nn.Module) -> float:
    """GiB of the model's parameters as stored (an int8 weight: its int8 data and its scales)."""
    total = 0
    for p in model.parameters():
        parts = [getattr(p, name) for name in getattr(p, "tensor_data_names", ())] or [p]
        total += sum(t.numel() * t.element_size() for t in parts)
    return total / 2**30


def full_size(cfg_folder: Path, rounds: int, images: int, short: int, long: int) -> list[str]:
    cfg = load_config(cfg_folder)
    torch.manual_seed(0)
    reference = build_model(cfg, CPU, torch.float32, random_init=True)
    models = {}
    for label, dtype, fp32_norms in SETTINGS:
        if dtype == torch.float32:
            models[label] = reference
            continue
        with norms(fp32_norms):
            model = build_model(cfg, CPU, dtype)
        fill_model(model, ((n, p.detach()) for n, p in reference.named_parameters()), CPU)
        models[label] = model

    size = cfg.vision.image_size
    pixels = torch.randn(images, 3, size, size, generator=torch.Generator().manual_seed(2))
    generator = torch.Generator().manual_seed(1)
    workloads = {
        "short": text_batches(torch.randint(5, 31, (short,), generator=generator).tolist(), cfg, 32, CPU),
        "long": text_batches([min(512, cfg.text.max_position_embeddings)] * long, cfg, 32, CPU),
    }
    pad = cfg.text.pad_token_id
    tokens = {name: int(sum((ids != pad).sum() for ids in batches)) for name, batches in workloads.items()}

    def run_text(model, name):
        return torch.cat([model.text(ids, ids != pad) for ids in workloads[name]])

    def run_vision(model):
        return model.vision(pixels.to(model.compute_dtype)).float()

    best = {label: {"vision": float("inf"), "short": float("inf"), "long": float("inf")} for label in models}
    cpu = {label: {"vision": float("inf"), "short": float("inf"), "long": float("inf")} for label in models}
    outputs: dict[str, dict[str, torch.Tensor]] = {label: {} for label in models}
    with torch.inference_mode():
        for _ in range(rounds):
            for label, model in models.items():
                for work, fn in (
                    ("vision", lambda m=model: run_vision(m)),
                    ("short", lambda m=model: run_text(m, "short")),
                    ("long", lambda m=model: run_text(m, "long")),
                ):
                    start, start_cpu = time.perf_counter(), time.process_time()
                    outputs[label][work] = fn()
                    best[label][work] = min(best[label][work], time.perf_counter() - start)
                    cpu[label][work] = min(cpu[label][work], time.process_time() - start_cpu)
    ref = outputs["float32"]
    centres = {work: ref[work].mean(0, keepdim=True) for work in ("short", "long")}
    rows = []
    for label in models:
        b = best[label]
        speed = {work: best["float32"][work] / b[work] for work in b}
        cpu_speed = {work: cpu["float32"][work] / cpu[label][work] for work in b}
        cos = {work: cosines(outputs[label][work], ref[work]) for work in b}
        centred = {work: cosines(outputs[label][work], ref[work], centres[work]) for work in ("short", "long")}
        rows.append(
            f"| {label} | {weight_gib(models[label]):.2f} | "
            f"{images / b['vision']:.3f} ({speed['vision']:.2f}x; CPU time {cpu_speed['vision']:.2f}x) | "
            f"{tokens['short'] / b['short']:,.0f} ({speed['short']:.2f}x; {cpu_speed['short']:.2f}x) | "
            f"{tokens['long'] / b['long']:,.0f} ({speed['long']:.2f}x; {cpu_speed['long']:.2f}x) | "
            f"{cos['vision']:.5f} | {cos['short']:.5f} / {centred['short']:.4f} | {cos['long']:.5f} / {centred['long']:.4f} |"
        )
    return [
        f"Full-size random weights ({cfg_folder.name} config, std 0.02): {images} images at {size} px, "
        f"{short} short texts ({tokens['short']} tokens), {long} texts of 512 tokens; best of {rounds} interleaved rounds.",
        "",
        "| setting | weights GiB | vision images/s (vs fp32: wall; CPU time) | short texts tokens/s | 512-token texts tokens/s | "
        "cosine to fp32: images | short texts: raw / centred | 512-token texts: raw / centred |",
        "|---|---|---|---|---|---|---|---|",
        *rows,
    ]


def goldens(folder: Path) -> str:
    """Each setting's minimum cosine to the fixture's float32 goldens (texts without and with
    the query task where the model has one, images)."""
    manifest = json.loads((folder / "manifest.json").read_text())
    with np.load(folder / "golden.npz") as npz:
        golden = dict(npz)
    images = [folder / name for name in manifest["images"]]
    logging.getLogger("jinaclip_integrations").setLevel(logging.ERROR)  # the goldens' one over-long text
    cells = []
    for _, dtype, fp32_norms in SETTINGS:
        with norms(fp32_norms):
            engine = JinaCLIPEngine.from_pretrained(folder, device="cpu", dtype=dtype, show_progress=False)
        found = [(engine.encode_text(manifest["texts"]) * golden["text_emb_none"]).sum(1).min()]
        if "text_emb_query" in golden:
            query = engine.encode_text(manifest["texts"], task="retrieval.query")
            found.append((query * golden["text_emb_query"]).sum(1).min())
        cells.append(f"{min(found):.5f} / {(engine.encode_image(images) * golden['image_emb']).sum(1).min():.5f}")
    return f"| {folder.name} | " + " | ".join(cells) + " |"


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny config, seconds")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--images", type=int, default=1)
    parser.add_argument("--long", type=int, default=4, help="texts of 512 tokens")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    parser.add_argument("--write", action="store_true", help="append the result to benchmarks/RESULTS.md")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    table = full_size(SMOKE_CONFIG if args.smoke else FULL_CONFIG, args.rounds, args.images, 32, args.long)
    header = " | ".join(label for label, _, _ in SETTINGS)
    golden_rows = [goldens(FIXTURES / name) for name in ("jina-clip-v2-tiny", "jina-clip-v1-tiny")]
    command = "python benchmarks/bench_precision.py " + " ".join(argv if argv is not None else sys.argv[1:])
    report = "\n".join(
        [
            f"### bench_precision: dtypes on the CPU ({datetime.date.today()})",
            "",
            f"Machine: {machine(CPU)}; native bf16: {precision.cpu_has_native_bf16()}. Command: `{command.strip()}`.",
            "",
            *table,
            "",
            "Tiny fixtures' goldens (the reference's float32 outputs): minimum cosine, texts / images.",
            "",
            f"| fixture | {header} |",
            "|---|" + "---|" * len(SETTINGS),
            *golden_rows,
            "",
        ]
    )
    print(report)
    if args.write:
        append_results(report)
    return report


if __name__ == "__main__":
    main()
