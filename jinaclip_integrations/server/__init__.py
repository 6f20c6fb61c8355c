"""A drop-in embedding server: Jina's and OpenAI's ``/v1/embeddings`` and Weaviate's inference
routes, backed by a local jina-clip model.

The app (:mod:`.app`) serves two route families, :mod:`.embedding_routes` and
:mod:`.weaviate_routes`, whose bodies are the models of :mod:`.schemas`; both read, check and
fail requests through :mod:`.http`. Requests from concurrent clients are merged into model-sized
batches (:mod:`.batcher`); client strings are never opened or fetched by the engine
(:mod:`.security`). Serve one with::

    from jinaclip_integrations import shared_engine
    from jinaclip_integrations.server import ServerSettings, create_app
    import uvicorn

    app = create_app(shared_engine("jinaai/jina-clip-v2"), ServerSettings.from_env())
    uvicorn.run(app, host="127.0.0.1", port=8000)

:func:`create_app` needs the ``server`` extra (``pip install "jinaclip-integrations[server]"``);
:class:`ServerSettings`, :func:`add_server_arguments` and :func:`settings_from_args` do not.
Each is imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_getattr

if TYPE_CHECKING:
    from .app import create_app
    from .settings import ServerSettings, add_server_arguments, open_host_warning, serving_dtype, settings_from_args

#: public name -> module that defines it, imported on first access
_NAMES = {
    "create_app": ".app",
    "ServerSettings": ".settings",
    "add_server_arguments": ".settings",
    "settings_from_args": ".settings",
    "open_host_warning": ".settings",
    "serving_dtype": ".settings",
}

__all__ = [
    "ServerSettings",
    "add_server_arguments",
    "create_app",
    "open_host_warning",
    "serving_dtype",
    "settings_from_args",
]


__getattr__ = lazy_getattr(__name__, _NAMES)
