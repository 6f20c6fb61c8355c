"""The two towers and the logit scale as one module, and the map from published weight names.

The text tower is chosen by the type of the text config: jina-clip-v2's XLM-RoBERTa
(:mod:`.xlm_roberta`) or jina-clip-v1's JinaBERT (:mod:`.jinabert`); both have the same contract (ids
and mask in, mean-pooled fp32 features out). The vision tower is the same EVA02 code for both.
``JinaCLIPModel`` does no I/O: ``weights.py`` reads files and ``engine.py`` batches inputs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import torch
from torch import nn

from . import jinabert, vision, xlm_roberta
from .config import JinaBertConfig, JinaCLIPConfig, XLMRobertaConfig

VISION_PREFIX = "vision_model."


class TextArchitecture(NamedTuple):
    """A text tower class, its checkpoint filter and the prefix of its published tensors."""

    tower: Callable[[Any], nn.Module]
    checkpoint_filter_fn: Callable[[Callable[[str], torch.Tensor], Any], dict[str, torch.Tensor]]
    prefix: str


TEXT_ARCHITECTURES: dict[type, TextArchitecture] = {
    XLMRobertaConfig: TextArchitecture(
        xlm_roberta.XLMRobertaTower, xlm_roberta.checkpoint_filter_fn, "text_model.transformer.roberta."
    ),
    JinaBertConfig: TextArchitecture(jinabert.JinaBertTower, jinabert.checkpoint_filter_fn, "text_model.transformer."),
}


class JinaCLIPModel(nn.Module):
    """jina-clip: a text tower and a vision tower projecting into one embedding space.

    ``logit_scale`` is the raw published parameter: CLIP logits are
    ``exp(logit_scale) * cosine_similarity``.
    """

    def __init__(self, cfg: JinaCLIPConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.text = TEXT_ARCHITECTURES[type(cfg.text)].tower(cfg.text)
        self.vision = vision.VisionTower(cfg.vision)
        self.logit_scale = nn.Parameter(torch.empty(()))


def checkpoint_filter_fn(take: Callable[[str], torch.Tensor], cfg: JinaCLIPConfig) -> dict[str, torch.Tensor]:
    """Map a published jina-clip checkpoint (tensors fetched by their published name through
    ``take``) onto :class:`JinaCLIPModel`'s state dict."""
    sd = {"logit_scale": take("logit_scale").reshape(())}
    arch = TEXT_ARCHITECTURES[type(cfg.text)]
    text_sd = arch.checkpoint_filter_fn(lambda name: take(arch.prefix + name), cfg.text)
    sd.update({"text." + k: v for k, v in text_sd.items()})
    vision_sd = vision.checkpoint_filter_fn(lambda name: take(VISION_PREFIX + name), cfg.vision)
    sd.update({"vision." + k: v for k, v in vision_sd.items()})
    return sd
