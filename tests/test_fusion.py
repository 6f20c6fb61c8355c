"""The rule that merges text and image results (jinaclip_integrations.fusion)."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jinaclip_integrations.fusion import fuse_modalities


def phi(z: float) -> float:
    return 0.5 * (1 + math.erf(z / math.sqrt(2)))


def test_worked_example():
    """Texts 0.9/0.5/0.4 (mean 0.6, std 0.2160); images 0.35/0.25 (mean 0.3, std 0.05)."""
    texts = [("t1", 0.9), ("t2", 0.5), ("t3", 0.4)]
    images = [("i1", 0.35), ("i2", 0.25)]
    std_t = math.sqrt(((0.3**2) + (0.1**2) + (0.2**2)) / 3)
    hits = fuse_modalities(texts, images, k=5, image_weight=1.0)
    expected = {
        "t1": phi(0.3 / std_t),
        "t2": phi(-0.1 / std_t),
        "t3": phi(-0.2 / std_t),
        "i1": phi(1.0),
        "i2": phi(-1.0),
    }
    assert [h.item for h in hits] == sorted(expected, key=lambda name: -expected[name])
    assert [h.item for h in hits] == ["t1", "i1", "t2", "t3", "i2"]
    for hit in hits:
        assert hit.fused_score == pytest.approx(expected[hit.item])
        assert hit.modality == ("text" if hit.item.startswith("t") else "image")
    assert hits[1].score == 0.35  # the raw score is kept


def test_image_weight():
    texts = [("t1", 0.9), ("t2", 0.5)]
    images = [("i1", 0.35), ("i2", 0.25)]
    assert [h.item for h in fuse_modalities(texts, images, k=4, image_weight=0)] == ["t1", "t2", "i1", "i2"]
    assert [h.item for h in fuse_modalities(texts, images, k=4, image_weight=2)][0] == "i1"
    assert [h.item for h in fuse_modalities(texts, images, k=2)] == ["t1", "i1"]  # ties: higher raw score first


def test_one_sided_and_degenerate_inputs():
    assert [h.item for h in fuse_modalities([("t", 0.2)], [], k=3)] == ["t"]
    assert [h.item for h in fuse_modalities([], [("a", 0.3), ("b", 0.3)], k=3)] == ["a", "b"]  # equal scores: 0.5 each
    assert fuse_modalities([], [], k=3) == []
    with pytest.raises(ValueError, match="k must be at least 1"):
        fuse_modalities([], [], k=0)
    for bad in (-1.0, math.inf, math.nan):
        with pytest.raises(ValueError, match="image_weight"):
            fuse_modalities([], [], k=1, image_weight=bad)


scores = st.floats(-1, 1, allow_nan=False)


@given(st.lists(scores, max_size=30), st.lists(scores, max_size=30), st.integers(1, 70), st.floats(0, 5))
def test_properties(text_scores, image_scores, k, weight):
    texts = [(("t", i), s) for i, s in enumerate(text_scores)]
    images = [(("i", i), s) for i, s in enumerate(image_scores)]
    hits = fuse_modalities(texts, images, k=k, image_weight=weight)
    assert len(hits) == min(k, len(texts) + len(images))
    assert len({h.item for h in hits}) == len(hits)  # nothing duplicated
    assert all(a.fused_score >= b.fused_score for a, b in itertools.pairwise(hits))
    for side in ("t", "i"):  # within one side the order of raw scores is kept
        side_scores = [h.score for h in hits if h.item[0] == side]
        assert side_scores == sorted(side_scores, reverse=True)
