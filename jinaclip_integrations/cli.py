"""The ``jinaclip`` command line: index, search, list, embed, serve and describe a model.

    jinaclip index photos/ docs/ "notes/**/*.md"  # the embedded Qdrant store follows these files
    jinaclip index --ray --ray-address auto --qdrant-url http://qdrant:6333 s3://bucket/photos/
    jinaclip search "a dog on the beach"          # texts and images in one ranking
    jinaclip search --image query.jpg --json
    jinaclip ls / jinaclip delete docs/old.pdf / jinaclip stats
    jinaclip embed "some text" --image a.jpg -o vectors.jsonl
    jinaclip classify cat.jpg dog.jpg --labels "a photo of a cat" "a photo of a dog"   # zero-shot
    jinaclip serve --port 8000                    # OpenAI/Jina /v1/embeddings + Weaviate routes
    jinaclip serve --model jinaai/jina-clip-v2 --model jinaai/jina-clip-v1   # several models at once
    jinaclip info
    jinaclip export-onnx onnx/                    # text.onnx + vision.onnx (pip install "jinaclip-integrations[onnx]")

Defaults come from :mod:`jinaclip_integrations.settings`: the environment (``JINACLIP_MODEL``,
``JINACLIP_STORE``...), then the config file, then built-in values; the command line wins.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter
from collections.abc import Sequence
from contextlib import closing
from functools import partial
from pathlib import Path
from typing import Any

from . import settings
from ._lazy import needs_extra
from .errors import JinaCLIPError
from .ingest.chunking import ChunkOptions
from .ingest.walk import REASONS

DEFAULT_CHUNK = ChunkOptions()


# -- the commands --------------------------------------------------------------------------


def cmd_index(args: argparse.Namespace) -> int:
    """Make the store follow files and folders; print what changed, what failed, what was ignored.

    The paths are walked first, so a missing one fails at once and creates nothing; the model's
    weights load only when something new is to be embedded."""
    chunking = ChunkOptions(max_tokens=args.chunk_tokens, overlap=args.chunk_overlap)
    if args.ray:
        return _index_with_ray(args, chunking)
    ray_only = {"--ray-address": args.ray_address, "--ray-workers": args.ray_workers, "--ray-gpus": args.ray_gpus,
                "--parquet": args.parquet}  # fmt: skip
    if given := [flag for flag, value in ray_only.items() if value is not None]:
        raise JinaCLIPError(f"{', '.join(given)} only apply to a Ray job: add --ray")
    listing = _listing(args)
    from .ingest.sync import sync_files

    with _vectorizer(args, create=True) as store:
        report = sync_files(store.store, store.engine, listing, options=chunking, prune=not args.no_prune,
                            on_error=args.on_error, batch_size=store.batch_size, show_progress=store.show_progress)  # fmt: skip
        total = store.count()
    return _reported(args, report, _where(args), total)


def _listing(args: argparse.Namespace) -> Any:
    """The files to index: the paths walked as the flags say (a missing path is an error)."""
    from .ingest.readers import format_of
    from .ingest.walk import walk

    skip = [] if args.qdrant_url else [Path(args.store).expanduser() / args.collection]
    return walk(args.paths, supported=lambda path: format_of(path) is not None, include=args.include,
                exclude=args.exclude, skip=skip, gitignore=not args.no_gitignore)  # fmt: skip


def _summary(report: Any, where: str, total: int | None) -> str:
    """The lines ``index`` prints: files by outcome, points, what was ignored and why."""
    files = ", ".join(f"{report.files[k]} {k}" for k in ("new", "changed", "unchanged", "removed", "failed"))
    reused = f" ({report.reused} reused)" if report.reused else ""
    lines = [
        f"indexed into {where}: {report.added} added{reused}, {report.existing} already stored, "
        f"{report.removed} removed, {len(report.failed)} failed"
        + ("" if total is None else f"; {total} points in all"),  # fmt: skip
        f"files: {files}; {report.chunks} text chunks"
        + (f", {report.truncated} texts cut to fit the model" if report.truncated else ""),  # fmt: skip
    ]
    if report.ignored:
        counts = Counter(skipped.reason for skipped in report.ignored)
        reasons = ", ".join(f"{n} {REASONS[key]}" for key, n in counts.most_common())
        lines.append(f"ignored: {len(report.ignored)} ({reasons}); -v lists them")
    return "\n".join(lines)


def _where(args: argparse.Namespace) -> str:
    return args.qdrant_url or shown(Path(args.store).expanduser() / args.collection)


def shown(path: str | os.PathLike | None) -> str:
    """A stored path as printed: relative to the current folder when it is inside it."""
    if path is None:
        return "-"
    text = str(path)
    if not os.path.isabs(text):
        return text
    try:
        relative = os.path.relpath(text)
    except ValueError:  # another drive (Windows)
        return text
    return text if relative.startswith("..") else relative


def _index_with_ray(args: argparse.Namespace, chunking: ChunkOptions) -> int:
    """``index --ray``: the same sync as a Ray Data job (see ``jinaclip_integrations.ray``), with the same summary."""
    from .ray import index_with_ray

    if args.on_error == "raise":
        raise JinaCLIPError("--on-error raise stops at the first bad file; a Ray job skips and reports them")
    if args.parquet:
        target, where = {"parquet": args.parquet}, f"{args.parquet} (Parquet)"
    elif args.qdrant_url:
        target, where = {"qdrant_url": args.qdrant_url}, _where(args)
    else:
        target, where = {"store": Path(args.store).expanduser()}, _where(args)
    report = index_with_ray(
        args.paths, **target, collection_name=args.collection, model_name=args.model, device=args.device,
        dtype=args.dtype, preset=args.preset, chunking=chunking, include=args.include, exclude=args.exclude,
        gitignore=not args.no_gitignore, prune=not args.no_prune, workers=args.ray_workers,
        gpus_per_worker=args.ray_gpus, address=args.ray_address, show_progress=False if args.quiet else None,
    )  # fmt: skip
    return _reported(args, report, where, report.stored)


def _reported(args: argparse.Namespace, report: Any, where: str, total: int | None) -> int:
    """Print an index run's summary (and with ``-v`` what was ignored), name the failures on
    stderr and in ``--report``; the exit status: 1 when something failed."""
    print(_summary(report, where, total))
    if args.verbose:
        for skipped in report.ignored:
            print(f"ignored: {shown(skipped.path)} ({REASONS[skipped.reason]})", file=sys.stderr)
    for failure in report.failed:
        print(f"failed: {shown(failure.source)}: {failure.reason}", file=sys.stderr)
    if args.report:
        Path(args.report).write_text("".join(f.to_json() + "\n" for f in report.failed), encoding="utf-8")
    return 1 if report.failed else 0


def cmd_search(args: argparse.Namespace) -> int:
    """Search with a text or an image; print one ranking of texts and images, or JSON."""
    if (args.query is None) == (args.image is None):
        raise JinaCLIPError('search needs a query text or --image FILE (one of them): jinaclip search "a red car"')
    if args.image is not None and "://" not in args.image and not Path(args.image).is_file():
        raise JinaCLIPError(f"--image {args.image}: no such file")
    options = {"limit": args.limit, "modality": args.modality, "image_weight": args.image_weight}
    if args.server:
        hits = _search_through_server(args, options)
    else:
        with _vectorizer(args, create=False) as store:
            if args.image is not None:
                hits = store.search_image(args.image, **options)
            else:
                hits = store.search_text(args.query, **options)
    if args.json:
        print(json.dumps([hit.to_json() for hit in hits], ensure_ascii=False, indent=2))
        return 0
    if not hits:
        print("no hits")
    else:
        print(f"{'':>3}  {'score':>7}  {'cosine':>7}  {'kind':<5}  source")
    for rank, hit in enumerate(hits, 1):
        snippet = " ".join((hit.text or "").split())
        snippet = f"  {snippet[:60]}{'...' if len(snippet) > 60 else ''}" if snippet else ""
        print(f"{rank:>3}  {hit.score:7.4f}  {hit.cosine:7.4f}  {hit.modality or '?':<5}  {_place(hit)}{snippet}")
    return 0


def _search_through_server(args: argparse.Namespace, options: dict[str, Any]) -> list:
    """``search --server URL``: the query embedded by a running server, the store searched here;
    the model is never loaded. The server must run the model the collection was made with."""
    from .store import merged_search, model_label

    remote = _remote(args)
    with _opened_store(args) as store:
        layout = store.layout()
        if model_label(remote.model()) != layout.model:
            raise JinaCLIPError(f"the server at {args.server} runs {remote.model()}, the collection holds {layout.model} vectors")  # fmt: skip
        if args.image is not None:
            vector = remote.encode_image([args.image])[0]
        else:
            vector = remote.encode_text([args.query], task="retrieval.query")[0]
        return merged_search(store, vector, **options)


def _remote(args: argparse.Namespace) -> Any:
    from .remote import RemoteEmbedder

    return RemoteEmbedder(args.server, api_key=settings.value("api_key"))


def _place(hit: Any) -> str:
    """Where a hit comes from: its source (relative to here), page and chunk."""
    place = shown(hit.source) if hit.source else hit.id
    page, chunk = hit.payload.get("page"), hit.payload.get("chunk")
    if page is not None:
        place += f" p.{page}"
    if chunk:
        place += f" #{chunk}"
    return place


def cmd_ls(args: argparse.Namespace) -> int:
    """List the sources the store holds, with their points (no model is loaded)."""
    from .store import source_summaries

    with _opened_store(args) as store:
        summaries = source_summaries(store)
    if args.json:
        print(json.dumps([s.to_json() for s in summaries], ensure_ascii=False, indent=2))
        return 0
    if not summaries:
        print("the store is empty")
    for s in summaries:
        print(f"{s.points:>6} points  {s.modalities['text']:>5} texts  {s.modalities['image']:>4} images  "
              f"{shown(s.source) if s.source else '(texts added without a source)'}")  # fmt: skip
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    """Remove the points of the given sources (no model is loaded)."""
    from .store import ids_of_sources

    sources = [s if "://" in s else os.path.abspath(s) for s in args.sources]
    with _opened_store(args) as store:
        found = ids_of_sources(store, sources)
        ids = [i for ids in found.values() for i in ids]
        if ids:
            store.delete(ids)
        total = store.count()
    missing = [source for source, ids in found.items() if not ids]
    print(f"removed {len(ids)} points of {len(found) - len(missing)} sources; {total} points in all")
    for source in missing:
        print(f"not in the store: {shown(source)}", file=sys.stderr)
    return 1 if missing else 0


def cmd_stats(args: argparse.Namespace) -> int:
    """Describe the store: its layout, points by modality, sources, size on disk."""
    from .store import source_summaries

    with _opened_store(args) as store:
        summaries = source_summaries(store)
        layout = store.layout()
        folders = store.folders()
    stats = {
        "store": _where(args),
        "model": layout.model,
        "dim": layout.dim,
        "short_dim": layout.short_dim,
        "preset": layout.preset,
        "points": sum(s.points for s in summaries),
        "texts": sum(s.modalities["text"] for s in summaries),
        "images": sum(s.modalities["image"] for s in summaries),
        "sources": sum(s.source is not None for s in summaries),
    }
    if folders:
        # blocks, not sizes: the engine's files are sparse
        stats["bytes_on_disk"] = sum(f.stat().st_blocks * 512 for folder in folders for f in folder.rglob("*") if f.is_file())  # fmt: skip
    return _print_fields(stats, args.json)


def _opened_store(args: argparse.Namespace) -> Any:
    """The store the arguments name, opened as it was made (no model needed)."""
    from .qdrant import open_store

    store = open_store(_qdrant_location(args, create=False), args.collection)
    store.open_existing()
    return closing(store)


def cmd_embed(args: argparse.Namespace) -> int:
    """Embed texts and images; write JSON lines (stdout or ``-o x.jsonl``) or a ``.npy`` matrix."""
    import numpy as np

    texts = list(args.texts)
    if args.text_file:
        texts += [line for line in Path(args.text_file).read_text(encoding="utf-8").splitlines() if line.strip()]
    if not texts and not args.image:
        raise JinaCLIPError("nothing to embed: give texts, --text-file FILE or --image FILE")
    if args.server:  # the server embeds: no model loaded here
        remote = _remote(args)
        encode_text = partial(remote.encode_text, dimensions=args.dimensions)
        encode_image = partial(remote.encode_image, dimensions=args.dimensions)
    else:
        engine = _engine(args)
        options = {"truncate_dim": args.dimensions, "show_progress": False if args.quiet else None}
        encode_text, encode_image = partial(engine.encode_text, **options), partial(engine.encode_image, **options)
    rows: list[tuple[str, str, Any]] = []
    if texts:
        vectors = encode_text(texts, task=args.task)
        rows += [("text", text, vector) for text, vector in zip(texts, vectors, strict=True)]
    if args.image:
        vectors = encode_image([str(p) for p in args.image])
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


def cmd_classify(args: argparse.Namespace) -> int:
    """Zero-shot classification: each image's probability for each label, most likely first
    (:meth:`JinaCLIPEngine.classify`: the model's own temperature, labels embedded as written)."""
    if args.top_k is not None and args.top_k < 1:
        raise JinaCLIPError(f"--top-k must be at least 1, got {args.top_k}")
    for image in args.images:  # before the model loads
        if "://" not in image and not image.startswith("data:") and not Path(image).expanduser().is_file():
            raise JinaCLIPError(f"{image}: no such file")
    probabilities = _engine(args).classify(args.images, args.labels, show_progress=False if args.quiet else None)
    results = []
    for image, row in zip(args.images, probabilities, strict=True):
        order = sorted(range(len(args.labels)), key=lambda j: -row[j])[: args.top_k]
        labels = [{"label": args.labels[j], "probability": float(row[j])} for j in order]
        results.append({"image": image, "labels": labels})
    if args.json:
        print(json.dumps(results, ensure_ascii=False, indent=2))
        return 0
    for result in results:
        print(shown(result["image"]))
        for entry in result["labels"]:
            print(f"  {100 * entry['probability']:6.2f}%  {entry['label']}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve /v1/embeddings (OpenAI and Jina), /v1/classify, /v1/models, /metrics, health and the
    Weaviate routes, for each ``--model`` given (each loaded once; requests pick one by name)."""
    with needs_extra("server", "jinaclip serve"):
        import uvicorn

        from .server import create_app, open_host_warning, serving_dtype, settings_from_args
        from .server.security import public_model_name
    from .engine import model_key, shared_engine

    server_settings = settings_from_args(args)
    if warning := open_host_warning(server_settings, args.host):
        print(f"jinaclip: {warning}", file=sys.stderr)
    progress = False if args.quiet else None
    names: dict[str, str] = {}  # each model once (a folder by its resolved path), in order
    for name in args.models or [args.model]:
        names.setdefault(model_key(name), name)
    public: dict[str, str] = {}  # clients pick a model by its public name: two may not share one
    for name in names.values():
        if (other := public.setdefault(public_model_name(name), name)) != name:
            raise ValueError(f"--model {other} and --model {name} would both be served as {public_model_name(name)!r}: serve one of them from a folder of another name")  # fmt: skip
    dtype = serving_dtype(args.dtype, args.device)
    engines = [shared_engine(name, device=args.device, dtype=dtype, show_progress=progress) for name in names.values()]  # fmt: skip
    app = create_app(engines, server_settings)
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
    return _print_fields(info, args.json)


def cmd_export_onnx(args: argparse.Namespace) -> int:
    """Export the model's text and vision towers to ONNX files (fp32, dynamic batch and length),
    with its config, tokenizer and preprocessor files beside them."""
    from .engine import JinaCLIPEngine, export_onnx, require_export_support

    require_export_support("jinaclip export-onnx")  # before minutes of loading the model

    quiet = False if args.quiet else None
    engine = JinaCLIPEngine.from_pretrained(args.model, device="cpu", dtype="float32", show_progress=quiet)
    written = export_onnx(engine, args.out_dir, **({"opset": args.opset} if args.opset else {}))
    size = sum(path.stat().st_size for path in written.values())
    print(f"exported {args.model} to {shown(args.out_dir)}: {', '.join(written)} ({size / 1e6:,.1f} MB)")
    return 0


def _print_fields(fields: dict[str, Any], as_json: bool) -> int:
    """Print a description: JSON, or one aligned ``name: value`` line per field."""
    if as_json:
        print(json.dumps(fields, indent=2))
        return 0
    width = max(map(len, fields))
    for key, value in fields.items():
        print(f"{key:>{width}}: {', '.join(map(str, value)) if isinstance(value, list) else value}")
    return 0


def _engine(args: argparse.Namespace):
    from .engine import shared_engine

    return shared_engine(args.model, device=args.device, dtype=args.dtype, show_progress=False if args.quiet else None)


def _qdrant_location(args: argparse.Namespace, *, create: bool) -> Any:
    """A client for ``--qdrant-url``, else the embedded store's folder; without ``create``, a
    collection that does not exist is an error (before any model is loaded)."""
    from .qdrant import LAYOUT_FILE

    if args.qdrant_url:
        from qdrant_client import QdrantClient

        client = QdrantClient(url=args.qdrant_url, api_key=settings.value("qdrant_api_key"))
        if not create and not client.collection_exists(args.collection):
            raise JinaCLIPError(f"no collection {args.collection!r} at {args.qdrant_url}: run `jinaclip index` first")
        return client
    store = Path(args.store).expanduser()
    if not create and not (store / args.collection / LAYOUT_FILE).is_file():
        raise JinaCLIPError(f"nothing indexed in {store / args.collection}: run `jinaclip index PATH...` first")
    return store


def _vectorizer(args: argparse.Namespace, *, create: bool):
    """The Qdrant store the arguments name, with the model (whose weights load when first used)."""
    from .engine import LazyEngine
    from .qdrant import QdrantVectorizer

    location = _qdrant_location(args, create=create)
    engine = LazyEngine(args.model, device=args.device, dtype=args.dtype, show_progress=False if args.quiet else None)
    return QdrantVectorizer(
        location, args.collection, engine=engine, show_progress=False if args.quiet else None,
        **({"preset": args.preset} if getattr(args, "preset", None) else {}),
    )  # fmt: skip


# -- the parser ----------------------------------------------------------------------------


class _EveryModel(argparse.Action):
    """``--model``: the last one given is ``args.model``, the model of every command; ``serve``
    serves all of them, listed in ``args.models``."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any, option_string: str | None = None) -> None:  # fmt: skip
        setattr(namespace, self.dest, values)
        namespace.models = [*(getattr(namespace, "models", None) or []), values]


def build_parser(values: dict[str, Any]) -> argparse.ArgumentParser:
    """The argument parser, with ``values`` (see :func:`defaults`) as the defaults."""
    from ._version import __version__
    from .server import add_server_arguments

    parser = argparse.ArgumentParser(
        prog="jinaclip", description="Run jina-clip locally: index and search texts and images, embed, serve."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--model", action=_EveryModel, default=values["model"], help="hub name or checkpoint folder (%(default)s)")  # fmt: skip
    common.add_argument("--device", default=values.get("device"), help="torch device (default: CUDA if available)")
    common.add_argument("--dtype", default=values.get("dtype"), choices=settings.DTYPES)
    common.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    store = argparse.ArgumentParser(add_help=False)
    store.add_argument("--store", default=values["store"], help="embedded Qdrant store folder (%(default)s)")
    store.add_argument("--qdrant-url", default=values.get("qdrant_url"), help="a Qdrant server instead of the store")
    store.add_argument("--collection", default=values["collection"], help="collection name (%(default)s)")

    index = commands.add_parser(
        "index", parents=[common, store], help="make the store follow files and folders (texts, images, PDFs...)",
        description="Index files, folders and globs into the store, and keep it in step with them: new and "
        "changed files are (re)indexed, unchanged ones skipped, deleted ones removed (unless --no-prune). "
        "Texts, markdown, HTML, PDF, Word and CSV files are read and cut into chunks; images are embedded "
        "as they are, and so are the images inside PDFs and Word files.",
    )  # fmt: skip
    index.add_argument("paths", nargs="+", help="files, folders (searched recursively) and globs ('docs/**/*.md')")
    index.add_argument("--include", action="append", default=[], metavar="GLOB", help="only files matching GLOB (repeat for more)")  # fmt: skip
    index.add_argument("--exclude", action="append", default=[], metavar="GLOB", help="skip files and folders matching GLOB (gitignore syntax; repeat for more)")  # fmt: skip
    index.add_argument("--no-gitignore", action="store_true", help="index what .gitignore files ignore")
    index.add_argument("--no-prune", action="store_true", help="only add: keep the points of files gone from the folders")  # fmt: skip
    index.add_argument("--chunk-tokens", type=int, default=DEFAULT_CHUNK.max_tokens, help="tokens per text chunk (%(default)s; up to 8190)")  # fmt: skip
    index.add_argument("--chunk-overlap", type=int, default=DEFAULT_CHUNK.overlap, help="tokens repeated between chunks (%(default)s)")  # fmt: skip
    index.add_argument("-v", "--verbose", action="store_true", help="list every ignored file and folder with the reason")  # fmt: skip
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

    search = commands.add_parser(
        "search", parents=[common, store], help="search with a text or an image: texts and images in one ranking",
        description="Search the store. Texts and images come in one ranking: each modality's cosine scores are "
        "standardized over its candidates and mapped to (0, 1) (the score shown), so images are not buried under "
        "texts by CLIP's modality gap; --modality ranks one modality by cosine similarity.",
    )  # fmt: skip
    search.add_argument("query", nargs="?", help="the text to search with")
    search.add_argument("--image", help="an image file or URL to search with instead")
    search.add_argument("--limit", "-k", type=int, default=10, help="number of hits (%(default)s)")
    search.add_argument("--modality", choices=["text", "image"], help="only hits of this kind, ranked by cosine")
    search.add_argument("--image-weight", type=float, default=1.0, help="weight of images in the merged ranking (%(default)s; 0: texts first)")  # fmt: skip
    search.add_argument("--json", action="store_true", help="print a JSON list of hits")
    search.add_argument("--server", default=values.get("server"), help="embed the query with a running `jinaclip serve` at URL (no model loaded here)")  # fmt: skip
    search.set_defaults(run=cmd_search)

    listing = commands.add_parser("ls", parents=[store], help="list the sources in the store, with their points")
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(run=cmd_ls)
    delete = commands.add_parser("delete", parents=[store], help="remove the points of files from the store")
    delete.add_argument("sources", nargs="+", metavar="SOURCE", help="a file as indexed (a path; relative to here)")
    delete.set_defaults(run=cmd_delete)
    stats = commands.add_parser("stats", parents=[store], help="describe the store: layout, points, size")
    stats.add_argument("--json", action="store_true", help="print JSON")
    stats.set_defaults(run=cmd_stats)

    embed = commands.add_parser("embed", parents=[common], help="embed texts and images to JSONL or .npy")
    embed.add_argument("texts", nargs="*", help="texts to embed")
    embed.add_argument("--text-file", help="a UTF-8 file with one text per line")
    embed.add_argument("--image", action="append", default=[], type=Path, help="an image file (repeat for more)")
    embed.add_argument("--task", help="text task, e.g. retrieval.query (default: none, as for documents)")
    embed.add_argument("--dimensions", type=int, help="Matryoshka size (e.g. 256)")
    embed.add_argument("-o", "--output", type=Path, help="output file: .jsonl (default: stdout) or .npy")
    embed.add_argument("--server", default=values.get("server"), help="embed with a running `jinaclip serve` at URL (no model loaded here)")  # fmt: skip
    embed.set_defaults(run=cmd_embed)

    classify = commands.add_parser(
        "classify", parents=[common], help="zero-shot classification: which of the labels fits each image",
        description="For each image, the probability of each label: the softmax over the labels of the model's "
        "own logit scale times the cosine similarity, as CLIP classifies. Labels are embedded as written: a "
        "prompt such as 'a photo of a cat' usually works better than 'cat'. Probabilities are relative to the "
        "labels given.",
    )  # fmt: skip
    classify.add_argument("images", nargs="+", metavar="IMAGE", help="image files or URLs")
    classify.add_argument("--labels", nargs="+", required=True, metavar="LABEL", help="the candidate labels")
    classify.add_argument("--top-k", type=int, help="only the K most likely labels per image")
    classify.add_argument("--json", action="store_true", help="print JSON: per image, its labels and probabilities, most likely first")  # fmt: skip
    classify.set_defaults(run=cmd_classify)

    serve = commands.add_parser(
        "serve", parents=[common], help="serve the embeddings HTTP API",
        description="Serve /v1/embeddings (OpenAI and Jina), /v1/classify (zero-shot image classification), "
        "/v1/models, /metrics, health and Weaviate's inference routes. Repeat --model to serve several models: requests pick one by their model field (the first by "
        "default), the Weaviate routes serve the first.",
    )  # fmt: skip
    add_server_arguments(serve)  # needs no extra; running the server does
    serve.set_defaults(run=cmd_serve, models=None)

    info = commands.add_parser("info", parents=[common], help="describe the model: device, dtype, sizes, tasks")
    info.add_argument("--json", action="store_true", help="print JSON")
    info.set_defaults(run=cmd_info)

    export = commands.add_parser(
        "export-onnx", help="export the text and vision towers to ONNX (needs the onnx extra)",
        description="Write text.onnx (input_ids, attention_mask -> features) and vision.onnx (pixels -> "
        "features) to OUT_DIR: fp32, dynamic batch and length, the model's config, tokenizer and preprocessor "
        "files beside them. The features are the towers' outputs before Matryoshka truncation and "
        "normalization. The model is loaded on the CPU in float32, whatever --device and --dtype say elsewhere.",
    )  # fmt: skip
    export.add_argument("out_dir", type=Path, metavar="OUT_DIR", help="the folder to write (created if need be)")
    export.add_argument("--model", default=values["model"], help="hub name or checkpoint folder (%(default)s)")
    export.add_argument("--opset", type=int, help="ONNX opset (default: 18, the exporter's own)")
    export.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    export.set_defaults(run=cmd_export_onnx)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 1 failed items or an error)."""
    args = argparse.Namespace(command=None, qdrant_url=None)
    try:
        parser = build_parser(settings.values())
        args = parser.parse_args(argv)
        return args.run(args)
    except BrokenPipeError:  # the reader left (`jinaclip ls | head`): not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
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
