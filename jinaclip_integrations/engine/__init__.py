"""The native jina-clip engine: model code, checkpoint loading, preprocessing and batching.

Importing this package imports torch; ``jinaclip_integrations`` itself does not.
"""

from .engine import JinaCLIPEngine, LazyEngine, shared_engine

__all__ = ["JinaCLIPEngine", "LazyEngine", "shared_engine"]
