"""``python -m jinaclip_integrations.weaviate``: serve a jina-clip model as Weaviate's inference container."""

from __future__ import annotations

import argparse

EPILOG = """Point Weaviate at it with CLIP_INFERENCE_API=http://HOST:PORT (multi2vec-clip), or
TRANSFORMERS_PASSAGE_INFERENCE_API=http://HOST:PORT/passage and
TRANSFORMERS_QUERY_INFERENCE_API=http://HOST:PORT/query (text2vec-transformers)."""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m jinaclip_integrations.weaviate",
        description="Serve a jina-clip model with Weaviate's multi2vec-clip and text2vec-transformers protocols.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", default="jinaai/jina-clip-v2", help="hub name or local checkpoint folder")
    parser.add_argument("--device", help="torch device (default: CUDA when available, else CPU)")
    parser.add_argument(
        "--dtype", choices=["float32", "bfloat16", "float16"], help="default: bf16 on CUDA, fp32 on CPU"
    )
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default: %(default)s; 0.0.0.0 to accept a Weaviate container)",
    )
    parser.add_argument("--port", type=int, default=8080, help="port to listen on (default: %(default)s)")
    args = parser.parse_args(argv)

    import uvicorn

    from ..engine import shared_engine
    from .inference import create_inference_app

    engine = shared_engine(args.model, device=args.device, dtype=args.dtype)
    uvicorn.run(create_inference_app(engine), host=args.host, port=args.port)


if __name__ == "__main__":
    main()
