"""One ranking from a text search and an image search with the same query vector.

In CLIP-style models a query's cosine similarity to matching texts is typically much higher
than to matching images (the "modality gap"), so sorting the union by raw score lists every
text before any image. :func:`fuse_modalities` makes the two sides comparable first:

1. each side's scores are standardized over that side's candidates:
   ``z = (score - mean) / std`` (``z = 0`` when the side's scores are all equal);
2. ``z`` is mapped to (0, 1) with the standard normal CDF, ``p = (1 + erf(z / sqrt(2))) / 2``;
3. image candidates are weighted: ``fused = image_weight * p`` (texts keep ``fused = p``);
4. the union is sorted by ``fused`` (ties: higher raw score first, then texts first) and cut to ``k``.

``image_weight = 1`` gives both sides equal footing, ``> 1`` favours images, ``0`` puts every
image after every text. The standardization is relative to the candidates: each side's best
candidate scores high even when it matches poorly (a side with a single candidate gets 0.5),
so fetch more than ``k`` per side (e.g. 20) for stable statistics, and drop poor candidates by
their raw score first where absolute relevance matters (the retrievers' ``min_score``). Used by
the LangChain and LlamaIndex retrievers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class FusedHit(Generic[T]):
    """One result of :func:`fuse_modalities`: the item, its side, its raw and fused scores."""

    item: T
    modality: str
    score: float
    fused_score: float


def check_image_weight(image_weight: float) -> float:
    """``image_weight`` if it is a finite number >= 0, else a ValueError."""
    if not (image_weight >= 0 and math.isfinite(image_weight)):
        raise ValueError(f"image_weight must be a finite number >= 0, got {image_weight}")
    return float(image_weight)


def _calibrated(scores: Sequence[float]) -> list[float]:
    if not scores:
        return []
    mean = sum(scores) / len(scores)
    std = math.sqrt(sum((s - mean) ** 2 for s in scores) / len(scores))
    if std == 0:
        return [0.5] * len(scores)
    return [0.5 * (1.0 + math.erf((s - mean) / std / math.sqrt(2.0))) for s in scores]


def fuse_modalities(
    text_hits: Sequence[tuple[T, float]],
    image_hits: Sequence[tuple[T, float]],
    *,
    k: int,
    image_weight: float = 1.0,
) -> list[FusedHit[T]]:
    """Merge ``(item, score)`` lists of texts and of images (higher score = more similar) into
    the ``k`` best :class:`FusedHit` by the rule in this module's docstring."""
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    check_image_weight(image_weight)
    fused = []
    for modality, hits, weight in (("text", text_hits, 1.0), ("image", image_hits, image_weight)):
        for (item, score), p in zip(hits, _calibrated([s for _, s in hits]), strict=True):
            fused.append(FusedHit(item, modality, float(score), weight * p))
    fused.sort(key=lambda hit: (-hit.fused_score, -hit.score, hit.modality != "text"))
    return fused[:k]
