"""Chroma integration: jina-clip as a Chroma embedding function for texts and images alike.

:class:`JinaCLIPEmbeddingFunction` is a ``chromadb`` ``EmbeddingFunction`` that embeds what Chroma
hands it, element by element: a string is a document, anything else an image (the numpy arrays
that ``ImageLoader`` makes of ``uris=``, ``images=`` arrays, PIL images). So one collection with
``data_loader=ImageLoader()`` holds texts and images in one vector space, and ``query_texts``
finds images as ``query_images`` finds texts. Queries get the model's query task (Chroma calls
``embed_query`` for them), stored documents no task, as jina-clip was trained.

The function is registered with Chroma under :meth:`~JinaCLIPEmbeddingFunction.name` and its
config (model, Matryoshka size) is stored with the collection, so a persisted collection reopens
with it: ``client.get_collection(name, data_loader=ImageLoader())`` in a process that imported
this module. Chroma rebuilds a function from that config whenever it needs one, so rebuilt
functions are kept per config and load their model on first use, once per process.

Needs the ``chroma`` extra: ``pip install "jinaclip-integrations[chroma]"``.
"""

from __future__ import annotations

import json
import threading
from typing import Any, ClassVar

import numpy as np

from ._lazy import needs_extra

with needs_extra("chroma", "jinaclip_integrations.chroma"):
    from chromadb.api.types import Embeddable, EmbeddingFunction, Embeddings, Space
    from chromadb.utils.embedding_functions import register_embedding_function

from . import settings
from .engine import JinaCLIPEngine, model_key, shared_engine

__all__ = ["JinaCLIPEmbeddingFunction"]

#: what :meth:`JinaCLIPEmbeddingFunction.get_config` holds, with each value's accepted types
_CONFIG_TYPES: dict[str, tuple[type, ...]] = {
    "model_name": (str,),
    "dimensions": (int, type(None)),
    "device": (str, type(None)),
    "dtype": (str, type(None)),
    "batch_size": (int,),
}


@register_embedding_function
class JinaCLIPEmbeddingFunction(EmbeddingFunction[Embeddable]):
    """jina-clip text and image embeddings for Chroma, computed locally (GPU when there is one).

    Example:
        .. code-block:: python

            import chromadb
            from chromadb.utils.data_loaders import ImageLoader
            from jinaclip_integrations.chroma import JinaCLIPEmbeddingFunction

            client = chromadb.PersistentClient(path="./chroma")
            collection = client.get_or_create_collection(
                "things", embedding_function=JinaCLIPEmbeddingFunction(dimensions=512), data_loader=ImageLoader()
            )
            collection.add(ids=["t1"], documents=["A red bicycle leaning on a wall"])
            collection.add(ids=["i1"], uris=["bike.jpg"])
            collection.query(query_texts=["bicycle"], n_results=2)

    Args:
        model_name: Hugging Face hub name or local checkpoint folder; default: the ``model``
            setting (``$JINACLIP_MODEL``), or the engine's model when ``engine`` is given.
        dimensions: Matryoshka truncation, one of the model's ``matryoshka_dims`` (None: full size);
            the engine's ``truncate_dim``, the server's and the other adapters' ``dimensions``,
            the Qdrant store's ``short_dim``.
        device: torch device; None: the ``device`` setting where the model loads, else CUDA when
            available, else the CPU.
        dtype: ``float32``, ``bfloat16`` or ``float16``; None: the ``dtype`` setting where the
            model loads, else bf16 on CUDA and on CPUs with native bf16, float32 elsewhere.
        batch_size: texts or images per forward pass.
        engine: an already loaded engine to use instead of loading ``model_name`` (then
            ``device`` and ``dtype`` must be None).

    Functions built with the same model, device and dtype share one engine
    (:func:`~jinaclip_integrations.engine.shared_engine`) with each other and with the LangChain,
    LlamaIndex and Qdrant adapters. A device or dtype left None is stored as None, so a
    collection reopened on another machine uses that machine's settings. Vectors are
    L2-normalized float32 rows: the default space is cosine (``ip`` ranks alike). There is no
    ``precision`` option: Chroma stores float32 vectors (for int8 or binary vectors, see the
    engine's ``precision=`` and a store that keeps them, or the Qdrant store's presets).

    Raises on embedding:
        InputError: an item cannot be embedded (a missing, corrupt or non-uint8 image); its
            ``index`` is the item's position in what Chroma passed.
    """

    #: functions rebuilt by :meth:`build_from_config`, by class and config
    _built: ClassVar[dict[tuple[type, str], JinaCLIPEmbeddingFunction]] = {}
    _built_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(
        self,
        model_name: str | None = None,
        *,
        dimensions: int | None = None,
        device: str | None = None,
        dtype: str | None = None,
        batch_size: int = 32,
        engine: JinaCLIPEngine | None = None,
    ) -> None:
        if engine is not None:
            if device is not None or dtype is not None:
                raise ValueError("device and dtype choose how the model loads; with engine= they must be None")
            if model_name and engine.name_or_path and model_key(model_name) != model_key(engine.name_or_path):
                raise ValueError(f"model_name {model_name!r} does not match the engine's model {engine.name_or_path!r}")
            model_name = model_name or engine.name_or_path
            if not model_name:
                raise ValueError("the engine has no name_or_path: pass model_name so the collection can reload it")
        self._configure(model_name or settings.value("model"), dimensions, device, dtype, batch_size)
        if engine is None:
            self._load()
        else:
            self._engine = self._checked(engine)

    def _configure(
        self, model_name: str, dimensions: int | None, device: str | None, dtype: str | None, batch_size: int
    ) -> None:
        """Set and check the options, loading nothing (the engine loads on first use)."""
        self.model_name = model_key(model_name)
        self.dimensions = dimensions
        self.device = None if device is None else str(device)
        self.dtype = dtype
        self.batch_size = batch_size
        self.validate_config(self.get_config())
        self._engine: JinaCLIPEngine | None = None
        self._lock = threading.Lock()

    def _load(self) -> JinaCLIPEngine:
        with self._lock:
            if self._engine is None:
                device = self.device if self.device is not None else settings.value("device")
                dtype = self.dtype if self.dtype is not None else settings.value("dtype")
                self._engine = self._checked(shared_engine(self.model_name, device=device, dtype=dtype))
            return self._engine

    def _checked(self, engine: JinaCLIPEngine) -> JinaCLIPEngine:
        dims = engine.matryoshka_dims
        if self.dimensions is not None and self.dimensions not in dims:
            raise ValueError(
                f"dimensions {self.dimensions} is not supported by {self.model_name}; choose one of {list(dims)} or None"
            )
        return engine

    @property
    def engine(self) -> JinaCLIPEngine:
        """The engine in use (a function rebuilt from a config loads it here, on first use)."""
        return self._load()

    # -- embedding -------------------------------------------------------------------------

    def __call__(self, input: Embeddable) -> Embeddings:
        """Embed documents and images to be stored (no task instruction): one float32 row per
        item, in input order. A string is a document, anything else an image."""
        return self._embed(input, None)

    def embed_query(self, input: Embeddable) -> Embeddings:
        """Embed query texts (with the model's query task, ``retrieval.query`` on jina-clip-v2)
        and query images, as :meth:`__call__` does otherwise."""
        return self._embed(input, self.engine.query_task)

    def _embed(self, items: Embeddable, task: str | None) -> Embeddings:
        """The engine's :meth:`~jinaclip_integrations.engine.JinaCLIPEngine.encode` of a mixed list
        (a string is a text, anything else an image), as a list of float32 rows."""
        if isinstance(items, str) or (isinstance(items, np.ndarray) and items.ndim != 4):
            raise TypeError("input must be a list of documents and images; wrap a single one in a list")
        items = list(items)
        if not items:
            return []
        return list(self.engine.encode(items, task=task, truncate_dim=self.dimensions, batch_size=self.batch_size))

    # -- persistence (Chroma's embedding-function config) ----------------------------------

    @staticmethod
    def name() -> str:
        """The name Chroma stores with a collection: this module's, so that an unregistered one
        tells what to import."""
        return "jinaclip_integrations.chroma"

    def get_config(self) -> dict[str, Any]:
        """The options to rebuild this function with (JSON): model, dimensions, device, dtype, batch size."""
        return {
            "model_name": self.model_name,
            "dimensions": self.dimensions,
            "device": self.device,
            "dtype": self.dtype,
            "batch_size": self.batch_size,
        }

    @classmethod
    def build_from_config(cls, config: dict[str, Any]) -> JinaCLIPEmbeddingFunction:
        """The function of a stored config. Chroma calls this for every operation on a collection
        opened without a function, so one function is kept per config; it loads its engine on
        first use, from :func:`~jinaclip_integrations.engine.shared_engine`."""
        cls.validate_config(config)
        key = (cls, json.dumps(config, sort_keys=True))
        with cls._built_lock:
            function = cls._built.get(key)
            if function is None:
                function = cls.__new__(cls)
                function._configure(**config)
                cls._built[key] = function
            return function

    @staticmethod
    def validate_config(config: dict[str, Any]) -> None:
        """Raise ``ValueError`` unless ``config`` is one that :meth:`get_config` could return."""
        if set(config) != set(_CONFIG_TYPES):
            raise ValueError(f"config keys must be {sorted(_CONFIG_TYPES)}, got {sorted(config)}")
        for key, types in _CONFIG_TYPES.items():
            value = config[key]
            if isinstance(value, bool) or not isinstance(value, types):
                raise ValueError(f"config {key} must be {' or '.join(t.__name__ for t in types)}, got {value!r}")
        if not config["model_name"]:
            raise ValueError("config model_name must not be empty")
        if config["batch_size"] <= 0:
            raise ValueError(f"config batch_size must be positive, got {config['batch_size']}")
        if config["dtype"] is not None and config["dtype"] not in settings.DTYPES:
            raise ValueError(f"config dtype must be one of {list(settings.DTYPES)} or None, got {config['dtype']!r}")

    def validate_config_update(self, old_config: dict[str, Any], new_config: dict[str, Any]) -> None:
        """A collection's function may move to another device, dtype or batch size, but not to
        another model or size: its stored vectors would no longer match the queries."""
        for key in ("model_name", "dimensions"):
            if old_config.get(key) != new_config.get(key):
                raise ValueError(
                    f"cannot change {key} of a collection's embedding function from {old_config.get(key)!r} to "
                    f"{new_config.get(key)!r}: its stored vectors would no longer match"
                )

    def default_space(self) -> Space:
        """Cosine: the vectors are L2-normalized."""
        return "cosine"

    def supported_spaces(self) -> list[Space]:
        """Every space ranks normalized vectors alike."""
        return ["cosine", "ip", "l2"]
