"""The GPU check: parity, speed, ingestion and serving on one CUDA machine, in one time-boxed run.

Runs on the device machine as its image is (python3 3.12, torch 2.11+cu130, transformers 5.17,
timm, pillow, numpy; no package registry), from the source tree; what the image lacks
(qdrant-edge-py, fastapi, uvicorn, pydantic...) travels as cp312 wheels that
``benchmarks/gpu_wheels.sh`` downloads into ``.whl/`` here. The steps, in order, each in a
forked child process with its own time box (a step that fails or runs out of time is
recorded as such and the next one runs), writing ``$OUT/<step>.json`` as each figure is measured:

a. ``parity``: the CUDA bf16/fp16 parity tests of v2 and v1 (pytest, cosine >= 0.999 to the
   fp32 goldens), the same cosines measured here, and a real out-of-memory halving: with the
   GPU filled but for room for ~48 images (and 1 GiB), a batch of 256 full-size images is
   halved until it fits, and its rows equal a batch-of-16 run's (bf16: cosine).
b. ``engine``: a random full-size jina-clip-v2 in bf16: vision images/s at 512x512 and MFU
   against a bf16 matmul peak measured in the same run, eager and ``torch.compile``
   (``engine.compile_towers``), against timm's EVA02-L at the same batch (eager and compiled);
   text tokens/s on a realistic mix (queries 5-30 tokens, passages 50-2000) against
   transformers' XLMRobertaModel (SDPA) on the same padded batches, with the padding fraction
   of each batching plan; one 8192-token text with its peak memory.
c. ``ingest``: JPEG files on disk (640x512 and 12-megapixel) to vectors in the embedded Qdrant
   engine (``QdrantVectorizer.sync``), images/s, the 12-MP files with reduced-scale decoding on
   and off, decoding on every core.
d. ``server``: the server on loopback, 64 clients, merged against unmerged batching
   (``bench_server.py``'s workers and clients; the tiny model).

``$OUT/summary.md`` gets one line per step as it ends; ``$OUT/gpu_check.log`` the steps' output.

``--dry-run`` runs every step's code on the CPU with the tiny test checkpoints and tiny sizes
(what needs CUDA is recorded as skipped, with the reason; out-of-memory is simulated), in
seconds: CI runs it (tests/test_gpu_check.py), so the script cannot rot.

On the device machine, through the device tool (after ``bash benchmarks/gpu_wheels.sh`` here):

    run(command="bash benchmarks/gpu_check.sh", carry=[".whl"], timeout_s=540)

Locally: ``python benchmarks/gpu_check.py --dry-run --out /tmp/gpu-check``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
sys.path[:0] = [str(ROOT), str(BENCH), str(ROOT / "tests")]

#: seconds per step on the GPU: 470 in all, inside the 8 minutes the run may take
TIME_BOX_S = {"parity": 80, "engine": 225, "ingest": 95, "server": 70}
DRY_TIME_BOX_S = {"parity": 60, "engine": 60, "ingest": 60, "server": 60}
TINY_V2 = ROOT / "tests" / "fixtures" / "jina-clip-v2-tiny"
TINY_V1 = ROOT / "tests" / "fixtures" / "jina-clip-v1-tiny"


class Step:
    """One step's results, rewritten to ``<out>/<name>.json`` after every figure, so what was
    measured before a crash or a time-out is kept."""

    def __init__(self, out: Path, name: str, dry_run: bool, deadline: float) -> None:
        self.path = out / f"{name}.json"
        self.dry_run, self.deadline, self.started = dry_run, deadline, time.monotonic()
        self.data: dict[str, Any] = {
            "step": name,
            "status": "running",
            "dry_run": dry_run,
            "results": {},
            "skipped": {},
        }
        self.save()

    def save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=1, default=str))
        tmp.replace(self.path)

    def record(self, key: str, value: Any) -> None:
        self.data["results"][key] = value
        self.save()
        print(f"[{self.data['step']} +{self.elapsed():.1f}s] {key}: {value}", flush=True)

    def skip(self, key: str, reason: str) -> None:
        self.data["skipped"][key] = reason
        self.save()
        print(f"[{self.data['step']}] {key}: skipped ({reason})", flush=True)

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def run(self, key: str, fn: Callable[[], Any], needs_s: float = 0.0) -> None:
        """Record ``fn()`` under ``key``; skip it when less than ``needs_s`` of the time box is
        left; a failure is recorded and the step goes on."""
        if self.left() < needs_s:
            self.skip(key, f"time box: {self.left():.0f} s left, needs ~{needs_s:.0f} s")
            return
        try:
            self.record(key, fn())
        except Exception as exc:  # one figure failing must not lose the others
            traceback.print_exc()
            self.data.setdefault("errors", {})[key] = f"{type(exc).__name__}: {exc}"
            self.save()


def device_and_dtype(dry_run: bool):
    import torch

    if dry_run or not torch.cuda.is_available():
        return torch.device("cpu"), torch.float32
    return torch.device("cuda", 0), torch.bfloat16


def cosines(a, b) -> dict:
    import numpy as np

    cos = (np.asarray(a) * np.asarray(b)).sum(1)
    return {"min_cosine": round(float(cos.min()), 6), "max_abs_diff": float(np.abs(np.asarray(a) - np.asarray(b)).max())}  # fmt: skip


# -- a. parity and out-of-memory halving ------------------------------------------------------


def step_parity(step: Step) -> None:
    import numpy as np
    import torch

    from jinaclip_integrations import JinaCLIPEngine

    cuda = torch.cuda.is_available() and not step.dry_run
    tests = ["tests/test_engine_api.py::test_gpu_parity", "tests/test_engine_api.py::test_v1_gpu_parity"]

    def pytest_run() -> dict:
        # addopts dropped: --strict-config would refuse asyncio_mode, pytest-asyncio is not on the image
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=", "-rs", *tests]
        done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=max(10, step.left() - 25))
        print(done.stdout[-3000:], done.stderr[-2000:], flush=True)
        return {"returncode": done.returncode, "summary": (done.stdout.strip().splitlines() or [""])[-1]}

    if step.dry_run:
        step.skip("pytest_gpu_parity", "dry run: these tests need CUDA (they would only skip)")
    else:
        step.run("pytest_gpu_parity", pytest_run, needs_s=20)
    device = "cuda" if cuda else "cpu"
    dtypes = ("bfloat16", "float16") if cuda else ("bfloat16",)  # fp16 matmuls on the CPU are slow and not the target
    for folder in (TINY_V2, TINY_V1):
        manifest = json.loads((folder / "manifest.json").read_text())
        with np.load(folder / "golden.npz") as golden:
            text_golden, image_golden = golden["text_emb_none"], golden["image_emb"]
        for dtype in dtypes:

            def measure(
                folder=folder, dtype=dtype, manifest=manifest, text_golden=text_golden, image_golden=image_golden
            ):
                engine = JinaCLIPEngine.from_pretrained(folder, device=device, dtype=dtype, show_progress=False)
                text = engine.encode_text(manifest["texts"])
                images = engine.encode_image([folder / name for name in manifest["images"]])
                return {"device": device, "text": cosines(text, text_golden), "image": cosines(images, image_golden)}

            step.run(f"cosine_to_fp32_golden/{folder.name}/{dtype}", measure)
    step.run("oom_halving", lambda: oom_halving(step, cuda), needs_s=15)


def oom_halving(step: Step, cuda: bool) -> dict:
    """A batch of images larger than the memory left is halved until it fits: the sizes tried
    and how far its rows are from a small-batch run's. On the CPU the out-of-memory error is
    simulated (raised above 2 images) and the model is the tiny one."""
    import numpy as np
    import torch
    from bench_ingest import full_size_engine

    from jinaclip_integrations import JinaCLIPEngine

    if cuda:
        engine = full_size_engine("cuda", "bfloat16")
        count, small = 256, 16
    else:
        engine = JinaCLIPEngine.from_pretrained(TINY_V2, device="cpu", show_progress=False)
        count, small = 8, 2
    size = engine.preprocessor.size
    crops = np.random.default_rng(0).integers(0, 256, (count, size, size, 3), dtype=np.uint8)
    expected = engine.encode_pixels(crops, batch_size=small)
    tried: list[int] = []
    hook = engine.model.vision.register_forward_pre_hook(lambda _, args: tried.append(int(args[0].shape[0])))
    filler = None
    try:
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
            engine.encode_pixels(crops[:small], batch_size=small)
            per_image = (torch.cuda.max_memory_allocated() - base) / small
            free, _ = torch.cuda.mem_get_info()
            room = int(3 * small * per_image)  # room for ~48 images: 256, 128 and 64 do not fit
            filler = torch.empty(max(0, free - room - 2**30), dtype=torch.uint8, device="cuda")
            tried.clear()
            got = engine.encode_pixels(crops, batch_size=count)
            simulated = False
        else:

            def limited(_, args):
                if args[0].shape[0] > small:
                    raise torch.OutOfMemoryError("CUDA out of memory (simulated: no CUDA)")

            tried.clear()
            simulate = engine.model.vision.register_forward_pre_hook(limited)
            try:
                got = engine.encode_pixels(crops, batch_size=count)
            finally:
                simulate.remove()
            simulated = True
    finally:
        hook.remove()
        del filler
        if cuda:
            torch.cuda.empty_cache()
    return {"images": count, "sizes_tried": tried, "simulated": simulated, **cosines(got, expected)}


# -- b. engine speed ----------------------------------------------------------------------------


def peer_vision_model(cfg, device, dtype):
    """timm's EVA02 (``timm.models.eva.Eva``) with the vision tower's sizes (for the full-size
    config: EVA02-L/14 at 512 px, as ``eva02_large_patch14_clip_224`` at that size), random."""
    from timm.models.eva import Eva

    model = Eva(
        img_size=cfg.image_size,
        patch_size=cfg.patch_size,
        embed_dim=cfg.width,
        depth=cfg.layers,
        num_heads=cfg.num_heads,
        mlp_ratio=cfg.mlp_ratio,
        qkv_fused=False,
        swiglu_mlp=True,
        scale_mlp=True,
        scale_attn_inner=cfg.subln,
        use_rot_pos_emb=True,
        ref_feat_shape=(16, 16),
        global_pool="token",
        num_classes=0,
    )
    return model.to(device, dtype).eval()


def step_engine(step: Step) -> None:
    import bench_engine as be
    import torch
    from bench_text_batches import padding_fraction, text_mix

    from jinaclip_integrations.engine.batching import length_sorted_batches
    from jinaclip_integrations.engine.engine import DEFAULT_BATCH_SIZE, DEFAULT_MAX_BATCH_TOKENS, compile_towers
    from jinaclip_integrations.engine.weights import build_model, load_config

    device, dtype = device_and_dtype(step.dry_run)
    cuda = device.type == "cuda"
    cfg = load_config(be.FULL_CONFIG if cuda else be.SMOKE_CONFIG)
    step.record("setup", {"device": be.machine(device), "dtype": str(dtype), "config": "full-size v2" if cuda else "tiny v2 (dry run)"})  # fmt: skip
    peak = be.matmul_peak(device, dtype)
    step.record("matmul_peak_tflops", round(peak, 1))
    torch.manual_seed(0)
    model = build_model(cfg, device, dtype, random_init=True)
    batch = 64 if cuda else 2
    size = cfg.vision.image_size
    pixels = torch.randn(batch, 3, size, size, device=device, dtype=dtype)
    flops = be.vision_flops(cfg.vision)
    repeats = 5 if cuda else 1

    def images_per_s(forward) -> dict:
        with torch.inference_mode():
            seconds = be.timed(lambda: forward(pixels), device, repeats)
        ips = batch / seconds
        return {"batch": batch, "images_per_s": round(ips, 2), "mfu": round(ips * flops / 1e12 / peak, 4)}

    step.run("vision/ours/eager", lambda: images_per_s(model.vision), needs_s=10)
    try:
        peer = peer_vision_model(cfg.vision, device, dtype)
    except Exception as exc:  # timm missing, or a timm whose Eva takes other arguments
        peer = None
        step.skip("vision/timm_eva02", f"no timm EVA02: {type(exc).__name__}: {exc}")
    if peer is not None:
        step.run("vision/timm_eva02/eager", lambda: images_per_s(peer), needs_s=10)

    # text: the realistic mix, through each batching plan, ours and the peer on the same batches
    lengths = text_mix(2048, 512) if cuda else [min(n, 64) for n in text_mix(12, 4)]
    peer_text = be.peer_text_model(cfg, device, dtype)
    pad = cfg.text.pad_token_id
    engine_overhead = be.batch_overhead(device)
    plans = {"engine": engine_overhead, "no_overhead": 0, "cpu_setting": 16, "fullest": 10**9}
    for name, overhead in plans.items():
        plan = length_sorted_batches(lengths, DEFAULT_BATCH_SIZE, DEFAULT_MAX_BATCH_TOKENS, overhead)

        def text_speed(overhead=overhead, plan=plan, with_peer=name == "engine") -> dict:
            batches = be.text_batches(lengths, cfg, DEFAULT_BATCH_SIZE, device, overhead)
            row = {"overhead_tokens": overhead, "batches": len(plan), "padding_fraction": round(padding_fraction(lengths, plan), 4)}  # fmt: skip
            runs = [("ours", lambda ids: model.text(ids, ids != pad))]
            if with_peer:
                runs.append(("xlmroberta_sdpa", lambda ids: peer_text(input_ids=ids, attention_mask=(ids != pad).long()).last_hidden_state))  # fmt: skip
            for label, run in runs:
                with torch.inference_mode():
                    seconds = be.timed(lambda run=run: [run(ids) for ids in batches], device, 2 if cuda else 1)
                row[f"{label}_tokens_per_s"] = round(sum(lengths) / seconds)
            return row

        step.run(f"text_mix/{name}", text_speed, needs_s=20 if cuda else 0)

    def long_text() -> dict:
        n = 8192 if cuda else 128
        ids = torch.randint(3, cfg.text.vocab_size, (1, n), device=device)
        row = {"tokens": n}
        for label, run in (("ours", lambda: model.text(ids, ids != pad)),
                           ("xlmroberta_sdpa", lambda: peer_text(input_ids=ids, attention_mask=(ids != pad).long()))):  # fmt: skip
            be.reset_peak(device)
            with torch.inference_mode():
                seconds = be.timed(run, device, 2 if cuda else 1)
            row[label] = {"seconds": round(seconds, 4), "peak_memory_gib": round(be.peak_memory(device), 3)}
        return row

    step.run("text_8192_tokens", long_text, needs_s=15 if cuda else 0)

    # compiled, last: compiling takes a minute or more per model on the GPU
    backend = "inductor" if cuda else "eager"
    if not cuda:
        step.skip("compile/inductor", "dry run: the 'eager' backend stands in for inductor (no code generated)")

    def compiled_ours() -> dict:
        compile_towers(model, backend)  # what JinaCLIPEngine.from_pretrained(..., compile=True) does
        return {"backend": backend, **images_per_s(model.vision)}

    step.run("vision/ours/compiled", compiled_ours, needs_s=100 if cuda else 0)
    if peer is not None:
        step.run("vision/timm_eva02/compiled", lambda: {"backend": backend, **images_per_s(torch.compile(peer, backend=backend))}, needs_s=80 if cuda else 0)  # fmt: skip


# -- c. ingestion end to end ----------------------------------------------------------------------


def step_ingest(step: Step) -> None:
    import numpy as np
    from bench_decode import photo_jpeg, with_comment
    from bench_ingest import full_size_engine

    from jinaclip_integrations import JinaCLIPEngine
    from jinaclip_integrations.engine.batching import decode_pool
    from jinaclip_integrations.qdrant import QdrantVectorizer

    device, _ = device_and_dtype(step.dry_run)
    cuda = device.type == "cuda"
    if cuda:
        engine = full_size_engine("cuda", "bfloat16")
        shapes = {"640x512": (640, 512, 1024), "12MP": (4000, 3000, 192)}
    else:
        engine = JinaCLIPEngine.from_pretrained(TINY_V2, device="cpu", show_progress=False)
        shapes = {"640x512": (640, 512, 4), "12MP": (1600, 1200, 4)}  # 12 MP stands in as 1600x1200
    step.record("setup", {"device": str(device), "dtype": str(engine.dtype), "decode_threads": decode_pool()._max_workers, "cpus": os.cpu_count()})  # fmt: skip
    engine.encode_pixels(np.zeros((1, engine.preprocessor.size, engine.preprocessor.size, 3), np.uint8))  # warm-up

    def index(folder: Path) -> dict:
        with tempfile.TemporaryDirectory(prefix="gpu-check-store-") as store_dir:
            start = time.perf_counter()
            with QdrantVectorizer(Path(store_dir), engine=engine, show_progress=False) as store:
                report = store.sync(folder)
                points = store.count()
            seconds = time.perf_counter() - start
        return {"images": points, "added": report.added, "seconds": round(seconds, 2), "images_per_s": round(points / seconds, 2)}  # fmt: skip

    with tempfile.TemporaryDirectory(prefix="gpu-check-jpegs-") as tmp:
        for name, (width, height, count) in shapes.items():
            folder = Path(tmp) / name
            folder.mkdir()
            base = photo_jpeg(width, height)
            for i in range(count):
                (folder / f"{name}-{i}.jpg").write_bytes(with_comment(base, f"{name} {i}"))
            step.run(f"jpeg_to_qdrant/{name}", lambda folder=folder: index(folder), needs_s=10 if cuda else 0)
        engine.preprocessor.reduced_jpeg_decoding = False  # every JPEG decoded in full
        try:
            step.run("jpeg_to_qdrant/12MP/full_decode", lambda: index(Path(tmp) / "12MP"), needs_s=10 if cuda else 0)
        finally:
            engine.preprocessor.reduced_jpeg_decoding = True


# -- d. the server ----------------------------------------------------------------------------------


def step_server(step: Step) -> None:
    import asyncio

    import bench_server as bs

    device, _ = device_and_dtype(step.dry_run)
    clients, duration, warmup = (64, 5.0, 1.0) if device.type == "cuda" else (8, 1.0, 0.5)
    for name, options in bs.CONFIGS.items():
        if step.dry_run and name == "unmerged":  # the same code with other options: one start is enough
            step.skip(f"server/{name}", "dry run: one server start exercises the path")
            continue
        if step.left() < 15:
            step.skip(f"server/{name}", f"time box: {step.left():.0f} s left")
            continue
        worker, url, served_on = bs.start(str(TINY_V2), str(device), options)
        try:
            for workload in ("text", "mixed") if device.type == "cuda" else ("mixed",):
                step.run(f"server/{name}/{workload}/{clients}_clients",
                         lambda workload=workload, url=url, on=served_on: {"device": on, **asyncio.run(bs.drive(url, workload, clients, warmup, duration))})  # fmt: skip
        finally:
            worker.terminate()
            worker.wait(60)


STEPS: dict[str, Callable[[Step], None]] = {"parity": step_parity, "engine": step_engine, "ingest": step_ingest, "server": step_server}  # fmt: skip


# -- the driver --------------------------------------------------------------------------------------


def summary_line(data: dict, seconds: float) -> str:
    """One markdown line: the step, its status and time, and its figures in short."""
    figures = "; ".join(f"{k}: {json.dumps(v, separators=(',', ':'))}" for k, v in data.get("results", {}).items())
    skipped = "; ".join(f"{k}: {v}" for k, v in data.get("skipped", {}).items())
    errors = "; ".join(f"{k}: {v}" for k, v in data.get("errors", {}).items())
    return (f"| {data['step']} | {data['status']} | {seconds:.0f} s | {figures} | {skipped or '-'} | {errors or '-'} |").replace("\n", " ")  # fmt: skip


def preload() -> None:
    """Import what the steps use once, in the driver (CUDA untouched): each forked step starts
    with it loaded instead of importing it again."""
    import bench_decode  # noqa: F401
    import bench_engine  # noqa: F401
    import bench_ingest  # noqa: F401
    import bench_text_batches  # noqa: F401

    import jinaclip_integrations.engine  # noqa: F401

    with contextlib.suppress(ImportError):  # the steps that need them record their absence
        import bench_server  # noqa: F401
        import transformers.models.xlm_roberta.modeling_xlm_roberta  # noqa: F401


def drive(out: Path, dry_run: bool, steps: list[str]) -> int:
    """Run each step in a forked child within its time box; record how each ended. Returns the
    number of steps that did not end well (failed or ran out of time)."""
    boxes = DRY_TIME_BOX_S if dry_run else TIME_BOX_S
    out.mkdir(parents=True, exist_ok=True)
    summary = out / "summary.md"
    summary.write_text(
        f"# GPU check{' (dry run)' if dry_run else ''}\n\n| step | status | time | results | skipped | errors |\n|---|---|---|---|---|---|\n"  # fmt: skip
    )
    bad = 0
    log_path = out / "gpu_check.log"
    preload()

    for name in steps:
        box = boxes[name]
        with open(log_path, "a", encoding="utf-8") as log:
            log.write(f"\n===== {name} (time box {box} s) =====\n")
        start = time.monotonic()
        child = multiprocessing.get_context("fork").Process(target=run_step, args=(name, out, dry_run, box, log_path))
        child.start()
        child.join(box)
        if child.is_alive():
            child.kill()  # its own subprocesses (a server) are in its process group: end them too
            child.join()
            status = f"timed out after {box} s"
        else:
            status = "ok" if child.exitcode == 0 else f"failed (exit {child.exitcode})"
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)
        seconds = time.monotonic() - start
        path = out / f"{name}.json"
        data = json.loads(path.read_text()) if path.is_file() else {"step": name, "results": {}, "skipped": {}}
        if status == "ok" and data.get("errors"):
            status = "ok, with errors"
        data.update(status=status, seconds=round(seconds, 1))
        path.write_text(json.dumps(data, indent=1, default=str))
        bad += not status.startswith("ok")
        with open(summary, "a", encoding="utf-8") as f:
            f.write(summary_line(data, seconds) + "\n")
        print(summary_line(data, seconds), flush=True)
    return bad


def run_step(name: str, out: Path, dry_run: bool, box: float, log_path: Path) -> None:
    """A forked child: in a process group of its own (so a time-out ends what it started), its
    output to the log, one step run within ``box`` seconds (a few kept for the driver)."""
    os.setpgid(0, 0)
    with open(log_path, "a", encoding="utf-8") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
    sys.stdout = os.fdopen(1, "w", buffering=1, closefd=False)
    sys.stderr = os.fdopen(2, "w", buffering=1, closefd=False)
    if dry_run:  # tiny tensors: one thread wastes no time waiting for a second on a busy machine
        import torch

        torch.set_num_threads(1)
    step = Step(out, name, dry_run, time.monotonic() + box - 5)
    STEPS[name](step)
    step.data["status"] = "ok"
    step.save()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="the tiny models on the CPU, tiny sizes (CI)")
    parser.add_argument("--out", type=Path, default=os.environ.get("OUT"), help="results folder (default: $OUT)")
    parser.add_argument("--steps", default=",".join(STEPS), help="comma-separated steps to run (default: all)")
    args = parser.parse_args(argv)
    if args.out is None:
        parser.error("give --out DIR (on the device machine, $OUT is used)")
    args.out = Path(args.out)
    steps = [s for s in args.steps.split(",") if s]
    unknown = set(steps) - set(STEPS)
    if unknown:
        parser.error(f"unknown steps {sorted(unknown)}; choose from {list(STEPS)}")
    drive(args.out, args.dry_run, steps)
    return 0  # a step's failure is in its record, not in the exit status: every step has run


if __name__ == "__main__":
    sys.exit(main())
