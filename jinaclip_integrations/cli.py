"""The ``jinaclip`` command line: index, search, embed, serve and describe a model.

    jinaclip index photos/ notes/                 # into the embedded Qdrant store
    jinaclip index --ray --ray-address auto --qdrant-url http://qdrant:6333 s3://bucket/photos/
    jinaclip search "a dog on the beach"          # ranked hits with scores and sources
    jinaclip search --image query.jpg --json
    jinaclip embed "some text" --image a.jpg -o vectors.jsonl
    jinaclip serve --port 8000                    # OpenAI/Jina /v1/embeddings + Weaviate routes
    jinaclip info

Defaults come, in this order, from the command line, the environment (``JINACLIP_MODEL``,
``JINACLIP_DEVICE``, ``JINACLIP_DTYPE``, ``JINACLIP_STORE``, ``JINACLIP_QDRANT_URL``,
``JINACLIP_COLLECTION``, ``QDRANT_API_KEY``), the config file (``$XDG_CONFIG_HOME/jinaclip/config.toml``
or ``~/.config/jinaclip/config.toml``, keys ``model``, ``device``, ``dtype``, ``store``,
``qdrant_url``, ``collection``; ``JINACLIP_CONFIG`` names another file) and built-in values.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .errors import JinaCLIPError

DEFAULT_MODEL = "jinaai/jina-clip-v2"
DEFAULT_COLLECTION = "jina-clip"
DTYPES = ("float32", "bfloat16", "float16")
#: setting -> environment variable; the config file uses the setting's name as its key
ENV = {
    "model": "JINACLIP_MODEL",
    "device": "JINACLIP_DEVICE",
    "dtype": "JINACLIP_DTYPE",
    "store": "JINACLIP_STORE",
    "qdrant_url": "JINACLIP_QDRANT_URL",
    "collection": "JINACLIP_COLLECTION",
}


def config_file() -> Path:
    """Where the config file is read from."""
    if os.environ.get("JINACLIP_CONFIG"):
        return Path(os.environ["JINACLIP_CONFIG"]).expanduser()
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "jinaclip" / "config.toml"


def default_store() -> Path:
    """The embedded store's default folder, in the user's data directory."""
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "jinaclip" / "store"


def defaults() -> dict[str, Any]:
    """Settings from the environment over the config file over built-in values."""
    import tomllib

    values: dict[str, Any] = {"model": DEFAULT_MODEL, "collection": DEFAULT_COLLECTION, "store": str(default_store())}
    path = config_file()
    if path.is_file():
        try:
            found = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise JinaCLIPError(f"cannot read the config file {path}: {exc}") from None
        unknown = set(found) - set(ENV)
        if unknown:
            raise JinaCLIPError(f"unknown keys in {path}: {sorted(unknown)}; known: {sorted(ENV)}")
        values.update(found)
    values.update({key: os.environ[var] for key, var in ENV.items() if os.environ.get(var)})
    if values.get("dtype") not in (None, *DTYPES):
        raise JinaCLIPError(f"dtype {values['dtype']!r} (from the environment or {path}) is not one of {list(DTYPES)}")
    return values


# -- the commands --------------------------------------------------------------------------


def cmd_index(args: argparse.Namespace) -> int:
    """Index files and folders into the store; print what was added, skipped and failed."""
    if args.ray:
        return _index_with_ray(args)
    ray_only = {"--ray-address": args.ray_address, "--ray-workers": args.ray_workers, "--ray-gpus": args.ray_gpus,
                "--parquet": args.parquet}  # fmt: skip
    if given := [flag for flag, value in ray_only.items() if value is not None]:
        raise JinaCLIPError(f"{', '.join(given)} only apply to a Ray job: add --ray")
    with _vectorizer(args, create=True) as store:
        report = store.add_files(args.paths, on_error=args.on_error)
        where = args.qdrant_url or str(Path(args.store) / args.collection)
        print(
            f"indexed into {where}: {report.added} added, {report.existing} already stored, "
            f"{len(report.failed)} failed, {len(report.ignored)} other files ignored; {store.count()} points in all"
        )
    _print_failures(report.failed)
    if args.report:
        Path(args.report).write_text("".join(f.to_json() + "\n" for f in report.failed), encoding="utf-8")
    return 1 if report.failed else 0


def _index_with_ray(args: argparse.Namespace) -> int:
    """``index --ray``: the same job as a Ray Data pipeline (see ``jinaclip_integrations.ray``)."""
    from .ray import index_with_ray

    if args.on_error == "raise":
        raise JinaCLIPError("--on-error raise stops at the first bad file; a Ray job skips and reports them")
    if args.parquet:
        target, where = {"parquet": args.parquet}, f"{args.parquet} (Parquet)"
    elif args.qdrant_url:
        target, where = {"qdrant_url": args.qdrant_url}, args.qdrant_url
    else:
        target, where = {"store": Path(args.store).expanduser()}, str(Path(args.store) / args.collection)
    result = index_with_ray(
        args.paths, **target, collection_name=args.collection, model_name=args.model, device=args.device,
        dtype=args.dtype, preset=args.preset, workers=args.ray_workers, gpus_per_worker=args.ray_gpus,
        report=args.report, address=args.ray_address, show_progress=False if args.quiet else None,
    )  # fmt: skip
    stored = "" if result.stored is None else f"; {result.stored} points in all"
    print(
        f"indexed into {where} with Ray: {result.read} read, {result.embedded} embedded, {result.written} written, "
        f"{result.existing} already stored, {result.skipped} failed, {result.ignored} other files ignored{stored}"
    )
    _print_failures(result.failed)  # the job wrote them to --report as it went
    return 1 if result.failed else 0


def _print_failures(failures: list) -> None:
    for failure in failures:
        print(f"failed: {failure.source}: {failure.reason}", file=sys.stderr)


def cmd_search(args: argparse.Namespace) -> int:
    """Search with a text or an image; print a ranked table or JSON."""
    if (args.query is None) == (args.image is None):
        raise JinaCLIPError('search needs a query text or --image FILE (one of them): jinaclip search "a red car"')
    with _vectorizer(args, create=False) as store:
        if args.image is not None:
            hits = store.search_image(args.image, limit=args.limit, modality=args.modality)
        else:
            hits = store.search_text(args.query, limit=args.limit, modality=args.modality)
    if args.json:
        rows = [
            {"score": h.score, "source": h.source, "modality": h.modality, "text": h.text, "id": h.id} for h in hits
        ]
        print(json.dumps(rows, ensure_ascii=False, indent=2))
        return 0
    if not hits:
        print("no hits")
    for rank, hit in enumerate(hits, 1):
        snippet = " ".join((hit.text or "").split())
        snippet = f"  {snippet[:60]}{'...' if len(snippet) > 60 else ''}" if snippet else ""
        print(f"{rank:>3}  {hit.score:7.4f}  {hit.modality or '?':<5}  {hit.source or hit.id}{snippet}")
    return 0


def cmd_embed(args: argparse.Namespace) -> int:
    """Embed texts and images; write JSON lines (stdout or ``-o x.jsonl``) or a ``.npy`` matrix."""
    import numpy as np

    texts = list(args.texts)
    if args.text_file:
        texts += [line for line in Path(args.text_file).read_text(encoding="utf-8").splitlines() if line.strip()]
    if not texts and not args.image:
        raise JinaCLIPError("nothing to embed: give texts, --text-file FILE or --image FILE")
    engine = _engine(args)
    options = {"truncate_dim": args.dimensions, "show_progress": False if args.quiet else None}
    rows: list[tuple[str, str, Any]] = []
    if texts:
        vectors = engine.encode_text(texts, task=args.task, **options)
        rows += [("text", text, vector) for text, vector in zip(texts, vectors, strict=True)]
    if args.image:
        vectors = engine.encode_image([str(p) for p in args.image], **options)
        rows += [("image", str(path), vector) for path, vector in zip(args.image, vectors, strict=True)]
    if args.output and args.output.suffix == ".npy":
        np.save(args.output, np.stack([vector for _, _, vector in rows]))
        return 0
    out = open(args.output, "w", encoding="utf-8") if args.output else sys.stdout  # noqa: SIM115
    try:
        for index, (modality, item, vector) in enumerate(rows):
            line = {"index": index, "modality": modality, "input": item, "embedding": vector.tolist()}
            out.write(json.dumps(line, ensure_ascii=False) + "\n")
    finally:
        if out is not sys.stdout:
            out.close()
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve /v1/embeddings (OpenAI and Jina), /v1/models, health and the Weaviate routes."""
    try:
        import uvicorn

        from .server import create_app, settings_from_args
    except ImportError as exc:
        raise ImportError(f'jinaclip serve needs FastAPI and uvicorn ({exc}): pip install "jinaclip-integrations[server]"') from exc  # fmt: skip
    settings = settings_from_args(args)
    if settings.api_key is None and args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"jinaclip: warning: serving on {args.host} without an API key: anyone who can reach this port can "
              "use it; set --api-key or JINACLIP_API_KEY", file=sys.stderr)  # fmt: skip
    app = create_app(_engine(args), settings)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning" if args.quiet else "info")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    """Describe the model as loaded: name, device, dtype, sizes and tasks."""
    engine = _engine(args)
    info = {
        "model": str(engine.name_or_path),
        "device": str(engine.device),
        "dtype": str(engine.dtype).removeprefix("torch."),
        "embedding_dim": engine.embedding_dim,
        "matryoshka_dims": list(engine.matryoshka_dims),
        "tasks": list(engine.tasks),
        "max_length": engine.max_length,
    }
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        for key, value in info.items():
            print(f"{key:>15}: {', '.join(map(str, value)) if isinstance(value, list) else value}")
    return 0


def _engine(args: argparse.Namespace):
    from .engine import shared_engine

    return shared_engine(args.model, device=args.device, dtype=args.dtype, show_progress=False if args.quiet else None)


def _vectorizer(args: argparse.Namespace, *, create: bool):
    """The Qdrant store the arguments name: a server (``--qdrant-url``) or the embedded engine."""
    from .qdrant import LAYOUT_FILE, QdrantVectorizer

    if args.qdrant_url:
        from qdrant_client import QdrantClient

        client = QdrantClient(url=args.qdrant_url, api_key=os.environ.get("QDRANT_API_KEY"))
        if not create and not client.collection_exists(args.collection):
            raise JinaCLIPError(f"no collection {args.collection!r} at {args.qdrant_url}: run `jinaclip index` first")
        store: Any = client
    else:
        store = Path(args.store).expanduser()
        if not create and not (store / args.collection / LAYOUT_FILE).is_file():
            raise JinaCLIPError(f"nothing indexed in {store / args.collection}: run `jinaclip index PATH...` first")
    return QdrantVectorizer(
        store, args.collection, engine=_engine(args), show_progress=False if args.quiet else None,
        **({"preset": args.preset} if getattr(args, "preset", None) else {}),
    )  # fmt: skip


# -- the parser ----------------------------------------------------------------------------


def build_parser(values: dict[str, Any]) -> argparse.ArgumentParser:
    """The argument parser, with ``values`` (see :func:`defaults`) as the defaults."""
    from . import __version__
    from .server import add_server_arguments

    parser = argparse.ArgumentParser(
        prog="jinaclip", description="Run jina-clip locally: index and search texts and images, embed, serve."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--model", default=values["model"], help="hub name or checkpoint folder (%(default)s)")
    common.add_argument("--device", default=values.get("device"), help="torch device (default: CUDA if available)")
    common.add_argument("--dtype", default=values.get("dtype"), choices=DTYPES)
    common.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    store = argparse.ArgumentParser(add_help=False)
    store.add_argument("--store", default=values["store"], help="embedded Qdrant store folder (%(default)s)")
    store.add_argument("--qdrant-url", default=values.get("qdrant_url"), help="a Qdrant server instead of the store")
    store.add_argument("--collection", default=values["collection"], help="collection name (%(default)s)")

    index = commands.add_parser("index", parents=[common, store], help="index image and text files and folders")
    index.add_argument("paths", nargs="+", help="files and folders (searched recursively)")
    index.add_argument("--preset", choices=["default", "int8", "binary"], help="collection layout for a new collection")
    index.add_argument("--on-error", choices=["skip", "raise"], default="skip", help="unreadable files (%(default)s)")
    index.add_argument("--report", type=Path, help="write the bad files to FILE, a JSON line each (path, reason)")
    scale = index.add_argument_group("Ray", "run as a Ray Data job: many CPUs decode, one engine per GPU embeds")
    scale.add_argument("--ray", action="store_true", help="index with Ray Data (paths may be URIs: s3://bucket/dir/)")
    scale.add_argument("--ray-address", help="the Ray cluster (auto: the one this machine is in; default: a local Ray)")
    scale.add_argument("--ray-workers", type=int, help="embedding actors (default: one per GPU, else 1)")
    scale.add_argument("--ray-gpus", type=float, help="GPUs per embedding actor (default: 1 on a GPU cluster, else 0)")
    scale.add_argument("--parquet", help="write Parquet files of vectors to this folder or URI instead of Qdrant")
    index.set_defaults(run=cmd_index)

    search = commands.add_parser("search", parents=[common, store], help="search with a text or an image")
    search.add_argument("query", nargs="?", help="the text to search with")
    search.add_argument("--image", help="an image file or URL to search with instead")
    search.add_argument("--limit", "-k", type=int, default=10, help="number of hits (%(default)s)")
    search.add_argument("--modality", choices=["text", "image"], help="only hits of this kind")
    search.add_argument("--json", action="store_true", help="print a JSON list of hits")
    search.set_defaults(run=cmd_search)

    embed = commands.add_parser("embed", parents=[common], help="embed texts and images to JSONL or .npy")
    embed.add_argument("texts", nargs="*", help="texts to embed")
    embed.add_argument("--text-file", help="a UTF-8 file with one text per line")
    embed.add_argument("--image", action="append", default=[], type=Path, help="an image file (repeat for more)")
    embed.add_argument("--task", help="text task, e.g. retrieval.query (default: none, as for documents)")
    embed.add_argument("--dimensions", type=int, help="Matryoshka size (e.g. 256)")
    embed.add_argument("-o", "--output", type=Path, help="output file: .jsonl (default: stdout) or .npy")
    embed.set_defaults(run=cmd_embed)

    serve = commands.add_parser("serve", parents=[common], help="serve the embeddings HTTP API")
    add_server_arguments(serve)  # needs no extra; running the server does
    serve.set_defaults(run=cmd_serve)

    info = commands.add_parser("info", parents=[common], help="describe the model: device, dtype, sizes, tasks")
    info.add_argument("--json", action="store_true", help="print JSON")
    info.set_defaults(run=cmd_info)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 1 failed items or an error)."""
    args = argparse.Namespace(command=None, qdrant_url=None)
    try:
        parser = build_parser(defaults())
        args = parser.parse_args(argv)
        return args.run(args)
    except (JinaCLIPError, ValueError, ImportError, OSError) as exc:  # InputError and StoreError included
        print(f"jinaclip: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        resume = " (what was indexed stays; run the same command again to go on)" if args.command == "index" else ""
        print(f"jinaclip: interrupted{resume}", file=sys.stderr)
        return 130
    except Exception as exc:
        if type(exc).__module__.split(".")[0] in ("qdrant_client", "httpx", "httpcore", "grpc"):  # a server's answer
            print(f"jinaclip: error: Qdrant at {args.qdrant_url}: {exc}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
