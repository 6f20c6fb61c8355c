"""ONNX export of jina-clip's two towers, each on its own, for ONNX Runtime and other ONNX runners.

:func:`export_onnx` writes ``text.onnx`` (``input_ids`` and ``attention_mask``, int64 ``[batch,
length]`` -> ``features`` ``[batch, dim]``: the mean-pooled features of the engine's text tower)
and ``vision.onnx`` (normalized ``pixels`` float32 ``[batch, 3, size, size]`` -> ``features``),
fp32, batch and length dynamic, weights in ``text.onnx.data`` / ``vision.onnx.data`` beside them
(a full-size tower is past protobuf's 2 GB). The checkpoint's config, tokenizer and preprocessor
files are copied beside the towers, so the folder tokenizes and preprocesses as the checkpoint
does (``JinaCLIPEngine.from_pretrained(folder, weights=False)`` reads it). The features are what
the engine's towers return before Matryoshka truncation and normalization, and a text's ids carry
its task instruction: :meth:`JinaCLIPEngine.tokenize` gives them.

The towers go through torch's dynamo exporter (``torch.export``, then onnxscript) with batch and
length declared symbolic (``dynamic_shapes``); the example text batch is padded, so the mask's
path through attention and pooling is the one traced. tests/test_onnx.py checks both files
against torch at batch sizes and lengths other than the example's.

Nothing here runs the towers: the engine has no ONNX Runtime backend. Measured side by side
(benchmarks/bench_onnx.py; benchmarks/RESULTS.md, "ONNX export": full-size random weights, a
shared 2-core Zen 4 CPU), ONNX Runtime on these fp32 files ran 1.5-1.8x as fast as torch in fp32
but 0.48-0.79x as fast as torch in bf16 at one thread each; with both cores it led bf16 on texts
(1.09-1.53x, torch losing more to the machine's other jobs) and trailed it on images (0.88x), and
torch's best setting there (bf16, one thread) stayed ahead of ONNX Runtime's best. bf16 is the
engine's default on such CPUs (native bf16), so a second backend would not be the faster one.
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from .._lazy import needs_extra
from ..progress import quiet_loggers
from .weights import resolve_checkpoint

if TYPE_CHECKING:
    from .engine import JinaCLIPEngine

TEXT_FILE = "text.onnx"
VISION_FILE = "vision.onnx"
#: The checkpoint's files copied beside the towers: what tokenizes texts and preprocesses images.
CHECKPOINT_FILES = (
    "config.json",
    "preprocessor_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
)
#: The opset the dynamo exporter's operator library is written in: another one is converted after export.
DEFAULT_OPSET = 18
#: torch's exporter logs a warning per torchvision operator it cannot register when torchvision
#: is not installed (the towers use none of them): quieted during the export
_REGISTRATION_LOGGER = "torch.onnx._internal.exporter._registration"


def require_export_support(what: str) -> None:
    """An ``ImportError`` naming ``what``, the missing package and the ``onnx`` extra, when the
    exporter's packages are not installed: torch's exporter itself fails later, and says less."""
    with needs_extra("onnx", what):
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401


def export_onnx(
    engine: JinaCLIPEngine,
    folder: str | Path,
    *,
    opset: int = DEFAULT_OPSET,
    checkpoint: str | Path | None = None,
) -> dict[str, Path]:
    """Export the engine's text and vision towers to ``folder`` (created if need be) as
    ``text.onnx`` and ``vision.onnx``, and copy the checkpoint's config, tokenizer and
    preprocessor files beside them.

    Args:
        engine: a float32 engine with its weights (ONNX files are exported in fp32: an engine in
            another dtype is refused rather than exported at a precision nobody asked for).
        folder: where to write; existing files of the same names are replaced.
        opset: the ONNX opset of the files.
        checkpoint: the folder whose config, tokenizer and preprocessor files are copied
            (default: the engine's own checkpoint, from its folder or the hub cache).

    Returns:
        The path of every file written, by file name (the towers, their weights, the copies).

    Raises:
        ImportError: the ``onnx`` extra is not installed.
        ValueError: the engine has no weights, or is not float32.
        CheckpointError: the checkpoint's folder cannot be found.
    """
    require_export_support("ONNX export")
    if engine.model is None:
        raise ValueError(f"{engine.name_or_path or 'this engine'} was loaded with weights=False: nothing to export")
    if engine.dtype != torch.float32:
        raise ValueError(f"ONNX export is in float32; load the engine with dtype='float32' (it is {engine.dtype})")
    source = resolve_checkpoint(checkpoint if checkpoint is not None else engine.name_or_path, weights=False)
    out = Path(folder).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    _export_text(engine, out / TEXT_FILE, opset)
    _export_vision(engine, out / VISION_FILE, opset)
    copied = [name for name in CHECKPOINT_FILES if (source / name).is_file()]
    for name in copied:
        shutil.copyfile(source / name, out / name)
    files = (TEXT_FILE, f"{TEXT_FILE}.data", VISION_FILE, f"{VISION_FILE}.data", *copied)
    return {name: out / name for name in files if (out / name).is_file()}


def _export_text(engine: JinaCLIPEngine, path: Path, opset: int) -> None:
    """``text.onnx``: int64 ids and mask [batch, length] -> features [batch, dim]. The example
    has a padded row so the mask is exercised; its batch and length differ so the exporter
    cannot take one dimension for the other."""
    batch = torch.export.Dim("batch")
    length = torch.export.Dim("length", max=engine.max_positions)
    lengths = torch.tensor([16, 11])
    positions = torch.arange(16)
    mask = (positions < lengths[:, None]).long()
    ids = torch.randint(3, engine.config.text.vocab_size, (2, 16), generator=torch.Generator().manual_seed(0))
    ids = ids.masked_fill(mask == 0, engine.tokenizer.pad_token_id)
    _export(
        engine.model.text,
        (ids.to(engine.device), mask.to(engine.device)),
        path,
        opset,
        input_names=["input_ids", "attention_mask"],
        dynamic_shapes=({0: batch, 1: length}, {0: batch, 1: length}),
    )


def _export_vision(engine: JinaCLIPEngine, path: Path, opset: int) -> None:
    """``vision.onnx``: float32 pixels [batch, 3, size, size] -> features [batch, dim]."""
    size = engine.preprocessor.size
    pixels = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    _export(
        engine.model.vision,
        (pixels.to(engine.device),),
        path,
        opset,
        input_names=["pixels"],
        dynamic_shapes=({0: torch.export.Dim("batch")},),
    )


def _export(
    tower: torch.nn.Module,
    example: tuple[torch.Tensor, ...],
    path: Path,
    opset: int,
    *,
    input_names: list[str],
    dynamic_shapes: tuple[dict[int, torch.export.Dim], ...],
) -> None:
    """torch's dynamo exporter on one tower: fp32, weights in a ``.data`` file beside it."""
    with quiet_loggers(_REGISTRATION_LOGGER), torch.no_grad(), warnings.catch_warnings():
        # torch's own notes on its internals, not on the model: that two inputs share the
        # dimension objects they were given, and a deprecation inside torch.export
        warnings.filterwarnings("ignore", message=r"# The axis name: \w+ will not be used")
        warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")
        torch.onnx.export(
            tower,
            example,
            path,
            dynamo=True,
            external_data=True,
            opset_version=opset,
            input_names=input_names,
            output_names=["features"],
            dynamic_shapes=dynamic_shapes,
            verbose=False,
        )
