"""Checkpoint files: a hub name or a folder -> files; ``model.safetensors`` -> our modules.

A hub name is taken from the local hub cache when it is there; otherwise it is downloaded. The
download first asks the hub for its size, with the hub's ``HF_HUB_ETAG_TIMEOUT`` (default 10 s)
to connect and between bytes, so an unreachable or stalled hub fails within seconds (the hub
client's own file listing, which follows, has no timeout). Files then come with the hub client's
timeouts: ``HF_HUB_ETAG_TIMEOUT`` for each file's metadata, ``HF_HUB_DOWNLOAD_TIMEOUT`` (default
10 s) between bytes, resumed a few times before it gives up. Any failure is a
:class:`~jinaclip_integrations.errors.CheckpointError` that names the model, says why in a few
words and how to do without the download.

Loading is strict: every tensor the config implies must be in the checkpoint under its
published name, and every tensor in the checkpoint must be used. Either failure raises
:class:`~jinaclip_integrations.errors.CheckpointError` naming the key.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
from collections.abc import Iterable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from ..errors import CheckpointError
from ..progress import progress_bar, show_progress_default
from .config import JinaCLIPConfig, parse_config
from .model import JinaCLIPModel, checkpoint_filter_fn
from .precision import quantize_int8, set_dtypes

logger = logging.getLogger(__name__)

#: Files fetched from the hub: configs, weights and tokenizer files (no ONNX, no remote code).
HUB_PATTERNS = ["*.json", "*.safetensors", "*.txt"]
WEIGHTS_FILE = "model.safetensors"
WEIGHTS_INDEX_FILE = "model.safetensors.index.json"


def resolve_checkpoint(
    name_or_path: str | Path,
    *,
    revision: str | None = None,
    cache_dir: str | Path | None = None,
    weights: bool = True,
    show_progress: bool | None = None,
) -> Path:
    """The local folder holding a checkpoint: ``name_or_path`` itself if it is a folder, else
    the Hugging Face hub snapshot of that model name (from the local cache when it is there,
    downloaded otherwise; ``HF_HUB_OFFLINE=1`` forbids the download). ``weights=False`` fetches
    only the config and tokenizer files, for a process that never loads the model.

    A download says what it fetches and its size, then shows the hub's byte progress bar
    (``show_progress``; default: on a terminal). See the module docstring for its timeouts.

    Raises:
        CheckpointError: ``name_or_path`` is a file, or a name that is neither in the cache nor
            downloadable (not a hub name, unknown, gated, offline, unreachable, stalled, ...).
    """
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise CheckpointError(f"{str(name_or_path)!r} is a file; expected a checkpoint folder or a hub model name")
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    name = str(name_or_path)
    patterns = HUB_PATTERNS if weights else [p for p in HUB_PATTERNS if not p.endswith(".safetensors")]
    kwargs: dict[str, Any] = {"revision": revision, "cache_dir": cache_dir, "allow_patterns": patterns}
    timeout = constants.HF_HUB_ETAG_TIMEOUT
    try:
        return Path(snapshot_download(name, local_files_only=True, **kwargs))
    except LocalEntryNotFoundError:
        pass  # not in the cache (or not all of it): download it
    except Exception as exc:  # not a valid hub name, an unreadable cache
        raise _not_fetched(name, _why(exc, timeout)) from exc
    if constants.HF_HUB_OFFLINE:
        raise _not_fetched(name, "HF_HUB_OFFLINE is set and it is not in the hub cache", offline=True)
    try:
        size = _download_size(name, revision, patterns, timeout)
        show = show_progress_default(show_progress)
        logger.info("downloading %s: %s", name, _in_bytes(size))
        if show:
            print(f"downloading {name}: {_in_bytes(size)}", file=sys.stderr, flush=True)
        bars = tqdm if show else _SilentBar  # a plain tqdm: the hub draws it even off a terminal
        return Path(snapshot_download(name, etag_timeout=timeout, tqdm_class=bars, **kwargs))
    except Exception as exc:  # network, timeout, auth, unknown repo or revision: one error type for the caller
        raise _not_fetched(name, _why(exc, timeout)) from exc


def _download_size(name: str, revision: str | None, patterns: list[str], timeout: float) -> int:
    """Bytes of the files a download of ``name`` fetches, asked of the hub with ``timeout`` (to
    connect and between bytes). It comes first so that an unreachable or stalled hub fails fast:
    the hub client's own listing requests, which the download then makes, have no timeout."""
    from huggingface_hub import HfApi
    from huggingface_hub.utils import filter_repo_objects

    info = HfApi().model_info(name, revision=revision, files_metadata=True, timeout=timeout)
    sizes = {sibling.rfilename: sibling.size or 0 for sibling in info.siblings or []}
    return sum(sizes[file] for file in filter_repo_objects(sizes, allow_patterns=patterns))


def _in_bytes(size: int) -> str:
    """``1.7 GB``, ``17.1 MB``, ...: a download's size as a person reads it (decimal units, as the bar's)."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} bytes"


class _SilentBar(tqdm):
    """The hub's progress bars when progress is not shown: the same bars, never drawn."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **{**kwargs, "disable": True})


def _why(exc: Exception, timeout: float) -> str:
    """Why a hub model could not be fetched, in a few words."""
    from huggingface_hub import constants
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        HFValidationError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    if isinstance(exc, LocalEntryNotFoundError) and isinstance(exc.__cause__, Exception):
        exc = exc.__cause__  # the download found no cache to fall back on: why the hub failed matters
    kinds = {cls.__name__ for cls in type(exc).__mro__}  # the hub client's HTTP library varies with its version
    if isinstance(exc, HFValidationError):
        return "not a valid hub model name"
    if isinstance(exc, GatedRepoError):
        return "it is gated: accept its terms on the hub, then log in with `hf auth login`"
    if isinstance(exc, RepositoryNotFoundError):
        return "no such model on the hub, or it is private"
    if isinstance(exc, RevisionNotFoundError):
        return "no such revision on the hub"
    if isinstance(exc, HfHubHTTPError) and exc.response is not None:
        return f"the hub answered HTTP {exc.response.status_code}"
    if isinstance(exc, TimeoutError) or "TimeoutException" in kinds:
        return f"{constants.ENDPOINT} did not answer within {timeout:g} s"
    if "ConnectError" in kinds or isinstance(exc, ConnectionError):
        return f"cannot connect to {constants.ENDPOINT}"
    first_line = str(exc).split("\n", 1)[0]  # hub errors go on for lines
    return f"{type(exc).__name__}: {first_line}"


def _not_fetched(name: str, reason: str, *, offline: bool = False) -> CheckpointError:
    """The error for a hub name that is neither in the cache nor downloadable: why, and how to do without."""
    other_way = "unset HF_HUB_OFFLINE to download it" if offline else "set HF_HUB_OFFLINE=1 to use the cache only"
    return CheckpointError(
        f"{name!r} is not a local folder, and it could not be fetched from the Hugging Face hub ({reason}): "
        f"pass --model PATH / set JINACLIP_MODEL to a local checkpoint folder, or {other_way}"
    )


def read_json(path: Path) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint file not found: {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path} is not valid JSON: {exc}") from exc


def find_base_text_config(name: str | None, cache_dir: str | Path | None = None) -> dict[str, Any] | None:
    """``config.json`` of the text tower's base model (``hf_model_name_or_path``) when it is a
    local folder or in the hub cache; None otherwise (no download: the built-in values of
    the known base models stand in for it)."""
    if not name:
        return None
    folder = Path(name).expanduser()
    if (folder / "config.json").is_file():
        return read_json(folder / "config.json")
    from huggingface_hub import try_to_load_from_cache

    try:
        cached = try_to_load_from_cache(name, "config.json", cache_dir=cache_dir)
    except ValueError:  # not a valid repo id (e.g. a missing local path)
        return None
    return read_json(Path(cached)) if isinstance(cached, str) else None


def load_config(folder: Path, cache_dir: str | Path | None = None) -> JinaCLIPConfig:
    """Parse ``config.json`` (+ ``preprocessor_config.json``) of a checkpoint folder."""
    config = read_json(folder / "config.json")
    preprocessor_path = folder / "preprocessor_config.json"
    preprocessor = read_json(preprocessor_path) if preprocessor_path.is_file() else None
    base_name = (config.get("text_config") or {}).get("hf_model_name_or_path")
    return parse_config(
        config,
        base_text_config=find_base_text_config(base_name, cache_dir),
        preprocessor=preprocessor,
    )


#: safetensors dtype names -> torch dtypes (the ones a checkpoint may hold)
_SAFETENSORS_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8, "BOOL": torch.bool,
}  # fmt: skip


class _Shard:
    """One safetensors file, its tensors read with plain file reads into fresh tensors.

    ``safe_open`` checks the file first (header, offsets, sizes: a bad file is refused there);
    the reads then bypass its memory map, whose touched pages would count in the process's
    resident memory until the file is closed: a second copy of the weights at the peak. Each
    tensor's entry is checked again as it is read (the file could have changed in between).
    """

    def __init__(self, path: Path, file: Any) -> None:
        self.path, self.file = path, file
        size = int.from_bytes(file.read(8), "little")
        self.data_start = 8 + size
        self.data_size = os.fstat(file.fileno()).st_size - self.data_start
        try:
            self.header = json.loads(file.read(size))
            self.header.pop("__metadata__", None)
        except (ValueError, AttributeError) as exc:
            raise CheckpointError(f"{path} changed while it was read: its header is no longer valid") from exc

    def read(self, key: str) -> torch.Tensor:
        info = self.header.get(key)
        if not isinstance(info, dict):
            raise CheckpointError(f"{self.path} changed while it was read: tensor {key!r} is gone")
        dtype = _SAFETENSORS_DTYPES.get(info.get("dtype"))
        if dtype is None:
            raise CheckpointError(
                f"tensor {key!r} of {self.path} has dtype {info.get('dtype')}, which no jina-clip uses"
            )
        begin, end = info.get("data_offsets", (-1, -1))
        shape = info.get("shape")
        nbytes = math.prod(shape) * dtype.itemsize if isinstance(shape, list) else -1
        if not 0 <= begin <= end <= self.data_size or end - begin != nbytes:
            raise CheckpointError(
                f"tensor {key!r} of {self.path}: its offsets {[begin, end]} do not hold its shape {shape} inside the file"
            )
        data = torch.empty(end - begin, dtype=torch.uint8)
        self.file.seek(self.data_start + begin)
        if self.file.readinto(data.numpy()) != end - begin:
            raise CheckpointError(f"{self.path} ends inside tensor {key!r}")
        return data.view(dtype).reshape(info["shape"])


class PublishedTensors:
    """The tensors of a checkpoint's safetensors file(s), each to be taken exactly once."""

    def __init__(self, files: Mapping[str, _Shard]) -> None:
        self._files = files  # key -> the shard that holds it
        self._left = set(files)

    def __len__(self) -> int:
        return len(self._files)

    def take(self, key: str) -> torch.Tensor:
        if key not in self._left:
            what = "twice" if key in self._files else "but the checkpoint has no such key"
            raise CheckpointError(f"missing key {key!r}: the config needs it {what}")
        self._left.discard(key)
        return self._files[key].read(key)

    def check_all_taken(self) -> None:
        if self._left:
            keys = sorted(self._left)
            more = f" (and {len(keys) - 5} more)" if len(keys) > 5 else ""
            raise CheckpointError(f"unexpected key(s) in the checkpoint, not used by its config: {keys[:5]}{more}")


@contextmanager
def open_safetensors(folder: Path) -> Iterator[PublishedTensors]:
    """Open ``model.safetensors`` (or the shards listed in its index), checked by ``safe_open``,
    without reading tensors."""
    from safetensors import safe_open

    if (folder / WEIGHTS_FILE).is_file():
        shards = [WEIGHTS_FILE]
    elif (folder / WEIGHTS_INDEX_FILE).is_file():
        shards = sorted(set(read_json(folder / WEIGHTS_INDEX_FILE)["weight_map"].values()))
    else:
        raise CheckpointError(f"no {WEIGHTS_FILE} (or {WEIGHTS_INDEX_FILE}) in {folder}")
    with ExitStack() as stack:
        handles: dict[str, _Shard] = {}
        for shard in shards:
            path = folder / shard
            try:
                with safe_open(path, framework="pt", device="cpu") as checked:
                    keys = list(checked.keys())
            except Exception as exc:  # safetensors raises its own error types for bad headers
                raise CheckpointError(f"cannot read {path}: {exc}") from exc
            handles.update(dict.fromkeys(keys, _Shard(path, stack.enter_context(open(path, "rb")))))
        yield PublishedTensors(handles)


def build_model(
    cfg: JinaCLIPConfig, device: torch.device, dtype: torch.dtype, *, random_init: bool = False
) -> JinaCLIPModel:
    """The model for ``cfg`` in ``dtype`` (see :func:`~.precision.set_dtypes`), in inference mode.

    It is built on the ``meta`` device (no memory, no initialization) and left there for
    :func:`load_model` to fill, unless ``random_init`` (benchmarks, tests of random checkpoints):
    then it is materialized on ``device`` with :func:`init_random_` weights (and int8 weights
    for ``torch.int8``).
    """
    with torch.device("meta"):
        model = JinaCLIPModel(cfg)
    set_dtypes(model, dtype, device)
    model.eval().requires_grad_(False)
    if random_init:
        model.to_empty(device=device)
        init_random_(model)
        _finish(model, device)
    return model


def _finish(model: JinaCLIPModel, device: torch.device) -> None:
    """After the weights are in: the buffers computed from the config, and int8 weights if asked."""
    model.reset_buffers(device)
    if model.dtype == torch.int8:
        quantize_int8(model)


def init_random_(model: JinaCLIPModel, std: float = 0.02) -> None:
    """Random weights: N(0, std) for matrices and embeddings, unit LayerNorm scales, zero
    biases, the CLIP logit-scale initial value."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(".weight") and p.ndim == 1:
                p.fill_(1.0)
            elif name.endswith(".bias"):
                p.zero_()
            else:
                p.normal_(0.0, std)
        model.logit_scale.fill_(2.6592)


def load_model(
    folder: Path, cfg: JinaCLIPConfig, device: torch.device, dtype: torch.dtype, *, show_progress: bool | None = None
) -> JinaCLIPModel:
    """Build the model for ``cfg`` on the meta device and fill it from the folder's safetensors,
    strictly, one tensor at a time (:func:`fill_model`): no second copy of the weights is ever
    held (peak memory and load time: ``benchmarks/RESULTS.md``)."""
    model = build_model(cfg, device, dtype)
    with open_safetensors(folder) as published:
        with progress_bar(len(published), "Loading weights", show_progress, unit="tensor") as bar:

            def take(key: str) -> torch.Tensor:
                bar.update(1)
                return published.take(key)

            fill_model(model, checkpoint_filter_fn(take, cfg), device)
        published.check_all_taken()
    return model


def fill_model(model: JinaCLIPModel, tensors: Iterable[tuple[str, torch.Tensor]], device: torch.device) -> None:
    """Put the weights of a model built on the meta device (:func:`build_model`) in place from
    ``(name, tensor)`` pairs in its own naming, each cast to its parameter's dtype on ``device``
    as it comes; then compute the buffers and quantize to int8 if asked. Every parameter must
    come exactly once with its shape, or :class:`CheckpointError` names it."""
    meta = dict(model.named_parameters())
    for name, tensor in tensors:
        target = meta.pop(name, None)
        if target is None:
            raise CheckpointError(f"weight {name!r} is given twice or is not the model's")
        if tensor.shape != target.shape:
            raise CheckpointError(
                f"weight {name!r} has shape {tuple(tensor.shape)} in the checkpoint, but "
                f"config.json implies {tuple(target.shape)}"
            )
        module, _, leaf = name.rpartition(".")
        value = tensor.to(device=device, dtype=target.dtype)
        setattr(model.get_submodule(module), leaf, nn.Parameter(value, requires_grad=False))
    if meta:
        raise CheckpointError(f"no checkpoint tensor gives the model's weight(s) {sorted(meta)[:5]}")
    _finish(model, device)
