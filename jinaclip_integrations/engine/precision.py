"""Number formats the model runs in: which one fits the CPU, float32 norms under bf16/fp16, int8.

* :func:`cpu_has_native_bf16`: whether this CPU multiplies bfloat16 natively (AVX512-BF16 or
  AMX-BF16); there, bf16 runs 2.2x (images) to 3.4-3.9x (texts) as fast as float32 (``benchmarks/RESULTS.md``), and
  :func:`float_dtype` makes it the default, as on CUDA.
* :func:`set_dtypes`: each parameter's dtype for a model dtype, before the weights are loaded.
* :func:`use_float32_norms`: under bf16/fp16, every LayerNorm computes in float32 on float32
  weights (measured: cosine to float32 within 3e-5 of bf16 norms, on the goldens and on
  full-size random weights: bf16's error comes from its matmuls). Attention's softmax needs
  nothing here: PyTorch's ``scaled_dot_product_attention`` accumulates bf16/fp16 scores in
  float32 on the CPU (its flash kernel's ``accum_t``: with bf16 inputs its output differs from a
  float32 softmax by the output's own bf16 rounding) and on CUDA; the text towers mean-pool in
  float32 (``hidden.float()``).
* :func:`quantize_int8`: int8 weights for every Linear layer, through torchao (the ``int8`` extra).
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .._lazy import needs_extra

#: /proc/cpuinfo flags of a native bf16 matrix unit: AVX512-BF16 (Zen4, Cooper Lake, Sapphire
#: Rapids) or AMX-BF16 (Sapphire Rapids on). AVX2-only CPUs convert bf16 in software: no faster.
NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


def cpu_has_native_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether this CPU computes bfloat16 natively (see :data:`NATIVE_BF16_FLAGS`), read from the
    ``flags`` line of ``cpuinfo``. False off Linux, where there is no such file to read."""
    if not sys.platform.startswith("linux"):
        return False
    return _native_bf16(cpuinfo)


@functools.cache
def _native_bf16(cpuinfo: Path) -> bool:
    try:
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return not NATIVE_BF16_FLAGS.isdisjoint(value.split())
    return False


def float_dtype(device: torch.device) -> torch.dtype:
    """The float dtype a model runs in by default on ``device``: bfloat16 on CUDA and on CPUs
    with native bf16 (:func:`cpu_has_native_bf16`), float32 elsewhere."""
    if device.type == "cuda" or (device.type == "cpu" and cpu_has_native_bf16()):
        return torch.bfloat16
    return torch.float32


def set_dtypes(model: nn.Module, dtype: torch.dtype, device: torch.device) -> None:
    """Give a model built on the meta device (a ``JinaCLIPModel``) the parameter dtypes of
    ``dtype``, and record ``model.dtype`` and ``model.compute_dtype``; the loader then casts each
    checkpoint tensor to its parameter's dtype.

    * float32: everything float32, exactly the reference's arithmetic;
    * bfloat16 / float16: the towers' weights and activations in that dtype, with float32
      LayerNorms (:func:`use_float32_norms`);
    * int8: as :func:`float_dtype` (bf16 or float32), and :func:`quantize_int8` once loaded.

    ``logit_scale`` stays float32 in every case: it is one number, used outside the towers.
    """
    compute = float_dtype(device) if dtype == torch.int8 else dtype
    for tower in model.children():
        tower.to(compute)
    if compute != torch.float32:
        use_float32_norms(model)
    model.dtype, model.compute_dtype = dtype, compute


class Float32LayerNorm(nn.LayerNorm):
    """A LayerNorm that computes in float32 on float32 weights whatever its input's dtype, and
    returns its input's dtype: a bf16 model keeps its norms' scales and statistics unrounded."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x.float(), self.normalized_shape, self.weight, self.bias, self.eps).to(x.dtype)


def use_float32_norms(model: nn.Module) -> None:
    """Swap every ``nn.LayerNorm`` of ``model`` (ours and transformers') for a
    :class:`Float32LayerNorm` with the same shape, float32 parameters, on the same device."""
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.LayerNorm:
                norm = Float32LayerNorm(
                    child.normalized_shape,
                    eps=child.eps,
                    elementwise_affine=child.elementwise_affine,
                    bias=child.bias is not None,
                    device=child.weight.device if child.weight is not None else None,
                    dtype=torch.float32,
                )
                setattr(parent, name, norm)


def quantize_int8(model: nn.Module) -> None:
    """Replace the weights of every ``nn.Linear`` of ``model`` by int8 ones with a float scale
    per output row (torchao's int8 weight-only quantization); activations stay in the model's
    float dtype. It halves the Linear weights' memory against bf16, at 0.7-1x bf16's speed on a
    CPU with native bf16 and a cosine to float32 of 0.997 on full-size images
    (``benchmarks/RESULTS.md``): an opt-in, never a default. Weight-only, because torchao's
    int8 activations run through ``torch._int_mm``, which on this kind of CPU is slower than a
    bf16 matmul, and with the quantizing around it that path ran below float32's speed."""
    with needs_extra("int8", "dtype='int8'"):
        from torchao.quantization import Int8WeightOnlyConfig, quantize_

    quantize_(model, Int8WeightOnlyConfig())
