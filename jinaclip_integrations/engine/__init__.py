"""The native jina-clip engine: model code, checkpoint loading, preprocessing and batching.

Names are imported on first use: ``truncate_normalize`` needs only numpy, the image-input names
(``resolve_image``, ``open_image``, ``IMAGE_FORMATS``, ...) PIL and numpy, the engine imports torch
(``jinaclip_integrations`` itself imports none of them).

``ImageRef`` marks a path or URL string as an image where strings are texts (mixed lists).
``IMAGE_FORMATS`` is the allow-list of image formats decoded from encoded bytes, wherever they
come from; ``open_image`` opens bytes in those formats only (the header, nothing decoded).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_getattr

if TYPE_CHECKING:
    from .engine import QUERY_TASK, JinaCLIPEngine, LazyEngine, model_key, resolve_device, shared_engine
    from .inputs import (
        IMAGE_FORMATS,
        ImageNotFound,
        ImageRef,
        ImageSource,
        is_image_input,
        open_image,
        require_heif_support,
        resolve_image,
    )
    from .onnx import export_onnx, require_export_support
    from .outputs import PRECISIONS, cosine_similarity, label_probabilities, quantize, truncate_normalize
    from .tokenizer import Tokenized

#: public name -> module that defines it, imported on first access
_NAMES = {
    "QUERY_TASK": ".engine",
    "JinaCLIPEngine": ".engine",
    "LazyEngine": ".engine",
    "model_key": ".engine",
    "resolve_device": ".engine",
    "shared_engine": ".engine",
    "IMAGE_FORMATS": ".inputs",
    "ImageNotFound": ".inputs",
    "ImageRef": ".inputs",
    "is_image_input": ".inputs",
    "ImageSource": ".inputs",
    "open_image": ".inputs",
    "require_heif_support": ".inputs",
    "resolve_image": ".inputs",
    "truncate_normalize": ".outputs",
    "PRECISIONS": ".outputs",
    "cosine_similarity": ".outputs",
    "label_probabilities": ".outputs",
    "quantize": ".outputs",
    "Tokenized": ".tokenizer",
    "export_onnx": ".onnx",
    "require_export_support": ".onnx",
}

__all__ = [
    "IMAGE_FORMATS",
    "PRECISIONS",
    "QUERY_TASK",
    "ImageNotFound",
    "ImageRef",
    "ImageSource",
    "JinaCLIPEngine",
    "LazyEngine",
    "Tokenized",
    "cosine_similarity",
    "export_onnx",
    "is_image_input",
    "label_probabilities",
    "model_key",
    "open_image",
    "quantize",
    "require_export_support",
    "require_heif_support",
    "resolve_device",
    "resolve_image",
    "shared_engine",
    "truncate_normalize",
]

__getattr__ = lazy_getattr(__name__, _NAMES)
