"""Preprocessing: a decoded RGB PIL image -> the normalized pixel tensor the vision tower reads.

It reproduces the reference's (torchvision ``Resize``/``CenterCrop``/``ToTensor``/``Normalize``
on PIL images) with PIL and torch alone (exactly, but for large JPEGs, which are decoded at a
reduced scale unless ``reduced_jpeg_decoding`` is off): shortest side resized to ``size`` with PIL bicubic,
center crop, scale to [0, 1], normalize with the CLIP mean/std. Inputs are loaded and decoded
by :mod:`.inputs`.

The shortest-side resize enlarges a 1 x N sliver to ``size * size * N`` pixels, so
:data:`MAX_RESIZED_PIXELS` bounds the resized image before it is made.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from PIL import Image

from .config import PreprocessConfig
from .inputs import check_pixels, load_image

#: Most pixels of the resized image before the center crop: at 512 px, aspect ratios up to ~340:1.
MAX_RESIZED_PIXELS = 89_478_485


class ImagePreprocessor:
    """RGB PIL image -> float32 tensor [3, size, size], as the reference's processor does."""

    _RESAMPLE = {"bicubic": "BICUBIC", "bilinear": "BILINEAR", "nearest": "NEAREST", "lanczos": "LANCZOS"}

    def __init__(self, cfg: PreprocessConfig, *, reduced_jpeg_decoding: bool = True) -> None:
        if cfg.interpolation not in self._RESAMPLE:
            raise ValueError(
                f"unsupported interpolation {cfg.interpolation!r}; expected one of {sorted(self._RESAMPLE)}"
            )
        self.size = cfg.size
        #: decode JPEGs many times ``size`` at 1/2-1/8 scale (:func:`.inputs.draft_decoding`)
        self.reduced_jpeg_decoding = reduced_jpeg_decoding
        self._resample = getattr(Image.Resampling, self._RESAMPLE[cfg.interpolation])
        self._mean = torch.tensor(cfg.mean, dtype=torch.float32).view(3, 1, 1)
        self._std = torch.tensor(cfg.std, dtype=torch.float32).view(3, 1, 1)

    def resized_size(self, width: int, height: int) -> tuple[int, int]:
        """Shortest side to ``size``, long side ``int(size * long / short)`` (torchvision's rule)."""
        s = self.size
        return (s, int(s * height / width)) if width <= height else (int(s * width / height), s)

    def resize_and_crop(self, img: Image.Image) -> Image.Image:
        """Resize to :meth:`resized_size`, then the centered ``size`` x ``size`` crop
        (offsets rounded as torchvision does)."""
        s = self.size
        new_w, new_h = self.resized_size(*img.size)
        if (new_w, new_h) != img.size:
            img = img.resize((new_w, new_h), self._resample)
        top = int(round((new_h - s) / 2.0))
        left = int(round((new_w - s) / 2.0))
        return img.crop((left, top, left + s, top + s))

    def normalize(self, crops: np.ndarray | torch.Tensor) -> torch.Tensor:
        """uint8 crops ``(..., size, size, 3)`` -> float32 ``(..., 3, size, size)``, scaled to
        [0, 1] and normalized with the mean and std."""
        x = torch.as_tensor(crops).movedim(-1, -3).float().div(255)
        return (x - self._mean) / self._std

    def __call__(self, img: Image.Image) -> torch.Tensor:
        return self.normalize(np.array(self.resize_and_crop(img), dtype=np.uint8))

    def crop(self, item: Any, index: int, max_pixels: int | None) -> np.ndarray:
        """Load any accepted input, resize and crop it: uint8 ``(size, size, 3)``, a quarter of
        the bytes of the normalized pixels (what a pipeline ships from its decoding workers to
        the model); every failure is an :class:`~jinaclip_integrations.errors.InputError`.
        A JPEG many times larger than ``size`` is decoded at a reduced scale
        (:func:`.inputs.draft_decoding`) when :attr:`reduced_jpeg_decoding`."""
        img = load_image(item, index, max_pixels, min_side=self.size if self.reduced_jpeg_decoding else None)
        resized = self.resized_size(*img.size)
        check_pixels(*resized, index, MAX_RESIZED_PIXELS, "image is too elongated: resizing it needs")
        return np.array(self.resize_and_crop(img), dtype=np.uint8)

    def prepare(self, item: Any, index: int, max_pixels: int | None) -> torch.Tensor:
        """Load any accepted input and preprocess it; every failure is an
        :class:`~jinaclip_integrations.errors.InputError`."""
        return self.normalize(self.crop(item, index, max_pixels))
