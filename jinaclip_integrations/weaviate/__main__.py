"""``python -m jinaclip_integrations.weaviate``: serve a jina-clip model as Weaviate's inference container.

It serves the embedding server of ``jinaclip serve`` (:func:`jinaclip_integrations.server.create_app`),
whose Weaviate routes are those of :mod:`jinaclip_integrations.server.weaviate_routes`: the same
options and settings (:mod:`jinaclip_integrations.settings`), so the same limits, API key and
micro-batcher; only the default port is Weaviate's usual 8080.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from .. import settings
from ..errors import JinaCLIPError
from ..server import add_server_arguments, open_host_warning, settings_from_args

if TYPE_CHECKING:
    from fastapi import FastAPI

__all__ = ["build_app", "build_parser", "main"]

PROG = "python -m jinaclip_integrations.weaviate"

EPILOG = """Point Weaviate at it with CLIP_INFERENCE_API=http://HOST:PORT (multi2vec-clip), or
TRANSFORMERS_PASSAGE_INFERENCE_API=http://HOST:PORT/passage and
TRANSFORMERS_QUERY_INFERENCE_API=http://HOST:PORT/query (text2vec-transformers).
Weaviate's modules send no API key: with one set (--api-key, $JINACLIP_API_KEY), add
--weaviate-open to leave the Weaviate routes open (use --host 0.0.0.0 to accept a Weaviate container)."""


def build_parser() -> argparse.ArgumentParser:
    """The launcher's options: the model's, then the server's (:func:`add_server_arguments`)."""
    values = settings.values()
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Serve a jina-clip model with Weaviate's multi2vec-clip and text2vec-transformers protocols.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", default=values["model"], help="hub name or local checkpoint folder (%(default)s)")
    parser.add_argument("--device", default=values["device"], help="torch device (default: CUDA when available)")
    parser.add_argument(
        "--dtype",
        default=values["dtype"],
        choices=settings.DTYPES,
        help="default: float32 on the CPU (a vector must not depend on its batch), bf16 on CUDA",
    )
    add_server_arguments(parser)
    parser.set_defaults(port=8080)
    return parser


def build_app(args: argparse.Namespace) -> FastAPI:
    """The app the launcher serves for ``args`` (from :func:`build_parser`): ``create_app`` of
    the engine of ``args.model``, under :func:`settings_from_args`.

    Raises:
        ValueError: an option is out of range (before the model is loaded), or the checkpoint
            cannot be loaded.
    """
    from ..engine import shared_engine
    from ..server import create_app, serving_dtype

    server_settings = settings_from_args(args)
    engine = shared_engine(args.model, device=args.device, dtype=serving_dtype(args.dtype, args.device))
    return create_app(engine, server_settings)


def main(argv: list[str] | None = None) -> None:
    """Parse ``argv``, load the model and serve it until interrupted."""
    try:
        args = build_parser().parse_args(argv)
        app = build_app(args)
    except (JinaCLIPError, ValueError) as exc:  # a bad setting or option, a checkpoint that cannot be loaded
        sys.exit(f"{PROG}: error: {exc}")

    if warning := open_host_warning(settings_from_args(args), args.host):
        print(f"{PROG}: {warning}", file=sys.stderr)
    import uvicorn

    uvicorn.run(app, host=args.host, port=args.port)


if __name__ == "__main__":
    main()
