"""Run the jina-clip multimodal embedding models locally and plug them into RAG tools.

Public names are imported lazily: ``import jinaclip_integrations`` is cheap, torch is imported
when the engine is first used, and each framework integration when its names are first used.
The integration names are left out of ``__all__`` so that ``from jinaclip_integrations import *``
works without the optional extras; importing one without its extra raises an ``ImportError``
that says what to install.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._lazy import lazy_getattr
from ._version import __version__
from .errors import CheckpointError, InputError, JinaCLIPError, StoreError

if TYPE_CHECKING:
    from .chroma import JinaCLIPEmbeddingFunction as JinaCLIPEmbeddingFunction
    from .engine import ImageRef, JinaCLIPEngine, shared_engine
    from .fusion import FusedHit, fuse_modalities
    from .langchain import JinaCLIPEmbeddings as JinaCLIPEmbeddings
    from .langchain import LangChainCrossModalRetriever as LangChainCrossModalRetriever
    from .langchain import MultimodalQdrantVectorStore as MultimodalQdrantVectorStore
    from .llama_index import JinaCLIPEmbedding as JinaCLIPEmbedding
    from .llama_index import LlamaIndexCrossModalRetriever as LlamaIndexCrossModalRetriever
    from .qdrant import QdrantVectorizer as QdrantVectorizer
    from .ray import RayIndexResult as RayIndexResult
    from .ray import index_with_ray as index_with_ray
    from .server import ServerSettings as ServerSettings
    from .server import create_app as create_app
    from .weaviate import WeaviateVectorizer as WeaviateVectorizer
    from .weaviate import create_inference_app as create_inference_app


#: public name -> module that defines it, imported on first access
_CORE = {
    "ImageRef": ".engine",
    "JinaCLIPEngine": ".engine",
    "shared_engine": ".engine",
    "FusedHit": ".fusion",
    "fuse_modalities": ".fusion",
}
#: names whose module imports an optional framework (extras "langchain" and "llama-index")
_INTEGRATIONS = {
    "JinaCLIPEmbeddingFunction": ".chroma",
    "JinaCLIPEmbeddings": ".langchain",
    "LangChainCrossModalRetriever": ".langchain",
    "MultimodalQdrantVectorStore": ".langchain",
    "JinaCLIPEmbedding": ".llama_index",
    "LlamaIndexCrossModalRetriever": ".llama_index",
    "QdrantVectorizer": ".qdrant",
    "RayIndexResult": ".ray",
    "index_with_ray": ".ray",
    "ServerSettings": ".server",
    "create_app": ".server",
    "WeaviateVectorizer": ".weaviate",
    "create_inference_app": ".weaviate",
}

__all__ = [
    "CheckpointError",
    "FusedHit",
    "ImageRef",
    "InputError",
    "JinaCLIPEngine",
    "JinaCLIPError",
    "StoreError",
    "__version__",
    "fuse_modalities",
    "shared_engine",
]


__getattr__ = lazy_getattr(__name__, {**_CORE, **_INTEGRATIONS})


def __dir__() -> list[str]:
    return sorted([*__all__, *_INTEGRATIONS])
