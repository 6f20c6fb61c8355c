"""The embedding server under sustained load: latency percentiles, throughput, status codes and
memory over a fixed time, against the engine called directly on the same workload.

Starts the server (``jinaclip_integrations.server.create_app``, with an API key and a 2 MiB
body limit, everything else at its defaults) in a subprocess on loopback, and drives it with
``--clients`` closed-loop clients (asyncio + httpx, in this process) for ``--duration`` seconds,
each sending its next request as soon as the last is answered. The requests are drawn from a
seeded generator:

- ``text``: 1-8 texts of 3-60 words, or the test fixture's multilingual texts (one of them
  longer than the model reads), Jina-style (``task``) or OpenAI-style (``encoding_format``,
  ``dimensions``);
- ``image``: 1-3 of the fixture's images (5x7 to 80x80 PNG, palette, grayscale, CMYK JPEG) as
  base64 or data URIs, or one 1000x300 PNG of 0.7 MB;
- ``mixed``: texts and images in one request;
- ``weaviate``: Weaviate's ``/vectorize`` and ``/vectors`` routes (the same batcher);
- ``bad`` (``--bad-fraction`` of all requests): requests that must get their documented error:
  a corrupt image, too many items, an unsupported ``dimensions``, a bad Weaviate body (400), a
  wrong key (401), a body over the limit (413).

Every answer is checked: a good request must get a 200 with one vector per input, a bad one
its code. Any other status (a 5xx above all) or a transport error fails the run (exit 1).
Latencies (p50/p95/p99) and throughput count the answers after ``--warmup``. The server
process's RSS is sampled every second: the report gives it after the warm-up, at the end, and
the slope of a least-squares line through the samples after the warm-up (MiB/min).

The peer is the engine loaded in this process after the server has stopped, embedding the same
generated requests one after the other, one engine call per kind of input in each (what a
program calling the library itself does), with no HTTP, JSON or client in the way; its rate is
given in inputs/s and in requests/s (inputs/s over the mean inputs per request), and the ratio
is the server's good requests/s over the latter: above 1 when merging concurrent requests gains
more than HTTP, JSON and the client on the same cores cost.

    python benchmarks/bench_load.py                        # tiny test model, 32 clients, 60 s
    python benchmarks/bench_load.py --model jinaai/jina-clip-v2 --write
    python benchmarks/bench_load.py --smoke                # 8 clients, 5 s
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime
import json
import os
import platform
import random
import re
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench_server import TINY, cpu_name, start  # noqa: E402 - this folder's server launcher

KEY = "bench-key"
MAX_BODY = 2 * 1024 * 1024
SERVER_OPTIONS = {"api_key": KEY, "max_body_bytes": MAX_BODY}
SMALL_IMAGES = ["rgb_tiny_5x7.png", "rgb_gradient_64x48.png", "rgb_tall_30x90.png", "rgba_80x80.png",
                "gray_L_50x70.png", "palette_P_60x40.png", "cmyk_45x45.jpg"]  # fmt: skip
LARGE_IMAGE = "rgb_wide_1000x300.png"
#: the vocabulary of generated texts (the fixture's multilingual texts are drawn too)
WORDS = ["cat", "dog", "sofa", "river", "mountain", "bicycle", "red", "blue", "small", "large", "photo", "painting",
         "of", "a", "the", "on", "under", "near", "with", "Katze", "Hund", "猫", "狗", "chat", "chien", "gato", "perro",
         "sunset", "city", "street", "night", "morning", "garden"]  # fmt: skip
SECTION = "## Server under sustained load (bench_load.py)"


@dataclass
class Call:
    """One request: route, JSON body (or raw bytes), headers, the status it must get, how many
    vectors a 200 carries, and for the peer its inputs by kind."""

    kind: str
    path: str
    body: Any
    status: int = 200
    vectors: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    inputs: list[tuple[tuple, Any]] = field(default_factory=list)  # ((modality, task), text or image bytes)


class Workload:
    """A seeded stream of requests (see the module docstring)."""

    def __init__(self, seed: int, bad_fraction: float) -> None:
        self.rng = random.Random(seed)
        self.bad_fraction = bad_fraction
        manifest = json.loads((TINY / "manifest.json").read_text())
        self.fixture_texts = [text for text in manifest["texts"] if text.strip()]
        self.images = {name: (TINY / name).read_bytes() for name in [*SMALL_IMAGES, LARGE_IMAGE]}
        self.encoded = {name: base64.b64encode(data).decode() for name, data in self.images.items()}
        self.kinds = {"text": self._texts, "image": self._images, "mixed": self._mixed, "weaviate": self._weaviate}

    def next(self) -> Call:
        if self.rng.random() < self.bad_fraction:
            return self._bad()
        kind = self.rng.choices(list(self.kinds), weights=[40, 25, 20, 15])[0]
        return self.kinds[kind]()

    # -- inputs ----------------------------------------------------------------------------------

    def _text(self) -> str:
        if self.rng.random() < 0.2:
            return self.rng.choice(self.fixture_texts)
        return " ".join(self.rng.choices(WORDS, k=self.rng.randint(3, 60)))

    def _picture(self) -> tuple[str, str]:
        """A small image: (file name, base64 or a data URI)."""
        name = self.rng.choice(SMALL_IMAGES)
        prefix = "data:image/png;base64," if self.rng.random() < 0.5 else ""
        return name, prefix + self.encoded[name]

    def _with_images(self, call: Call, names: list[str]) -> Call:
        call.inputs += [(("image", None), self.images[name]) for name in names]
        return call

    # -- requests ----------------------------------------------------------------------------------

    def _embeddings(self, kind: str, texts: list[str], pictures: list[tuple[str, str]]) -> Call:
        """A /v1/embeddings request, OpenAI-style for texts alone half of the time, else Jina-style."""
        rng = self.rng
        body: dict[str, Any] = {"model": "jina-clip-v2"}
        task = None
        if pictures or rng.random() < 0.5:
            task = rng.choice([None, "retrieval.query", "retrieval.passage"])
            body |= {"task": task} if task else {}
            body["input"] = [{"text": text} for text in texts] + [{"image": item} for _, item in pictures]
        else:
            body |= {"input": texts, "encoding_format": rng.choice(["float", "base64"])}
            body |= {"dimensions": 32} if rng.random() < 0.3 else {}
        engine_task = "retrieval.query" if task == "retrieval.query" else None
        call = Call(kind, "/v1/embeddings", body, vectors=len(texts) + len(pictures))
        call.inputs = [(("text", engine_task), text) for text in texts]
        return self._with_images(call, [name for name, _ in pictures])

    def _texts(self) -> Call:
        return self._embeddings("text", [self._text() for _ in range(self.rng.randint(1, 8))], [])

    def _images(self) -> Call:
        if self.rng.random() < 0.1:
            pictures = [(LARGE_IMAGE, self.encoded[LARGE_IMAGE])]
        else:
            pictures = [self._picture() for _ in range(self.rng.randint(1, 3))]
        return self._embeddings("image", [], pictures)

    def _mixed(self) -> Call:
        texts = [self._text() for _ in range(self.rng.randint(1, 4))]
        return self._embeddings("mixed", texts, [self._picture() for _ in range(self.rng.randint(1, 2))])

    def _weaviate(self) -> Call:
        rng = self.rng
        if rng.random() < 0.5:  # multi2vec-clip
            texts = [self._text() for _ in range(rng.randint(0, 3))]
            pictures = [self._picture() for _ in range(rng.randint(0 if texts else 1, 2))]
            body = {"texts": texts, "images": [item for _, item in pictures]}
            call = Call("weaviate", "/vectorize", body, vectors=len(texts) + len(pictures))
            call.inputs = [(("text", None), text) for text in texts]
            return self._with_images(call, [name for name, _ in pictures])
        texts = [self._text() for _ in range(rng.randint(1, 4))]  # text2vec-transformers
        path = rng.choice(["/vectors", "/passage/vectors", "/query/vectors"])
        call = Call("weaviate", path, {"texts": texts, "config": {}}, vectors=len(texts))
        call.inputs = [(("text", "retrieval.query" if path == "/query/vectors" else None), text) for text in texts]
        return call

    def _bad(self) -> Call:
        """A request the server must refuse, with the status it documents for it."""
        not_an_image = base64.b64encode(b"not an image").decode()
        calls = [
            Call("bad", "/v1/embeddings", {"input": ["a", {"image": not_an_image}]}, status=400),
            Call("bad", "/v1/embeddings", {"input": ["a"] * 2049}, status=400),  # max_items is 2048
            Call("bad", "/v1/embeddings", {"input": ["a"], "dimensions": 3}, status=400),
            Call("bad", "/vectorize", {"texts": "not a list"}, status=400),
            Call("bad", "/v1/embeddings", {"input": ["a"]}, status=401, headers={"Authorization": "Bearer wrong"}),
            Call("bad", "/v1/embeddings", b'{"input": ["' + b"x" * MAX_BODY + b'"]}', status=413),
        ]
        return self.rng.choice(calls)


def answered_vectors(path: str, body: dict) -> int:
    """How many vectors an answer from ``path`` carries."""
    if path == "/vectorize":
        return len(body["textVectors"]) + len(body["imageVectors"])
    if path.endswith("/vectors"):
        return len(body["vectors"])
    return len(body["data"])


# -- the run -------------------------------------------------------------------------------------------


@dataclass
class Run:
    """What the clients saw, and the server's memory."""

    statuses: Counter = field(default_factory=Counter)  # (kind, status or error name)
    failures: list[str] = field(default_factory=list)
    latencies: dict[str, list[float]] = field(default_factory=dict)  # kind -> seconds, after the warm-up
    answered: int = 0  # requests answered after the warm-up
    inputs: int = 0  # inputs of the good requests answered after the warm-up
    rss: list[tuple[float, int]] = field(default_factory=list)  # (seconds since the start, bytes)


async def drive(url: str, pid: int, clients: int, duration: float, warmup: float, seed: int, bad: float) -> Run:
    """``clients`` closed-loop clients for ``duration`` seconds; RSS of ``pid`` every second."""
    import psutil

    run = Run()
    server = psutil.Process(pid)
    begin = time.perf_counter()
    measured_from, end = begin + warmup, begin + duration

    async def sample() -> None:
        while (now := time.perf_counter()) < end:
            run.rss.append((now - begin, server.memory_info().rss))
            await asyncio.sleep(1.0)

    async def client(number: int, http: httpx.AsyncClient) -> None:
        workload = Workload(seed * 1000 + number, bad)
        while (start := time.perf_counter()) < end:
            call = workload.next()
            content = call.body if isinstance(call.body, bytes) else json.dumps(call.body).encode()
            headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json", **call.headers}
            try:
                response = await http.post(call.path, content=content, headers=headers)
                status: int | str = response.status_code
                if status == call.status == 200 and answered_vectors(call.path, response.json()) != call.vectors:
                    status = "wrong number of vectors"
            except (httpx.HTTPError, ValueError, KeyError) as exc:  # ValueError, KeyError: not the answer's shape
                status, response = type(exc).__name__, None
            done = time.perf_counter()
            run.statuses[call.kind, status] += 1
            if status != call.status:
                text = response.text[:200] if response is not None else ""
                run.failures.append(f"{call.kind} {call.path}: expected {call.status}, got {status} {text}")
            elif start >= measured_from and done <= end:
                run.answered += 1
                run.latencies.setdefault(call.kind, []).append(done - start)
                run.inputs += call.vectors

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as http:
        await asyncio.gather(sample(), *(client(n, http) for n in range(clients)))
    return run


def direct_engine(model: str, device: str | None, seed: int, seconds: float) -> tuple[float, float, float]:
    """The peer: (requests/s, inputs/s, inputs per request) of the engine embedding the same
    generated requests, one after the other, with one engine call per kind of input in each."""
    from jinaclip_integrations import JinaCLIPEngine

    engine = JinaCLIPEngine.from_pretrained(model, device=device, show_progress=False)
    workload = Workload(seed, bad_fraction=0.0)
    engine.encode_text(["warm up"], show_progress=False)
    engine.encode_image([workload.images[SMALL_IMAGES[0]]], show_progress=False)
    requests = inputs = 0
    begin = time.perf_counter()
    while time.perf_counter() - begin < seconds:
        kinds: dict[tuple, list] = {}
        for key, item in workload.next().inputs:
            kinds.setdefault(key, []).append(item)
        for key, items in kinds.items():
            embed(engine, key, items)
            inputs += len(items)
        requests += 1
    elapsed = time.perf_counter() - begin
    return requests / elapsed, inputs / elapsed, inputs / requests


def embed(engine, key: tuple, items: list) -> None:
    modality, task = key
    if modality == "text":
        engine.encode_text(items, task=task, show_progress=False)
    else:
        engine.encode_image(items, show_progress=False)


# -- the report ----------------------------------------------------------------------------------------


def percentiles(seconds: list[float]) -> str:
    p50, p95, p99 = np.percentile(np.array(seconds) * 1000, [50, 95, 99])
    return f"{p50:.1f} | {p95:.1f} | {p99:.1f}"


def memory(run: Run, warmup: float) -> tuple[float, float, float, float]:
    """RSS in MiB after the warm-up, at the end and at its peak, and the slope after the warm-up (MiB/min)."""
    samples = [(t, rss / 2**20) for t, rss in run.rss if t >= warmup] or [(t, rss / 2**20) for t, rss in run.rss]
    times, mib = np.array(samples).T
    slope = float(np.polyfit(times / 60, mib, 1)[0]) if len(samples) > 1 else 0.0
    return float(mib[0]), float(mib[-1]), float(max(rss for _, rss in run.rss) / 2**20), slope


def report(run: Run, args: argparse.Namespace, device: str, stats: dict, peer: tuple[float, float, float]) -> str:
    measured = args.duration - args.warmup
    rps, ips = run.answered / measured, run.inputs / measured
    good = sum(len(values) for kind, values in run.latencies.items() if kind != "bad")
    malloc = {name: value for name, value in os.environ.items() if name.startswith("MALLOC_")}
    after, end, peak, slope = memory(run, args.warmup)
    peer_rps, peer_ips, per_request = peer
    lines = [
        f"{args.clients} clients for {args.duration:g} s ({args.warmup:g} s of warm-up not counted), "
        f"{Path(args.model).name} on {device}; {args.bad_fraction:.0%} of the requests are bad on purpose"
        + (f"; server environment {' '.join(f'{k}={v}' for k, v in malloc.items())}." if malloc else "."),
        "",
        "| requests | answered | p50 ms | p95 ms | p99 ms |",
        "|---|---|---|---|---|",
    ]
    for kind in ["text", "image", "mixed", "weaviate", "bad"]:
        if kind in run.latencies:
            lines.append(f"| {kind} | {len(run.latencies[kind]):,} | {percentiles(run.latencies[kind])} |")
    every = [value for kind, values in run.latencies.items() if kind != "bad" for value in values]
    lines.append(f"| **all good** | {len(every):,} | {percentiles(every)} |")
    codes = Counter()
    for (_, status), count in run.statuses.items():
        codes[status] += count
    calls = stats["batches"] or 1
    lines += [
        "",
        f"- Throughput: **{rps:,.1f} requests/s** ({good / measured:,.1f} good requests/s, {ips:,.1f} inputs/s); "
        f"{stats['items'] / calls:.1f} inputs per model call on average.",
        f"- Status codes over the whole run: {', '.join(f'{code}: {count:,}' for code, count in sorted(codes.items(), key=str))}; "
        f"unexpected: **{len(run.failures)}**.",
        f"- Server RSS: {after:,.0f} MiB after the warm-up, {end:,.0f} MiB at the end (peak {peak:,.0f} MiB); "
        f"slope after the warm-up **{slope:+.1f} MiB/min** ({len(run.rss)} samples, 1 s apart).",
        f"- Direct engine on the same workload (in-process, request after request, no HTTP): "
        f"{peer_ips:,.1f} inputs/s = {peer_rps:,.1f} requests/s at {per_request:.2f} inputs per request; "
        f"server / direct: **{(good / measured) / peer_rps:.2f}x**.",
    ]
    return "\n".join(lines)


def write_run(
    script: str,
    argv: list[str] | None,
    args: argparse.Namespace,
    device: str,
    intro: str,
    text: str,
    heading: str = SECTION,
) -> None:
    """Write a run's ``text`` to RESULTS.md as the section ``heading``: ``intro`` (what the
    benchmark measures), then a subsection for the model, device and date with the machine and
    the command line of ``script`` (``argv``: its arguments, None: this process's)."""
    import torch

    command = f"python benchmarks/{script} " + " ".join(argv if argv is not None else sys.argv[1:])
    write_section(
        f"{intro}\n\n### {Path(args.model).name}, {device} ({datetime.date.today()})\n\n"
        f"Machine: {cpu_name()}, {os.cpu_count()} cores, {platform.system()}; torch {torch.__version__}, "
        f"Python {platform.python_version()}. Command: `{command.strip()}`.\n\n{text}",
        heading,
    )


def write_section(text: str, heading: str = SECTION) -> None:
    """Put ``text`` in RESULTS.md as the section ``heading``, replacing the one there (up to the
    next ``## `` heading), or at the end."""
    path = ROOT / "benchmarks" / "RESULTS.md"
    content = path.read_text(encoding="utf-8")
    section = f"{heading}\n\n{text.strip()}\n"
    pattern = re.compile(rf"^{re.escape(heading)}\n.*?(?=^## |\Z)", re.DOTALL | re.MULTILINE)
    if pattern.search(content):
        content = pattern.sub(lambda _: section + "\n", content, count=1).rstrip("\n") + "\n"
    else:
        content = content.rstrip("\n") + "\n\n" + section
    path.write_text(content, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(TINY), help="hub name or checkpoint folder (default: the tiny test model)")  # fmt: skip
    parser.add_argument("--device", help="torch device of the server and the peer (default: CUDA if available)")
    parser.add_argument("--clients", type=int, default=32, help="concurrent clients (default: %(default)s)")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load (default: %(default)s)")
    parser.add_argument("--warmup", type=float, help="seconds not counted at the start (default: 20%% of --duration, at least 5)")  # fmt: skip
    parser.add_argument("--bad-fraction", type=float, default=0.05, help="requests that must be refused (default: %(default)s)")  # fmt: skip
    parser.add_argument("--seed", type=int, default=0, help="workload seed (default: %(default)s)")
    parser.add_argument("--smoke", action="store_true", help="8 clients for 5 s (CI)")
    parser.add_argument(
        "--write", action="store_true", help=f"write the result to benchmarks/RESULTS.md as '{SECTION}'"
    )
    args = parser.parse_args(argv)
    if args.smoke:
        args.clients, args.duration, args.warmup = 8, 5.0, 1.0
    if args.warmup is None:
        args.warmup = max(5.0, args.duration / 5)
    if not 0 <= args.warmup < args.duration:
        parser.error("--warmup must be at least 0 and less than --duration")

    worker, url, device = start(args.model, args.device, SERVER_OPTIONS)
    try:
        run = asyncio.run(
            drive(url, worker.pid, args.clients, args.duration, args.warmup, args.seed, args.bad_fraction)
        )
        stats = httpx.get(f"{url}/bench/stats", headers={"Authorization": f"Bearer {KEY}"}).json()
    finally:
        worker.terminate()
        worker.wait(60)
    peer = direct_engine(args.model, args.device, args.seed, seconds=min(10.0, max(1.0, args.duration / 6)))
    text = report(run, args, device, stats, peer)
    print(text)
    for failure in run.failures[:20]:
        print("FAILED:", failure, file=sys.stderr)
    if args.write:
        write_run(
            "bench_load.py",
            argv,
            args,
            device,
            "The server (`jinaclip serve` defaults, an API key, a 2 MiB body limit) on loopback under closed-loop "
            "clients in another process sending mixed text, image and Weaviate requests and a share of bad ones "
            "(see the docstring of `benchmarks/bench_load.py`); latency per request after the warm-up, the server "
            "process's RSS sampled every second, and the engine called directly on the same workload as the peer. "
            "Client and server share the machine's cores, and the direct engine's rate varies from run to run "
            "on this shared 2-core machine (0.52x-0.90x for the ratio over seven runs). On glibc, freed tensors and "
            "decoded images stay in the allocator's per-thread heaps: before the batcher returned them "
            "(`malloc_trim`, once a second), the same 200 s run grew from 657 to 1,017 MiB (+112 MiB/min) with "
            "no more Python objects held; with it, two 200 s runs gave -3 and +22 MiB/min, about flat within the "
            "sawtooth of varied batches. The report names any `MALLOC_*` setting of the run.",
            text,
        )
    return 1 if run.failures or not run.answered else 0


if __name__ == "__main__":
    sys.exit(main())
