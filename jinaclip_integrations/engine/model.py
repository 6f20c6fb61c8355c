"""The two towers and the logit scale as one module, and the map from published weight names.

The text tower is chosen by the type of the text config: jina-clip-v2's XLM-RoBERTa
(:mod:`.xlm_roberta`) or jina-clip-v1's JinaBERT (:mod:`.jinabert`); both have the same contract (ids
and mask in, mean-pooled fp32 features out). The vision tower is the same EVA02 code for both.
``JinaCLIPModel`` does no I/O: ``weights.py`` reads files and ``engine.py`` batches inputs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import torch
from torch import nn

from . import jinabert, vision, xlm_roberta
from .config import JinaBertConfig, JinaCLIPConfig, XLMRobertaConfig

VISION_PREFIX = "vision_model."


class TextArchitecture(NamedTuple):
    """A text tower class, its checkpoint filter and the prefix of its published tensors."""

    tower: Callable[[Any], nn.Module]
    checkpoint_filter_fn: Callable[[Callable[[str], torch.Tensor], Any], Iterator[tuple[str, torch.Tensor]]]
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
    ``exp(logit_scale) * cosine_similarity``. ``dtype`` is the number format the model was
    loaded in (``torch.int8`` for int8 Linear weights) and ``compute_dtype`` the float dtype
    its towers run in; both are float32 until :func:`.precision.set_dtypes` says otherwise.
    """

    def __init__(self, cfg: JinaCLIPConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.text = TEXT_ARCHITECTURES[type(cfg.text)].tower(cfg.text)
        self.vision = vision.VisionTower(cfg.vision)
        self.logit_scale = nn.Parameter(torch.empty(()))
        self.dtype: torch.dtype = torch.float32
        self.compute_dtype: torch.dtype = torch.float32

    def reset_buffers(self, device: torch.device) -> None:
        """Compute the towers' non-persistent buffers (RoPE tables, ALiBi slopes: float32,
        functions of the config, not in the checkpoint) on ``device``; a model built on the meta
        device has none until then."""
        self.text.reset_buffers(device)
        self.vision.reset_buffers(device)


def checkpoint_filter_fn(
    take: Callable[[str], torch.Tensor], cfg: JinaCLIPConfig
) -> Iterator[tuple[str, torch.Tensor]]:
    """Map a published jina-clip checkpoint (tensors fetched by their published name through
    ``take``) onto :class:`JinaCLIPModel`'s state dict: ``(name, tensor)`` pairs, one at a time,
    so that the loader holds one converted tensor at once, not the whole checkpoint."""
    yield "logit_scale", take("logit_scale").reshape(())
    arch = TEXT_ARCHITECTURES[type(cfg.text)]
    for name, tensor in arch.checkpoint_filter_fn(lambda name: take(arch.prefix + name), cfg.text):
        yield "text." + name, tensor
    for name, tensor in vision.checkpoint_filter_fn(lambda name: take(VISION_PREFIX + name), cfg.vision):
        yield "vision." + name, tensor
