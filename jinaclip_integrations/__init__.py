"""Run the jina-clip multimodal embedding models locally and plug them into RAG tools.

Public names are imported lazily: ``import jinaclip_integrations`` is cheap, and torch is
imported only when the engine is first used.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from .errors import CheckpointError, InputError, JinaCLIPError

if TYPE_CHECKING:
    from .engine import JinaCLIPEngine, shared_engine
    from .fusion import FusedHit, fuse_modalities
    from .langchain import JinaCLIPEmbeddings, LangChainCrossModalRetriever, MultimodalQdrantVectorStore
    from .llama_index import JinaCLIPEmbedding, LlamaIndexCrossModalRetriever

__version__ = "0.1.0"

#: public name -> module that defines it (imported on first access: each integration's module
#: imports its framework, which is an optional extra)
_LAZY = {
    "JinaCLIPEngine": ".engine",
    "shared_engine": ".engine",
    "FusedHit": ".fusion",
    "fuse_modalities": ".fusion",
    "JinaCLIPEmbeddings": ".langchain",
    "LangChainCrossModalRetriever": ".langchain",
    "MultimodalQdrantVectorStore": ".langchain",
    "JinaCLIPEmbedding": ".llama_index",
    "LlamaIndexCrossModalRetriever": ".llama_index",
}

__all__ = [
    "CheckpointError",
    "FusedHit",
    "InputError",
    "JinaCLIPEmbedding",
    "JinaCLIPEmbeddings",
    "JinaCLIPEngine",
    "JinaCLIPError",
    "LangChainCrossModalRetriever",
    "LlamaIndexCrossModalRetriever",
    "MultimodalQdrantVectorStore",
    "__version__",
    "fuse_modalities",
    "shared_engine",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
