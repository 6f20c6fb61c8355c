"""Embedding through a running ``jinaclip serve``: what ``jinaclip search`` and ``jinaclip embed``
use with ``--server URL``, so a query is answered in a fraction of a second instead of loading
the model (seconds to minutes) for every command.

Speaks the server's Jina dialect of ``POST /v1/embeddings`` with the standard library only.
"""

from __future__ import annotations

import base64
import json
import os
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import JinaCLIPError

#: seconds one request may take (a batch of images on a CPU server takes a while)
TIMEOUT_S = 300.0


class RemoteEmbedder:
    """Texts and images embedded by the server at ``url`` (e.g. ``http://127.0.0.1:8000``).

    ``api_key`` is sent as ``Authorization: Bearer``. Vectors are float32 rows, normalized, in
    input order, as :class:`~jinaclip_integrations.engine.JinaCLIPEngine` returns them.
    """

    def __init__(self, url: str, *, api_key: str | None = None, timeout: float = TIMEOUT_S) -> None:
        self.url = url.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout

    def model(self) -> str:
        """The name of the model the server runs."""
        return str(self._call("GET", "/v1/models")["data"][0]["id"])

    def encode_text(
        self, texts: Sequence[str], *, task: str | None = None, dimensions: int | None = None
    ) -> np.ndarray:
        """Embed texts (``task="retrieval.query"`` for search queries; the server ignores it
        for a model without tasks)."""
        return self._embed([{"text": text} for text in texts], task=task, dimensions=dimensions)

    def encode_image(self, images: Sequence[str | os.PathLike | bytes], *, dimensions: int | None = None) -> np.ndarray:
        """Embed images: files (read here and sent as base64), raw bytes, or http(s) URLs (the
        server fetches them only if it allows image URLs)."""
        items = []
        for image in images:
            if isinstance(image, str) and image.startswith(("http://", "https://")):
                items.append({"image": image})
                continue
            data = image if isinstance(image, bytes) else Path(image).read_bytes()
            items.append({"image": base64.b64encode(data).decode("ascii")})
        return self._embed(items, dimensions=dimensions)

    def _embed(self, items: list[dict[str, str]], **options: Any) -> np.ndarray:
        if not items:
            return np.empty((0, 0), dtype=np.float32)
        body = {"input": items, **{k: v for k, v in options.items() if v is not None}}
        data = self._call("POST", "/v1/embeddings", body)["data"]
        return np.asarray([row["embedding"] for row in sorted(data, key=lambda row: row["index"])], dtype=np.float32)

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        payload = None if body is None else json.dumps(body).encode("utf-8")
        request = urllib.request.Request(self.url + path, data=payload, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310 (the user's URL)
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            raise JinaCLIPError(f"the server at {self.url} answered {exc.code}: {_detail(exc)}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise JinaCLIPError(f"cannot reach the server at {self.url} ({reason}): start `jinaclip serve`, or leave out --server") from None  # fmt: skip


def _detail(error: urllib.error.HTTPError) -> str:
    """The message of an error answer in either dialect, else its first bytes."""
    text = error.read(4096).decode("utf-8", "replace")
    try:
        found = json.loads(text)
    except ValueError:
        return text.strip() or error.reason
    detail = found.get("detail") or found.get("error")
    return str(detail.get("message", detail) if isinstance(detail, dict) else detail)
