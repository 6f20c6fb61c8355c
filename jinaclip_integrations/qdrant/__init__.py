"""Qdrant vectorizer: put texts, images, files and folders straight into Qdrant and search them.

:class:`QdrantVectorizer` works on a ``qdrant_client.QdrantClient`` (a server URL, a local path
or ``":memory:"``) or on the embedded Qdrant engine ``qdrant-edge-py`` (a folder on disk, no
server). A collection holds one point per text or image with named vectors:

* ``"full"``: the whole normalized embedding (cosine);
* ``"short"``: its first ``short_dim`` Matryoshka dimensions, re-normalized, used as a fast
  first stage: a search prefetches candidates on ``"short"`` and rescores them on ``"full"``
  with the Query API. Models without Matryoshka training (jina-clip-v1) get no short vector.

The ``preset`` chooses how the full vector is kept (see :data:`PRESETS`): ``"default"`` keeps
both vectors in RAM and indexes only the short one; ``"int8"`` and ``"binary"`` keep the full
vectors on disk with a scalar (4x smaller) or binary (32x smaller) quantized copy in RAM, search
that copy and rescore the candidates with the originals.

Files are ingested by :mod:`jinaclip_integrations.ingest.sync`: long texts are chunked, PDFs,
HTML and Word files read, and :meth:`QdrantVectorizer.sync` makes the collection follow folders
(changed files replaced, deleted ones removed), safe to interrupt at any moment. Point IDs come
from the content, so nothing is stored twice. A search ranks texts and images together unless
asked for one modality (:func:`jinaclip_integrations.store.merged_search`).

qdrant-client's inference objects (``models.Document`` / ``models.Image``) resolve only FastEmbed
(ONNX) models or Qdrant Cloud inference; the client has no hook for a local PyTorch model, so
this module embeds locally and hands Qdrant plain vectors instead.
"""

from .layout import FULL, LAYOUT_FILE, SHORT, QdrantStore, default_short_dim, layout_for, named_vectors
from .vectorizer import DEFAULT_COLLECTION, QdrantVectorizer, open_store

__all__ = [
    "DEFAULT_COLLECTION",
    "FULL",
    "LAYOUT_FILE",
    "SHORT",
    "QdrantStore",
    "QdrantVectorizer",
    "default_short_dim",
    "layout_for",
    "named_vectors",
    "open_store",
]
