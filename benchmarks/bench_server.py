"""Server throughput with and without merging concurrent requests into engine batches.

Starts the embedding server (``jinaclip_integrations.server.create_app``) in a subprocess on
loopback twice: merging (the default ``max_batch_items`` and ``max_wait_ms``) and not merging
(``max_batch_items=1``, ``max_wait_ms=0``: one engine call per request). Each is driven by 1, 8
and 64 concurrent clients (asyncio in this process, one keep-alive connection each), every client
sending its next request as soon as the last one is answered, for a fixed time:

- ``text``: one text per request (Jina-style ``{"input": ["..."]}``);
- ``mixed``: one text or one 64x48 PNG per request, alternately.

Every request carries one item, so items/s equals requests/s. The server reports how many
items each engine call got on average. Client and server share the machine's cores, so on a
small machine the client's own cost caps both columns.

    python benchmarks/bench_server.py                   # the tiny test model, CUDA if available
    python benchmarks/bench_server.py --model jinaai/jina-clip-v2 --write
    python benchmarks/bench_server.py --smoke           # seconds
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime
import json
import platform
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TINY = ROOT / "tests" / "fixtures" / "jina-clip-v2-tiny"
IMAGE = TINY / "rgb_gradient_64x48.png"
CONFIGS = {"unmerged": {"max_batch_items": 1, "max_wait_ms": 0.0}, "merged": {}}


def serve(model: str, device: str | None, options: dict) -> None:
    """Worker: load the model, serve it on a free loopback port, print the port."""
    import uvicorn

    from jinaclip_integrations import JinaCLIPEngine
    from jinaclip_integrations.server import ServerSettings, create_app

    engine = JinaCLIPEngine.from_pretrained(model, device=device, show_progress=False)
    app = create_app(engine, ServerSettings(**options))

    async def stats() -> dict:
        return asdict(app.state.batcher.stats)

    app.add_api_route("/bench/stats", stats, methods=["GET"])
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # asyncio sets TCP_NODELAY
    sock.bind(("127.0.0.1", 0))
    print(json.dumps({"port": sock.getsockname()[1], "device": str(engine.device)}), flush=True)
    uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[sock])


def start(model: str, device: str | None, options: dict) -> tuple[subprocess.Popen, str, str]:
    cmd = [sys.executable, __file__, "--serve", json.dumps(options), "--model", model]
    worker = subprocess.Popen(cmd + (["--device", device] if device else []), stdout=subprocess.PIPE, text=True)
    line = worker.stdout.readline()
    if not line:
        sys.exit(f"the server did not start ({worker.wait()})")
    info = json.loads(line)
    url = f"http://127.0.0.1:{info['port']}"
    deadline = time.monotonic() + 600
    while not _ready(url):
        if worker.poll() is not None or time.monotonic() > deadline:
            worker.kill()
            sys.exit("the server did not get ready")
        time.sleep(0.1)
    return worker, url, info["device"]


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/ready").status_code == 200
    except httpx.TransportError:  # the port is known before the server listens on it
        return False


async def post(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: str, body: bytes) -> bytes:
    """One HTTP/1.1 keep-alive POST; the answer's body (a non-200 answer raises)."""
    head = (
        f"POST {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    writer.write(head.encode() + body)
    lines = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:] if line)
    data = await reader.readexactly(int(headers["content-length"]))
    if lines[0].split()[1] != "200":
        raise RuntimeError(f"{lines[0]}: {data[:500]!r}")
    return data


async def drive(url: str, workload: str, clients: int, warmup_s: float, duration_s: float) -> dict:
    """``clients`` closed-loop clients for ``warmup_s`` + ``duration_s``; figures of the latter.

    A minimal HTTP/1.1 client on asyncio streams, one keep-alive connection per client: httpx's
    connection pool costs more CPU than the server's own work from a few dozen connections on.
    """
    host, port = url.removeprefix("http://").split(":")
    image = {"image": base64.b64encode(IMAGE.read_bytes()).decode()}
    latencies: list[float] = []
    begin = time.perf_counter() + warmup_s
    end = begin + duration_s

    async def client(number: int) -> None:
        reader, writer = await asyncio.open_connection(host, int(port))
        i = 0
        while (now := time.perf_counter()) < end:
            text = f"client {number} request {i}: a photo of a cat sitting on a sofa"
            item = image if workload == "mixed" and (number + i) % 2 else text
            await post(reader, writer, "/v1/embeddings", json.dumps({"input": [item]}).encode())
            done = time.perf_counter()
            if now >= begin and done <= end:
                latencies.append(done - now)
            i += 1
        writer.close()

    before = httpx.get(f"{url}/bench/stats").json()
    await asyncio.gather(*(client(n) for n in range(clients)))
    after = httpx.get(f"{url}/bench/stats").json()
    calls = after["batches"] - before["batches"]
    return {
        "rps": len(latencies) / duration_s,
        "p50_ms": statistics.median(latencies) * 1000,
        "items_per_call": (after["items"] - before["items"]) / max(calls, 1),
    }


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def table(rows: dict, workloads: list[str], concurrency: list[int]) -> str:
    lines = [
        "| workload | clients | unmerged req/s (= items/s) | merged req/s (= items/s) | merged / unmerged | items per model call, merged | p50 latency unmerged / merged |",
        "|---|---|---|---|---|---|---|",
    ]
    for workload in workloads:
        for clients in concurrency:
            off, on = rows["unmerged", workload, clients], rows["merged", workload, clients]
            lines.append(
                f"| {workload} | {clients} | {off['rps']:,.0f} | {on['rps']:,.0f} | **{on['rps'] / off['rps']:.2f}x** | "
                f"{on['items_per_call']:.1f} | {off['p50_ms']:.1f} / {on['p50_ms']:.1f} ms |"
            )
    lines += ["", "With one client both settings do the same work (a lone request does not wait for company), so "
              "that row's ratio shows run-to-run noise."]  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--model", default=str(TINY), help="hub name or checkpoint folder (default: the tiny test model)"
    )
    parser.add_argument("--device", help="torch device of the server (default: CUDA if available)")
    parser.add_argument("--duration", type=float, default=4.0, help="seconds measured per cell")
    parser.add_argument("--smoke", action="store_true", help="text only, 1 and 8 clients, 0.5 s per cell")
    parser.add_argument("--write", action="store_true", help="append the result to benchmarks/RESULTS.md")
    parser.add_argument("--serve", metavar="OPTIONS", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve is not None:
        serve(args.model, args.device, json.loads(args.serve))
        return ""
    workloads, concurrency, warmup = ["text", "mixed"], [1, 8, 64], 1.0
    if args.smoke:
        workloads, concurrency, warmup, args.duration = ["text"], [1, 8], 0.2, 0.5
    rows, device = {}, ""
    for name, options in CONFIGS.items():
        worker, url, device = start(args.model, args.device, options)
        try:
            for workload in workloads:
                for clients in concurrency:
                    rows[name, workload, clients] = asyncio.run(drive(url, workload, clients, warmup, args.duration))
                    print(f"{name}/{workload}/{clients}: {rows[name, workload, clients]}", file=sys.stderr)
        finally:
            worker.terminate()
            worker.wait(60)
    report = table(rows, workloads, concurrency)
    print(report)
    if args.write:
        from importlib.metadata import version

        import torch

        header = (
            f"\n### bench_server.py, {Path(args.model).name}, {device} ({datetime.date.today()})\n\n"
            f"Machine: {cpu_name()}, {torch.get_num_threads()} threads, "
            f"{platform.system()}; torch {torch.__version__}, fastapi {version('fastapi')}, uvicorn {version('uvicorn')}, "
            f"httpx {version('httpx')}, Python {platform.python_version()}. Merged: the default settings "
            f"(max_batch_items 64, max_wait_ms 5); unmerged: max_batch_items 1, max_wait_ms 0. Closed-loop clients, "
            f"{args.duration:g} s per cell after {warmup:g} s of warm-up, client and server on the same machine. "
            f"Command: `python benchmarks/bench_server.py{' --model ' + args.model if args.model != str(TINY) else ''} --write`.\n\n"
        )
        with open(ROOT / "benchmarks" / "RESULTS.md", "a", encoding="utf-8") as f:
            f.write(header + report + "\n")
    return report


if __name__ == "__main__":
    main()
