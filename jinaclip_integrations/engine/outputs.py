"""What is done to the towers' outputs, in one place: Matryoshka truncation and L2 normalization.

jina-clip-v2 was trained so that the first ``d`` dimensions of an embedding (``d`` one of the
model's Matryoshka sizes) are an embedding of their own once re-normalized. Every part of the
package that keeps a prefix (the engine's ``truncate_dim``, the server's ``dimensions``, a
Qdrant short vector, a Weaviate collection of ``dimensions``) cuts and normalizes here.
"""

from __future__ import annotations

import numpy as np

#: the smallest norm divided by: a zero vector stays zero instead of becoming NaN
EPS = 1e-12


def truncate_normalize(vectors: np.ndarray, dim: int | None = None, *, normalize: bool = True) -> np.ndarray:
    """The first ``dim`` dimensions of each row (all of them for None or a ``dim`` at least the
    rows' width), L2-normalized when ``normalize``, as float32."""
    vectors = np.asarray(vectors, dtype=np.float32)
    if dim is not None and dim < vectors.shape[-1]:
        vectors = vectors[..., :dim]
    if normalize:
        vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=-1, keepdims=True), EPS)
    return vectors
