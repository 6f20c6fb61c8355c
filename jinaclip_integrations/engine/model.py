"""The two towers and the logit scale as one module, and the map from published weight names.

``JinaCLIPModel`` does no I/O: ``weights.py`` reads files and ``engine.py`` batches inputs.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from . import text, vision
from .config import JinaCLIPConfig

TEXT_PREFIX = "text_model.transformer.roberta."
VISION_PREFIX = "vision_model."


class JinaCLIPModel(nn.Module):
    """jina-clip: a text tower and a vision tower projecting into one embedding space.

    ``logit_scale`` is the raw published parameter: CLIP logits are
    ``exp(logit_scale) * cosine_similarity``.
    """

    def __init__(self, cfg: JinaCLIPConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.text = text.TextTower(cfg.text)
        self.vision = vision.VisionTower(cfg.vision)
        self.logit_scale = nn.Parameter(torch.empty(()))


def checkpoint_filter_fn(take: Callable[[str], torch.Tensor], cfg: JinaCLIPConfig) -> dict[str, torch.Tensor]:
    """Map a published jina-clip checkpoint (tensors fetched by their published name through
    ``take``) onto :class:`JinaCLIPModel`'s state dict."""
    sd = {"logit_scale": take("logit_scale").reshape(())}
    text_sd = text.checkpoint_filter_fn(lambda name: take(TEXT_PREFIX + name), cfg.text)
    sd.update({"text.transformer." + k: v for k, v in text_sd.items()})
    vision_sd = vision.checkpoint_filter_fn(lambda name: take(VISION_PREFIX + name), cfg.vision)
    sd.update({"vision." + k: v for k, v in vision_sd.items()})
    return sd
