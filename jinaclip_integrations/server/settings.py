"""What the embedding server allows and how it batches: :class:`ServerSettings`, and the
command-line options that set it (:func:`add_server_arguments`, :func:`settings_from_args`).

Kept free of FastAPI, so a command line can describe the server's options without the extra.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from typing import Any

from .. import settings

MiB = 1024 * 1024
#: an API key clients can send in an HTTP header as it is: visible ASCII, inner spaces allowed
_HEADER_SAFE_KEY = re.compile(r"[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?")


@dataclass(frozen=True)
class ServerSettings:
    """Limits, security and batching of the embedding server.

    Attributes:
        api_key: clients must send ``Authorization: Bearer <api_key>``; None: no auth. Visible
            ASCII characters (and inner spaces) only: an HTTP header has no one encoding for
            others, so a client could never be sure to send the same bytes.
        max_body_bytes: largest request body (HTTP 413 above it), images included.
        max_items: most inputs in one request.
        max_text_chars: longest text in characters. Texts longer than the engine's
            ``max_length`` in tokens are truncated by the engine (Jina's ``truncate=true``).
        max_image_pixels: largest image, checked from its header before decoding; None: the
            engine's ``max_image_pixels``.
        max_request_pixels: most pixels of all images of one request together, from their
            headers before any is decoded: decoding costs about 20 ns a pixel, and a
            one-colour PNG of 89 megapixels is a few hundred kilobytes.
        allow_image_urls: fetch ``http(s)`` image URLs (off: only base64 and data URIs).
        allow_private_urls: let URLs reach loopback, private, link-local and other
            non-public addresses (off: only public ones, each redirect re-checked).
        url_timeout_s: seconds one image URL may take, redirects and download included.
        max_batch_items: most inputs merged into one engine call; a larger request runs alone.
        max_wait_ms: how long a batch may wait for other requests to join it when several
            clients are sending (a lone client's requests never wait); 0: merge only requests
            that queued up while the model was busy.
        request_timeout_s: seconds a request may take before it is answered 504.
        body_timeout_s: seconds a client has to send its whole request body once its headers
            are in; a slower one is answered 408 and its connection closed (a client that
            sends half a body and waits holds no connection for long).
        weaviate_routes_auth: also require the key on the Weaviate inference routes. Weaviate's
            multi2vec-clip and text2vec-transformers modules send no token, so a server used
            by Weaviate on a private network sets this False (``--weaviate-open``).
    """

    api_key: str | None = None
    max_body_bytes: int = 32 * MiB
    max_items: int = 2048
    max_text_chars: int = 100_000
    max_image_pixels: int | None = None
    max_request_pixels: int = 256 * MiB
    allow_image_urls: bool = False
    allow_private_urls: bool = False
    url_timeout_s: float = 10.0
    max_batch_items: int = 64
    max_wait_ms: float = 5.0
    request_timeout_s: float = 120.0
    body_timeout_s: float = 10.0
    weaviate_routes_auth: bool = True

    def __post_init__(self) -> None:
        for name in ("max_body_bytes", "max_items", "max_text_chars", "max_request_pixels", "max_batch_items"):
            _check(name, getattr(self, name), positive=True)
        if self.max_image_pixels is not None:
            _check("max_image_pixels", self.max_image_pixels, positive=True)
        for name in ("url_timeout_s", "request_timeout_s", "body_timeout_s"):
            _check(name, getattr(self, name), positive=True, number=True)
        _check("max_wait_ms", self.max_wait_ms, positive=False, number=True)
        if self.api_key is not None and not self.api_key:
            raise ValueError("api_key must not be empty; use None for no authentication")
        if self.api_key is not None and not _HEADER_SAFE_KEY.fullmatch(self.api_key):
            raise ValueError(
                "api_key must be visible ASCII characters (letters, digits, punctuation; spaces only inside): "
                "clients send it in an HTTP header, where other characters have no one encoding"
            )

    @classmethod
    def from_env(cls, **overrides: Any) -> ServerSettings:
        """Settings from :mod:`jinaclip_integrations.settings` (``$JINACLIP_API_KEY``,
        ``$JINACLIP_MAX_BODY_MB``... then the config file; unset: the defaults above), then
        ``overrides`` (given explicitly: they win)."""
        found = settings.values()
        configured = {
            "api_key": found["api_key"] or None,
            "max_body_bytes": int(found["max_body_mb"] * MiB),
            "weaviate_routes_auth": not found["weaviate_open"],
            **{name: found[name] for name in _FROM_SETTINGS},
        }
        return cls(**{**configured, **overrides})


#: the fields read from the settings of the same name
_FROM_SETTINGS = ("max_items", "max_text_chars", "max_image_pixels", "max_request_pixels", "allow_image_urls",
                  "allow_private_urls", "url_timeout_s", "max_batch_items", "max_wait_ms", "request_timeout_s",
                  "body_timeout_s")  # fmt: skip


def _check(name: str, value: Any, *, positive: bool, number: bool = False) -> None:
    kinds = (int, float) if number else (int,)
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise ValueError(f"{name} must be {'a number' if number else 'an integer'}, got {value!r}")
    if value < 0 or (positive and value == 0):
        raise ValueError(f"{name} must be {'positive' if positive else 'at least 0'}, got {value!r}")


def add_server_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the server's options to ``parser`` (read them back with :func:`settings_from_args`);
    their defaults are the settings' (the environment, the config file, the built-in values).
    The API key is not read here: a bad one fails the server's start, not every command."""
    defaults = ServerSettings.from_env(api_key=None)
    group = parser.add_argument_group("server")
    group.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    group.add_argument("--port", type=int, default=8000, help="port to listen on (default: %(default)s)")
    group.add_argument(
        "--api-key",
        help="require 'Authorization: Bearer KEY' (default: $JINACLIP_API_KEY; prefer it, the command line is visible to other users)",
    )
    flags = {
        "--allow-image-urls": ("allow_image_urls", "fetch http(s) image URLs (default: base64 and data URIs only)"),
        "--allow-private-urls": (
            "allow_private_urls",
            "let image URLs reach loopback, private and link-local addresses (default: public addresses only)",
        ),  # fmt: skip
        "--weaviate-open": (
            "weaviate_open",
            "leave the Weaviate inference routes without auth (Weaviate's modules send no token)",
        ),  # fmt: skip
    }
    for flag, (name, help) in flags.items():
        default = not defaults.weaviate_routes_auth if name == "weaviate_open" else getattr(defaults, name)
        group.add_argument(flag, action=argparse.BooleanOptionalAction, default=default, help=help)
    group.add_argument(
        "--max-batch-items",
        type=int,
        default=defaults.max_batch_items,
        help="most inputs merged from concurrent requests into one model call (default: %(default)s; 1: no merging)",
    )
    group.add_argument(
        "--max-wait-ms",
        type=float,
        default=defaults.max_wait_ms,
        help="how long a batch waits for more requests to join (default: %(default)s)",
    )
    group.add_argument(
        "--max-items", type=int, default=defaults.max_items, help="most inputs per request (default: %(default)s)"
    )
    group.add_argument(
        "--max-body-mb",
        type=float,
        default=defaults.max_body_bytes / MiB,
        help="largest request body in MiB (default: %(default)g)",
    )


def settings_from_args(args: argparse.Namespace) -> ServerSettings:
    """The :class:`ServerSettings` that options added by :func:`add_server_arguments` describe
    (over the settings' values for what they do not set).

    Raises:
        ValueError: an option is out of range (its message names the setting).
    """
    key = {"api_key": args.api_key} if args.api_key else {}
    return ServerSettings.from_env(
        **key,
        allow_image_urls=args.allow_image_urls,
        allow_private_urls=args.allow_private_urls,
        weaviate_routes_auth=not args.weaviate_open,
        max_batch_items=args.max_batch_items,
        max_wait_ms=args.max_wait_ms,
        max_items=args.max_items,
        max_body_bytes=int(args.max_body_mb * MiB),
    )


def open_host_warning(settings: ServerSettings, host: str) -> str | None:
    """The warning to print before serving on ``host`` without an API key beyond loopback
    (anyone who reaches the port may use the model), or None."""
    if settings.api_key is None and host not in ("127.0.0.1", "localhost", "::1"):
        return (f"warning: serving on {host} without an API key: anyone who can reach this port can use it; "
                "set --api-key or JINACLIP_API_KEY")  # fmt: skip
    return None


def serving_dtype(dtype: str | None, device: str | None) -> str | None:
    """The dtype a served model loads in: ``dtype`` when given; else float32 on the CPU, and the
    engine's default (bf16) on accelerators.

    Not bf16 on CPUs with native bf16, the CLI's and the Python API's default there: the server
    merges requests into batches, and in bf16 a vector depends on what it is batched with (up to
    5.5e-4 per component on the tiny test model, against 1e-7 in float32), so one client's
    vectors would change with the other clients' traffic. Weaviate's module clients check that a
    text alone and in a batch agree within 1e-4 (``../shared/tools/weaviate-harness``), and
    float32 on the CPU is infinity's and TEI's default too. ``--dtype bfloat16`` serves 2-4x
    faster at that cost.
    """
    if dtype is not None:
        return dtype
    from ..engine import resolve_device

    return "float32" if resolve_device(device).type == "cpu" else None
