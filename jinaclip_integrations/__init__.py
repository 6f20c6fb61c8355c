"""Run the jina-clip multimodal embedding models locally and plug them into RAG tools.

Public names are imported lazily: ``import jinaclip_integrations`` is cheap, and torch is
imported only when the engine is first used.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from .errors import CheckpointError, InputError, JinaCLIPError

if TYPE_CHECKING:
    from .engine import JinaCLIPEngine

__version__ = "0.1.0"

_LAZY = {"JinaCLIPEngine": ".engine"}

__all__ = ["CheckpointError", "InputError", "JinaCLIPEngine", "JinaCLIPError", "__version__"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
