"""Weaviate integration: jina-clip as Weaviate's inference container, or vectors you bring.

Which to pick depends on the data and on who embeds it:

- **multi2vec-clip** (objects with image and text properties, ``nearText`` and ``nearImage``):
  run ``python -m jinaclip_integrations.weaviate`` (the embedding server of ``jinaclip serve``,
  with its limits and API key: ``--weaviate-open`` for Weaviate's modules, which send no key)
  and set ``CLIP_INFERENCE_API`` to it. Weaviate
  sends this module no task, so query texts reach the model WITHOUT the query instruction
  (fine for image search; for text collections prefer text2vec-transformers).
- **text2vec-transformers** (text collections): the same server also speaks this protocol; set
  ``TRANSFORMERS_PASSAGE_INFERENCE_API=http://host:port/passage`` and
  ``TRANSFORMERS_QUERY_INFERENCE_API=http://host:port/query`` so that objects are embedded as
  passages and ``nearText`` queries with the ``retrieval.query`` task.
- **Bring your own vectors** (no Weaviate module; any Weaviate, including managed ones):
  :class:`WeaviateVectorizer` embeds texts, images and folders here and stores them with
  ``insert_many`` in a collection with a self-provided named vector, and searches it by text,
  image or vector.

:func:`inference_router` / :func:`create_inference_app` are the embedding server's
(:mod:`jinaclip_integrations.server.weaviate_routes`) and need the ``server`` extra,
:class:`WeaviateVectorizer` the ``weaviate`` extra; each is imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_getattr

if TYPE_CHECKING:
    from ..server.weaviate_routes import create_inference_app, inference_router
    from .collection import WeaviateVectorizer
    from .store import WeaviateStore

#: public name -> module that defines it, imported on first access (each needs its own extra)
_NAMES = {
    "WeaviateVectorizer": ".collection",
    "WeaviateStore": ".store",
    "inference_router": "..server.weaviate_routes",
    "create_inference_app": "..server.weaviate_routes",
}

__all__ = ["WeaviateStore", "WeaviateVectorizer", "create_inference_app", "inference_router"]


__getattr__ = lazy_getattr(__name__, _NAMES)
