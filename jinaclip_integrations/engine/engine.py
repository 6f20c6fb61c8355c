"""``JinaCLIPEngine``: load a published jina-clip checkpoint and embed texts and images.

The one place that decides defaults (device, dtype, batch sizes, limits) and validates what
callers pass; the model and the preprocessing it drives live in their own modules.
"""

from __future__ import annotations

import io
import logging
import operator
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence, Set
from contextlib import closing, contextmanager
from functools import partial
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import InputError
from ..progress import progress_bar
from .batching import length_sorted_batches, prepared_batches, split_on_oom
from .config import JinaCLIPConfig
from .inputs import DEFAULT_MAX_IMAGE_PIXELS, is_image_input, split_texts_and_images
from .model import JinaCLIPModel
from .outputs import check_precision, cosine_similarity, label_probabilities, quantize, truncate_normalize
from .precision import float_dtype
from .preprocess import ImagePreprocessor
from .tokenizer import TextTokenizer, Tokenized
from .weights import load_config, load_model, resolve_checkpoint

logger = logging.getLogger(__name__)

ImageInput = Any  # PIL image | str | os.PathLike | bytes | file object | numpy uint8 array

#: The number formats a model loads in; ``int8`` is int8 Linear weights on bf16 or float32
#: (the ``int8`` extra, see :func:`.precision.quantize_int8`).
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16, "int8": torch.int8}

#: Defaults shared by both models: the reference's batch size and text length, and a padded-token
#: budget per text batch that bounds activation memory for long texts.
DEFAULT_BATCH_SIZE = 32
DEFAULT_MAX_LENGTH = 512
DEFAULT_MAX_BATCH_TOKENS = 16384
#: What one more text batch costs, in tokens' worth of compute, by device type: batches are cut
#: where the padding saved is worth more (see :func:`.batching.length_sorted_batches`). CPU:
#: measured on the full-width v2 text tower, one thread: a forward of 8 tokens takes what 23
#: tokens take in a 32 x 32 batch (~15 tokens of fixed cost). Accelerators: an estimate, a
#: forward's kernel launches (~2 ms) against ~1.5 us a token in bf16, which
#: benchmarks/gpu_check.py measures (tokens/s per plan).
BATCH_OVERHEAD_TOKENS = {"cpu": 16}
ACCELERATOR_BATCH_OVERHEAD_TOKENS = 1024
#: items :meth:`JinaCLIPEngine.embed` reads from its iterable at a time (fastembed's batch size)
DEFAULT_EMBED_CHUNK = 256
#: the task of search queries, where a model has one
QUERY_TASK = "retrieval.query"


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``device`` as a ``torch.device``; CUDA when available if None. A CUDA device always
    gets its index (``"cuda"`` is the current device, e.g. ``cuda:0``)."""
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"invalid device {device!r}: {exc}") from None
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {str(device)!r} was requested but CUDA is not available")
        if resolved.index is None:
            resolved = torch.device("cuda", torch.cuda.current_device())
    return resolved


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """``dtype`` as a ``torch.dtype``. None: bf16 on CUDA and on CPUs that compute bf16 natively
    (AVX512-BF16 or AMX: 2.2x float32's speed on images, 3.4-3.9x on texts, cosine to float32 >= 0.9999 on the goldens and
    0.9996 on full-size images, see ``benchmarks/RESULTS.md``), float32 elsewhere. ``float32`` is the reference's arithmetic
    exactly; bf16/fp16 keep LayerNorms, softmax and pooling in float32; ``int8`` (opt-in, never
    a default) quantizes the Linear weights (:mod:`.precision`)."""
    if dtype is None:
        return float_dtype(device)
    if isinstance(dtype, torch.dtype) and dtype in _DTYPES.values():
        return dtype
    if isinstance(dtype, str) and dtype.removeprefix("torch.") in _DTYPES:
        return _DTYPES[dtype.removeprefix("torch.")]
    raise ValueError(f"unsupported dtype {dtype!r}; expected one of {sorted(_DTYPES)} or the torch dtype")


def compile_towers(model: JinaCLIPModel, backend: str = "inductor") -> None:
    """Compile both towers' forward in place with ``torch.compile`` and this backend; parameter
    names stay as they are. Text shapes are dynamic from the start (lengths always vary); the
    vision tower is compiled for its first batch size and made dynamic in the batch size only
    when another one comes (its image size never changes)."""
    model.text.compile(backend=backend, dynamic=True)
    model.vision.compile(backend=backend)


def _check_ordered(items: Any) -> None:
    """A TypeError unless ``items`` is an ordered iterable: a set's rows would come back in no
    defined order, and a mapping would give its keys."""
    if not isinstance(items, Iterable) or isinstance(items, (Mapping, Set)):
        raise TypeError(f"items must be a list (or another ordered iterable) of texts and images, got {type(items).__name__}")  # fmt: skip


def _as_int(value: Any, name: str) -> int:
    """``value`` as a Python int (numpy integers too); a ValueError for bools, floats, strings."""
    try:
        if isinstance(value, bool):
            raise TypeError
        return operator.index(value)
    except TypeError:
        raise ValueError(f"{name} must be an integer, got {value!r}") from None


def _positive_int(value: Any, name: str) -> int:
    number = _as_int(value, name)
    if number < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return number


class JinaCLIPEngine:
    """A jina-clip model ready to embed texts and images into one vector space.

    Build one with :meth:`from_pretrained`. The engine is safe to share between threads (all
    state is read-only after loading); outputs are float32 numpy arrays in input order.
    """

    def __init__(
        self,
        model: JinaCLIPModel | None,
        tokenizer: TextTokenizer,
        *,
        config: JinaCLIPConfig | None = None,
        name_or_path: str = "",
        max_length: int = DEFAULT_MAX_LENGTH,
        batch_size: int = DEFAULT_BATCH_SIZE,
        max_batch_tokens: int = DEFAULT_MAX_BATCH_TOKENS,
        max_image_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS,
        show_progress: bool | None = None,
        reduced_jpeg_decoding: bool = True,
    ) -> None:
        if model is None and config is None:
            raise ValueError("an engine without a model needs its config")
        self.model = model
        self.config: JinaCLIPConfig = model.cfg if model is not None else config
        self.tokenizer = tokenizer
        self.preprocessor = ImagePreprocessor(self.config.preprocess, reduced_jpeg_decoding=reduced_jpeg_decoding)
        self.name_or_path = name_or_path
        self.max_length = self._check_max_length(max_length)
        self.batch_size = _positive_int(batch_size, "batch_size")
        self.max_batch_tokens = _positive_int(max_batch_tokens, "max_batch_tokens")
        self.max_image_pixels = (
            None if max_image_pixels is None else _positive_int(max_image_pixels, "max_image_pixels")
        )
        self.show_progress = show_progress

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | Path,
        *,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        revision: str | None = None,
        cache_dir: str | Path | None = None,
        max_length: int = DEFAULT_MAX_LENGTH,
        batch_size: int = DEFAULT_BATCH_SIZE,
        max_batch_tokens: int = DEFAULT_MAX_BATCH_TOKENS,
        max_image_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS,
        show_progress: bool | None = None,
        weights: bool = True,
        compile: bool | str = False,
        reduced_jpeg_decoding: bool = True,
    ) -> JinaCLIPEngine:
        """Load a published jina-clip checkpoint as it is (no remote code).

        Args:
            name_or_path: a local checkpoint folder, or a Hugging Face hub name such as
                ``"jinaai/jina-clip-v2"`` (taken from the local hub cache, else downloaded).
            device: a torch device or its name; CUDA when available, else CPU.
            dtype: ``"float32"``, ``"bfloat16"``, ``"float16"``, ``"int8"`` or the torch dtype;
                by default bf16 on CUDA and on CPUs with native bf16, float32 elsewhere (see
                :func:`resolve_dtype`). ``"float32"`` reproduces the reference exactly (with
                ``reduced_jpeg_decoding=False`` for large JPEGs).
            revision: hub revision (branch, tag or commit) for a hub name.
            cache_dir: hub cache folder, if not the default one.
            max_length: tokens per text, longer texts are truncated (512 as in the reference;
                at most the model's ``max_position_embeddings``: 8194 for v2, 8192 for v1).
            batch_size: default texts/images per forward pass.
            max_batch_tokens: most padded tokens in one text batch (bounds memory on long texts).
            max_image_pixels: images with more pixels are refused before decoding (None: no limit).
            show_progress: progress bars for downloading, loading and embedding (default: on a terminal).
            weights: False reads only the config and tokenizer (nothing is downloaded but them)
                and builds no model: an engine that tokenizes, counts tokens and preprocesses
                images, and knows its sizes and tasks, but cannot embed (its device is ``meta``).
            compile: compile both towers' forward with ``torch.compile`` (:func:`compile_towers`; True:
                its default backend, inductor; a string: that backend, e.g. ``"cudagraphs"``):
                the first batches of new shapes take seconds to compile, later ones may run
                faster on a GPU; the vectors equal the eager ones within float rounding.
            reduced_jpeg_decoding: decode a JPEG at least 4x the model's input on its shortest
                side (a 12-megapixel photo for 512 px) at 1/2-1/8 scale, about 3x faster, its
                vector within cosine 0.9999 of a full decode's (``benchmarks/RESULTS.md``); False
                decodes every pixel, as the reference does.
        """
        folder = resolve_checkpoint(
            name_or_path, revision=revision, cache_dir=cache_dir, weights=weights, show_progress=show_progress
        )
        config = load_config(folder, cache_dir=cache_dir)
        if weights:
            device_ = resolve_device(device)
            dtype_ = resolve_dtype(dtype, device_)
            model = load_model(folder, config, device_, dtype_, show_progress=show_progress)
            logger.info("loaded %s on %s (%s)", name_or_path, device_, dtype_)
            if compile:
                compile_towers(model, "inductor" if compile is True else compile)
        else:
            model = None
        tokenizer = TextTokenizer.from_folder(folder, config.text.pad_token_id)
        return cls(
            model,
            tokenizer,
            config=config,
            name_or_path=str(name_or_path),
            max_length=max_length,
            batch_size=batch_size,
            max_batch_tokens=max_batch_tokens,
            max_image_pixels=max_image_pixels,
            show_progress=show_progress,
            reduced_jpeg_decoding=reduced_jpeg_decoding,
        )

    # -- what the model offers -------------------------------------------------------------

    @property
    def embedding_dim(self) -> int:
        """Size of the full embeddings (1024 for jina-clip-v2, 768 for jina-clip-v1)."""
        return self.config.text.embed_dim

    @property
    def matryoshka_dims(self) -> tuple[int, ...]:
        """The ``truncate_dim`` values the checkpoint was trained for (empty for jina-clip-v1)."""
        return self.config.matryoshka_dims

    @property
    def tasks(self) -> tuple[str, ...]:
        """Names accepted by ``encode_text(task=...)`` (e.g. ``"retrieval.query"``; empty for
        jina-clip-v1)."""
        return self.config.tasks

    @property
    def max_positions(self) -> int:
        """The most tokens the text tower reads, special tokens included: the highest
        ``max_length`` (8194 for jina-clip-v2, 8192 for jina-clip-v1)."""
        return self.config.text.max_position_embeddings

    @property
    def query_task(self) -> str | None:
        """The task for search queries: ``"retrieval.query"`` where the model has it (v2),
        else None (v1 embeds queries and documents alike)."""
        return QUERY_TASK if QUERY_TASK in self.tasks else None

    @property
    def output_dim(self) -> int:
        """The size of what ``encode_*`` return without ``truncate_dim``: the checkpoint's own
        ``truncate_dim`` if its config sets one, else the full size."""
        return self.config.truncate_dim or self.embedding_dim

    @property
    def output_dims(self) -> tuple[int, ...]:
        """The vector sizes a caller may ask for, ascending: the Matryoshka sizes up to
        :attr:`output_dim`, and it (the largest)."""
        return tuple(sorted(d for d in {*self.matryoshka_dims, self.embedding_dim} if d <= self.output_dim))

    @property
    def image_tokens(self) -> int:
        """Tokens the vision tower runs per image: its patches and the CLS token (1297 for
        jina-clip-v2 at 512 px)."""
        return self.config.vision.grid_size**2 + 1

    @property
    def device(self) -> torch.device:
        """Where the model runs (``meta`` for an engine loaded with ``weights=False``)."""
        return torch.device("meta") if self.model is None else self.model.logit_scale.device

    @property
    def dtype(self) -> torch.dtype:
        """The number format the model was loaded in (``torch.int8``: int8 Linear weights)."""
        return torch.float32 if self.model is None else self.model.dtype

    @property
    def logit_scale(self) -> float:
        """The raw CLIP temperature parameter: logits = ``exp(logit_scale) * cosine``."""
        self._check_weights()
        return float(self.model.logit_scale)

    # -- encoding --------------------------------------------------------------------------

    def encode_text(
        self,
        texts: Sequence[str],
        *,
        task: str | None = None,
        truncate_dim: int | None = None,
        normalize: bool = True,
        precision: str = "float32",
        batch_size: int | None = None,
        show_progress: bool | None = None,
        max_length: int | None = None,
        on_truncated: Callable[[list[int]], None] | None = None,
    ) -> np.ndarray:
        """Embed texts: a float32 array of shape ``(len(texts), d)``, rows in input order.

        Args:
            texts: the texts (a list, not a single string).
            task: a name from :attr:`tasks`; its instruction is prepended to every text
                (``"retrieval.query"`` for search queries; None for documents).
            truncate_dim: keep only the first ``truncate_dim`` dimensions (one of
                :attr:`matryoshka_dims`), re-normalized when ``normalize``: what the adapters,
                the server and Weaviate call ``dimensions`` and the Qdrant store ``short_dim``.
            normalize: L2-normalize the embeddings.
            precision: ``"float32"``, or a smaller type of :func:`~.outputs.quantize`: ``"int8"``
                (``round(127 * x / max|x|)`` per row), ``"uint8"``, ``"binary"`` / ``"ubinary"``
                (signs packed 8 per byte: ``ceil(d / 8)`` columns).
            batch_size: texts per forward pass (default: the engine's ``batch_size``).
            show_progress: draw a progress bar (default: when stderr is a terminal).
            max_length: tokens read per text, special tokens and task instruction included
                (default: the engine's ``max_length``; at most the model's positions).
            on_truncated: called with the positions of the texts longer than ``max_length``,
                which keep their first tokens (as in the reference). Without it, such texts are
                named in a logged warning: a text is never cut silently.

        Raises:
            InputError: an item is not a string (its index is in ``.index``).
            ValueError: unknown task or precision, unsupported ``truncate_dim`` or bad ``batch_size``.
            torch.OutOfMemoryError: a single text does not fit in the accelerator's memory (a
                batch that does not fit is halved and retried, see :func:`.batching.split_on_oom`).
        """
        self._check_weights()
        check_precision(precision)
        tokenized = self.tokenize(texts, task=task, max_length=max_length)
        if tokenized.truncated:
            (on_truncated or self._warn_truncated)(tokenized.truncated)
        return self.encode_tokens(tokenized, truncate_dim=truncate_dim, normalize=normalize, precision=precision,
                                  batch_size=batch_size, show_progress=show_progress)  # fmt: skip

    def encode_tokens(
        self,
        tokenized: Tokenized,
        *,
        truncate_dim: int | None = None,
        normalize: bool = True,
        precision: str = "float32",
        batch_size: int | None = None,
        show_progress: bool | None = None,
    ) -> np.ndarray:
        """Embed texts already tokenized by :meth:`tokenize`: what :meth:`encode_text` does after
        tokenizing, for callers that tokenized once already (to count tokens, or to report cut
        texts) and must not tokenize again. Arguments and errors as :meth:`encode_text`'s."""
        self._check_weights()
        check_precision(precision)
        ids = tokenized.ids
        dim = self._output_dim(truncate_dim)
        size = self.batch_size if batch_size is None else _positive_int(batch_size, "batch_size")
        out = np.empty((len(ids), dim), dtype=np.float32)
        if not ids:
            return quantize(out, precision)
        overhead = BATCH_OVERHEAD_TOKENS.get(self.device.type, ACCELERATOR_BATCH_OVERHEAD_TOKENS)
        batches = length_sorted_batches([len(x) for x in ids], size, self.max_batch_tokens, overhead)
        shown = self.show_progress if show_progress is None else show_progress
        with progress_bar(len(ids), "Embedding texts", shown, unit="text") as bar, torch.inference_mode():
            for batch in batches:
                for part, features in split_on_oom(partial(self._text_forward, ids), batch):
                    out[part] = self._finish(features, dim, normalize)
                bar.update(len(batch))
        return quantize(out, precision)

    def tokenize(self, texts: Sequence[str], *, task: str | None = None, max_length: int | None = None) -> Tokenized:
        """The token ids the text tower reads for each text (task instruction and special tokens
        included, cut to ``max_length``: default the engine's) and which texts were cut.

        For callers that count tokens (usage figures) or report truncation before embedding.

        Raises:
            InputError: an item is not a string; ValueError: unknown task or bad ``max_length``.
        """
        return self._tokenize(self._check_texts(texts), self._instruction(task), max_length)

    def token_offsets(self, texts: Sequence[str]) -> list[list[tuple[int, int]]]:
        """The character span of every token of each text (no special tokens, no instruction,
        nothing cut): what a chunker needs to split long texts on token counts."""
        return self.tokenizer.offsets(self._check_texts(texts))

    def _tokenize(self, texts: list[str], prefix: str, max_length: int | None) -> Tokenized:
        limit = self.max_length if max_length is None else self._check_max_length(max_length)
        ids, cut = self.tokenizer.encode_reporting([prefix + t for t in texts], limit)
        return Tokenized(ids, cut, limit)

    def _check_max_length(self, max_length: Any) -> int:
        limit = self.max_positions
        if not 2 <= _positive_int(max_length, "max_length") <= limit:
            raise ValueError(f"max_length must be between 2 and {limit} for this model, got {max_length}")
        return max_length

    def _warn_truncated(self, positions: list[int]) -> None:
        shown = ", ".join(map(str, positions[:10])) + (", ..." if len(positions) > 10 else "")
        logger.warning("%d text(s) longer than max_length were cut to their first tokens (positions %s); "
                       "raise max_length or split them", len(positions), shown)  # fmt: skip

    def encode_image(
        self,
        images: Iterable[ImageInput],
        *,
        truncate_dim: int | None = None,
        normalize: bool = True,
        precision: str = "float32",
        batch_size: int | None = None,
        show_progress: bool | None = None,
    ) -> np.ndarray:
        """Embed images: a float32 array of shape ``(n, d)``, rows in input order.

        An image may be a PIL image, a path (``str`` or ``Path``), raw bytes, a binary file
        object, a base64 string, a ``data:`` URI, an http(s) URL, an ``H x W x C`` uint8
        numpy array or an :class:`~.inputs.ImageRef` of any of them. Images are decoded and
        preprocessed on worker threads while the model runs the previous batch. ``precision``
        as in :meth:`encode_text`.

        Raises:
            InputError: an image is missing, unreadable, corrupt, truncated, of an unsupported
                type, or larger than ``max_image_pixels`` (its index is in ``.index``).
            ValueError: unsupported ``truncate_dim``, unknown precision or bad ``batch_size``.
            torch.OutOfMemoryError: a single image does not fit in the accelerator's memory.
        """
        single = isinstance(images, (str, bytes)) or (isinstance(images, np.ndarray) and images.ndim != 4)
        if single or not isinstance(images, Iterable):
            raise TypeError(
                "images must be a list of images (or an N x H x W x C array); wrap a single image in a list"
            )
        self._check_weights()
        check_precision(precision)
        items = list(images)
        dim = self._output_dim(truncate_dim)
        size = self.batch_size if batch_size is None else _positive_int(batch_size, "batch_size")
        out = np.empty((len(items), dim), dtype=np.float32)
        shown = self.show_progress if show_progress is None else show_progress
        pin = self.device.type == "cuda"
        start = 0
        batches = prepared_batches(self._prepare_image, items, size)
        # closing(): if the model raises, queued decoding is cancelled at once, not when collected
        with progress_bar(len(items), "Embedding images", shown, unit="image") as bar, torch.inference_mode(), closing(batches):  # fmt: skip
            for batch in batches:
                self._embed_pixels(batch, out[start : start + len(batch)], normalize, pin)
                start += len(batch)
                bar.update(len(batch))
        return quantize(out, precision)

    def encode_pixels(
        self,
        crops: np.ndarray | torch.Tensor,
        *,
        truncate_dim: int | None = None,
        normalize: bool = True,
        batch_size: int | None = None,
    ) -> np.ndarray:
        """Embed images already decoded, resized and cropped: a float32 array of shape ``(n, d)``.

        ``crops`` is uint8 of shape ``(n, size, size, 3)``, one ``preprocessor.crop(...)`` per
        image (``size`` is ``preprocessor.size``). For pipelines that decode images elsewhere,
        e.g. on the CPU workers of a Ray job, and bring only crops to the model: the vectors
        equal :meth:`encode_image`'s for the same images.

        Raises:
            ValueError: ``crops`` of another shape or type, unsupported ``truncate_dim`` or bad
                ``batch_size``.
            torch.OutOfMemoryError: a single image does not fit in the accelerator's memory.
        """
        self._check_weights()
        crops = torch.as_tensor(crops)
        size = self.preprocessor.size
        if crops.dtype != torch.uint8 or crops.ndim != 4 or tuple(crops.shape[1:]) != (size, size, 3):
            raise ValueError(f"crops must be uint8 of shape (n, {size}, {size}, 3), got {crops.dtype} {tuple(crops.shape)}")  # fmt: skip
        pixels = self.preprocessor.normalize(crops)
        dim = self._output_dim(truncate_dim)
        step = self.batch_size if batch_size is None else _positive_int(batch_size, "batch_size")
        out = np.empty((len(pixels), dim), dtype=np.float32)
        pin = self.device.type == "cuda"
        with torch.inference_mode():
            for start in range(0, len(pixels), step):
                self._embed_pixels(list(pixels[start : start + step]), out[start : start + step], normalize, pin)
        return out

    # -- one call for texts and images, streaming, similarity, zero-shot classification -----

    def encode(
        self,
        items: Sequence[str | ImageInput] | str | ImageInput,
        *,
        task: str | None = None,
        truncate_dim: int | None = None,
        normalize: bool = True,
        precision: str = "float32",
        batch_size: int | None = None,
        show_progress: bool | None = None,
    ) -> np.ndarray:
        """Embed texts and images given in one list: an array of shape ``(len(items), d)``, rows in
        input order (sentence-transformers' ``model.encode([...])`` for a CLIP model).

        Every ``str`` is a text. An image is a PIL image, a ``pathlib.Path``, bytes, a binary file
        object, a uint8 numpy array, or an :class:`~.inputs.ImageRef` wrapping any image input: a
        path, URL, data URI or base64 *string* is an image only when wrapped
        (``ImageRef("cat.jpg")``), so text is never guessed to be a file name, and a missing file
        is never embedded as the text of its path. A single text or image (not in a list) gives
        one vector of shape ``(d,)``, as in sentence-transformers; an ``N x H x W x C`` uint8
        array is ``N`` images.

        Args:
            task: the texts' task (see :meth:`encode_text`); images have none.
            truncate_dim, normalize, precision, batch_size, show_progress: as in :meth:`encode_text`.

        Texts are tokenized (and ``task`` checked) before any image is read; a text longer than
        ``max_length`` tokens is cut and named in a logged warning by its position in ``items``.

        Raises:
            InputError: an item that is neither a text nor an image, or an image that cannot be
                read (``.index`` is its position in ``items``).
            TypeError: ``items`` is not a list or other ordered iterable (a set, a mapping), or
                an array that is not ``N x H x W x C``.
            ValueError: unknown task or precision, unsupported ``truncate_dim`` or bad ``batch_size``.
        """
        if isinstance(items, np.ndarray) and items.ndim != 4:
            raise TypeError("a numpy array is N x H x W x C images; wrap a single array image in a list")
        if isinstance(items, str) or (is_image_input(items) and not isinstance(items, np.ndarray)):
            return self.encode([items], task=task, truncate_dim=truncate_dim, normalize=normalize, precision=precision,
                               batch_size=batch_size, show_progress=show_progress)[0]  # fmt: skip
        _check_ordered(items)
        self._check_weights()
        check_precision(precision)
        items = list(items)
        texts, images = split_texts_and_images(items)
        out = np.empty((len(items), self._output_dim(truncate_dim)), dtype=np.float32)
        options = {"truncate_dim": truncate_dim, "normalize": normalize, "batch_size": batch_size,
                   "show_progress": show_progress}  # fmt: skip
        with _positions_of(texts):
            tokenized = self.tokenize([items[i] for i in texts], task=task)
        if tokenized.truncated:
            self._warn_truncated([texts[i] for i in tokenized.truncated])
        if images:
            with _positions_of(images):
                out[images] = self.encode_image([items[i] for i in images], **options)
        if texts:
            out[texts] = self.encode_tokens(tokenized, **options)
        return quantize(out, precision)

    def encode_query(self, items: Sequence[str | ImageInput] | str | ImageInput, **options: Any) -> np.ndarray:
        """Embed search queries: :meth:`encode` with the model's query task (:attr:`query_task`,
        ``retrieval.query`` on jina-clip-v2; none on v1) for the texts. Images are embedded as
        they always are. Options as :meth:`encode`'s (sentence-transformers' ``encode_query``)."""
        return self.encode(items, task=self.query_task, **options)

    def encode_document(self, items: Sequence[str | ImageInput] | str | ImageInput, **options: Any) -> np.ndarray:
        """Embed what is searched: :meth:`encode` without a task, as jina-clip embeds documents
        and images. Options as :meth:`encode`'s (sentence-transformers' ``encode_document``)."""
        return self.encode(items, task=None, **options)

    def embed(
        self,
        items: Iterable[str | ImageInput],
        *,
        task: str | None = None,
        truncate_dim: int | None = None,
        normalize: bool = True,
        precision: str = "float32",
        batch_size: int | None = None,
        chunk_size: int | None = None,
    ) -> Iterator[np.ndarray]:
        """Embed any iterable of texts and images lazily: yield one vector (shape ``(d,)``) per
        item, in order (fastembed's ``embed``).

        The iterable is read ``chunk_size`` items at a time (default: 256, or ``batch_size`` if
        larger) and each chunk embedded by :meth:`encode` before the next is read, so a stream of
        millions of files or rows never sits in memory: at most one chunk of inputs and its
        vectors do, plus the vectors the caller keeps (each yielded vector is its own array).
        Items are read as :meth:`encode` reads them (``str`` is a text; wrap path and URL strings
        in :class:`~.inputs.ImageRef`); a text-mode file gives its lines, newlines included. No
        progress bar is drawn: the length is unknown.

        The arguments are checked when ``embed`` is called; the first chunk is read on the first
        ``next()``.

        Raises:
            InputError: as :meth:`encode`, with ``.index`` the item's position in the stream.
            ValueError: unknown task or precision, unsupported ``truncate_dim``, bad sizes.
        """
        # str included; a text-mode file is its lines (a binary one is an image)
        single = items.ndim != 4 if isinstance(items, np.ndarray) else is_image_input(items)
        if single and not isinstance(items, io.TextIOBase):
            raise TypeError("items must be an iterable of texts and images; wrap a single one in a list")
        _check_ordered(items)
        self._check_weights()
        check_precision(precision)
        self._output_dim(truncate_dim)
        self._instruction(task)
        size = self.batch_size if batch_size is None else _positive_int(batch_size, "batch_size")
        chunk = max(DEFAULT_EMBED_CHUNK, size) if chunk_size is None else _positive_int(chunk_size, "chunk_size")
        options = {"task": task, "truncate_dim": truncate_dim, "normalize": normalize, "precision": precision,
                   "batch_size": size, "show_progress": False}  # fmt: skip
        return self._embed_chunks(iter(items), chunk, options)

    def _embed_chunks(self, source: Iterator[Any], chunk: int, options: dict[str, Any]) -> Iterator[np.ndarray]:
        start = 0
        while part := list(islice(source, chunk)):
            with _positions_of(range(start, start + len(part))):
                vectors = self.encode(part, **options)
            start += len(part)
            del part  # the inputs go before the vectors are handed out
            yield from (row.copy() for row in vectors)

    def query_embed(self, items: Iterable[str | ImageInput], **options: Any) -> Iterator[np.ndarray]:
        """:meth:`embed` with the query task for texts (fastembed's ``query_embed``)."""
        return self.embed(items, task=self.query_task, **options)

    def passage_embed(self, items: Iterable[str | ImageInput], **options: Any) -> Iterator[np.ndarray]:
        """:meth:`embed` without a task, for what is searched (fastembed's ``passage_embed``)."""
        return self.embed(items, task=None, **options)

    @staticmethod
    def similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """The cosine similarity of every row of ``a`` with every row of ``b``: float32 of shape
        ``(len(a), len(b))`` (a single vector counts as one row). Works on float and ``int8``
        embeddings of the same size (e.g. both truncated alike); compare ``binary`` ones by
        Hamming distance instead (sentence-transformers' ``model.similarity``)."""
        return cosine_similarity(a, b)

    def classify(
        self,
        images: Iterable[ImageInput],
        labels: Sequence[str],
        *,
        batch_size: int | None = None,
        show_progress: bool | None = None,
    ) -> np.ndarray:
        """Zero-shot classification: for each image, the probability of each label, float32 of
        shape ``(n_images, len(labels))``, each row summing to 1, columns in ``labels``' order.

        As CLIP computes it: the softmax over the labels of ``exp(logit_scale) * cosine`` of the
        embeddings (of :attr:`output_dim`), with the checkpoint's own trained temperature
        (:attr:`logit_scale`): the image-text logits of the reference model's ``forward``. Labels
        are embedded as written and without a task instruction, as the reference's ``forward``
        reads texts (a label is a description the image is matched against, not a search query);
        prompts such as ``"a photo of a cat"`` usually classify better than ``"cat"``. The
        probabilities are relative to the labels given: they sum to 1 even when none fits.

        Raises:
            InputError: a label that is not a string (``kind`` ``text``), or an image that cannot
                be read (``kind`` ``image``); ``.index`` is its position in its own list.
            ValueError: no labels.
        """
        if isinstance(labels, str):
            raise TypeError("labels must be a list of strings; wrap a single label in a list")
        labels = self._check_texts(labels)
        if not labels:
            raise ValueError("classify needs at least one label")
        # labels first: a bad one fails before any image is read
        label_vectors = self.encode_text(labels, batch_size=batch_size, show_progress=False)
        image_vectors = self.encode_image(images, batch_size=batch_size, show_progress=show_progress)
        return label_probabilities(image_vectors, label_vectors, self.logit_scale)

    # -- helpers ---------------------------------------------------------------------------

    def _text_forward(self, ids: list[list[int]], part: list[int]) -> torch.Tensor:
        """Pad the texts ``part`` of ``ids`` (to the longest of them) and run the text tower."""
        input_ids = self.tokenizer.pad([ids[i] for i in part]).to(self.device, non_blocking=True)
        return self.model.text(input_ids, input_ids != self.tokenizer.pad_token_id)

    def _embed_pixels(self, batch: list[torch.Tensor], out: np.ndarray, normalize: bool, pin: bool) -> None:
        """Embed one batch of preprocessed images into ``out`` (its rows, ``out.shape[1]`` dims),
        halving the batch if it runs out of accelerator memory."""
        for part, features in split_on_oom(partial(self._vision_forward, batch, pin), list(range(len(batch)))):
            out[part] = self._finish(features, out.shape[1], normalize)

    def _vision_forward(self, pixels: list[torch.Tensor], pin: bool, part: list[int]) -> torch.Tensor:
        """Stack the preprocessed images ``part`` of ``pixels``, move them to the device (through
        pinned memory on CUDA) and run the vision tower."""
        batch = torch.stack([pixels[i] for i in part])
        batch = (batch.pin_memory() if pin else batch).to(self.device, self.model.compute_dtype, non_blocking=True)
        return self.model.vision(batch)

    def _prepare_image(self, index: int, item: ImageInput) -> torch.Tensor:
        return self.preprocessor.prepare(item, index, self.max_image_pixels)

    @staticmethod
    def _check_texts(texts: Sequence[str]) -> list[str]:
        if isinstance(texts, str) or not isinstance(texts, Iterable):
            raise TypeError("texts must be a list of strings; wrap a single text in a list")
        texts = list(texts)
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise InputError(i, f"expected a string, got {type(text).__name__}", kind="text")
            try:
                text.encode("utf-8")
            except UnicodeEncodeError as exc:  # lone surrogates, e.g. from json.loads of bad escapes
                raise InputError(
                    i, f"not valid Unicode text: {exc.reason} at position {exc.start}", kind="text"
                ) from None
        return texts

    def _check_weights(self) -> None:
        if self.model is None:
            raise RuntimeError(f"{self._model_name()} was loaded with weights=False: it tokenizes and preprocesses, "
                               "but cannot embed")  # fmt: skip

    def _model_name(self) -> str:
        return self.name_or_path or "this model"

    def _instruction(self, task: str | None) -> str:
        if task is None:
            task = self.config.text.default_instruction_task
            if task is None:
                return ""
        instructions = self.config.text.task_instructions
        if task not in instructions:
            if not instructions:
                raise ValueError(f"{self._model_name()} was not trained with task instructions; task must be None")
            raise ValueError(f"unknown task {task!r}; valid tasks for {self._model_name()}: {sorted(instructions)}")
        return instructions[task]

    def _output_dim(self, truncate_dim: int | None) -> int:
        if truncate_dim is None:
            truncate_dim = self.config.truncate_dim
            if truncate_dim is None:
                return self.embedding_dim
        truncate_dim = _as_int(truncate_dim, "truncate_dim")
        if truncate_dim not in self.matryoshka_dims:
            if not self.matryoshka_dims:
                raise ValueError(f"{self._model_name()} was not trained for Matryoshka truncation; truncate_dim must be None")  # fmt: skip
            raise ValueError(
                f"truncate_dim {truncate_dim!r} is not supported; choose one of {list(self.matryoshka_dims)}"
            )
        return truncate_dim

    @staticmethod
    def _finish(features: torch.Tensor, dim: int, normalize: bool) -> np.ndarray:
        """Truncate (Matryoshka), then L2-normalize, in fp32; to a CPU numpy array."""
        return truncate_normalize(features[:, :dim].float().cpu().numpy(), normalize=normalize)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self._model_name()!r}, device={str(self.device)!r}, "
            f"dtype={self.dtype}, embedding_dim={self.embedding_dim})"
        )


@contextmanager
def _positions_of(positions: Sequence[int]) -> Iterator[None]:
    """An :class:`InputError` raised inside, about the ``i``-th item of a part of a list, as one
    about its place in the whole list, ``positions[i]``."""
    try:
        yield
    except InputError as exc:
        raise exc.at(positions[exc.index]) from None


def model_key(name_or_path: str | Path) -> str:
    """One name per model: a local folder by its resolved path, a hub name as it is."""
    folder = Path(name_or_path).expanduser()
    return str(folder.resolve()) if folder.is_dir() else str(name_or_path)


_SHARED: weakref.WeakValueDictionary[tuple[str, str, torch.dtype], JinaCLIPEngine] = weakref.WeakValueDictionary()
_LOADING: dict[tuple[str, str, torch.dtype], threading.Lock] = {}
_SHARED_LOCK = threading.Lock()


def shared_engine(
    name_or_path: str | Path,
    *,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    show_progress: bool | None = None,
) -> JinaCLIPEngine:
    """The process-wide engine for this model, device and dtype, loaded on first use.

    Adapters (LangChain, LlamaIndex, Qdrant, the server) get their engine here, so two of them
    built with the same model share one copy of the weights. An engine lives as long as
    something holds it; a folder and the same folder by another path are one model. Loading
    one model does not hold up getting another that is already loaded.
    """
    device_ = resolve_device(device)
    dtype_ = resolve_dtype(dtype, device_)
    key = (model_key(name_or_path), str(device_), dtype_)
    with _SHARED_LOCK:
        loading = _LOADING.setdefault(key, threading.Lock())
    with loading:
        engine = _SHARED.get(key)
        if engine is None:
            engine = JinaCLIPEngine.from_pretrained(
                name_or_path, device=device_, dtype=dtype_, show_progress=show_progress
            )
            _SHARED[key] = engine
    return engine


class LazyEngine:
    """A model to embed with whose weights load on first use.

    Its sizes, tasks and tokenizer come from the checkpoint's config and tokenizer files alone
    (``from_pretrained(..., weights=False)``), so a vector store can be laid out and checked,
    files chunked, and an index with nothing new to embed finished, before (or without) loading
    the weights. The loaded engine is :func:`shared_engine`'s, shared with the other adapters.
    """

    def __init__(
        self,
        name_or_path: str | Path,
        *,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        show_progress: bool | None = None,
    ) -> None:
        self.spec = JinaCLIPEngine.from_pretrained(name_or_path, weights=False)
        self._load = partial(shared_engine, name_or_path, device=device, dtype=dtype, show_progress=show_progress)
        self._engine: JinaCLIPEngine | None = None
        self._lock = threading.Lock()

    @property
    def engine(self) -> JinaCLIPEngine:
        """The engine with its weights, loaded on the first call."""
        with self._lock:
            if self._engine is None:
                self._engine = self._load()
            return self._engine

    @property
    def loaded(self) -> bool:
        """Whether the weights are loaded."""
        return self._engine is not None

    @property
    def name_or_path(self) -> str:
        return self.spec.name_or_path

    @property
    def embedding_dim(self) -> int:
        return self.spec.embedding_dim

    @property
    def matryoshka_dims(self) -> tuple[int, ...]:
        return self.spec.matryoshka_dims

    @property
    def tasks(self) -> tuple[str, ...]:
        return self.spec.tasks

    @property
    def max_positions(self) -> int:
        return self.spec.max_positions

    @property
    def query_task(self) -> str | None:
        return self.spec.query_task

    @property
    def output_dims(self) -> tuple[int, ...]:
        return self.spec.output_dims

    def token_offsets(self, texts: Sequence[str]) -> list[list[tuple[int, int]]]:
        """:meth:`JinaCLIPEngine.token_offsets`, without loading the weights."""
        return self.spec.token_offsets(texts)

    def tokenize(self, texts: Sequence[str], **options: Any) -> Tokenized:
        """:meth:`JinaCLIPEngine.tokenize`, without loading the weights."""
        return self.spec.tokenize(texts, **options)

    def encode_text(self, texts: Sequence[str], **options: Any) -> np.ndarray:
        """:meth:`JinaCLIPEngine.encode_text` (loads the weights on the first call)."""
        return self.engine.encode_text(texts, **options)

    def encode_tokens(self, tokenized: Tokenized, **options: Any) -> np.ndarray:
        """:meth:`JinaCLIPEngine.encode_tokens` (loads the weights on the first call)."""
        return self.engine.encode_tokens(tokenized, **options)

    def encode_image(self, images: Iterable[ImageInput], **options: Any) -> np.ndarray:
        """:meth:`JinaCLIPEngine.encode_image` (loads the weights on the first call)."""
        return self.engine.encode_image(images, **options)

    def encode(self, items: Any, **options: Any) -> np.ndarray:
        """:meth:`JinaCLIPEngine.encode` (loads the weights on the first call)."""
        return self.engine.encode(items, **options)

    def encode_query(self, items: Any, **options: Any) -> np.ndarray:
        """:meth:`JinaCLIPEngine.encode_query` (loads the weights on the first call)."""
        return self.engine.encode_query(items, **options)

    def encode_document(self, items: Any, **options: Any) -> np.ndarray:
        """:meth:`JinaCLIPEngine.encode_document` (loads the weights on the first call)."""
        return self.engine.encode_document(items, **options)

    def embed(self, items: Iterable[Any], **options: Any) -> Iterator[np.ndarray]:
        """:meth:`JinaCLIPEngine.embed` (loads the weights on the call)."""
        return self.engine.embed(items, **options)

    def query_embed(self, items: Iterable[Any], **options: Any) -> Iterator[np.ndarray]:
        """:meth:`JinaCLIPEngine.query_embed` (loads the weights on the call)."""
        return self.engine.query_embed(items, **options)

    def passage_embed(self, items: Iterable[Any], **options: Any) -> Iterator[np.ndarray]:
        """:meth:`JinaCLIPEngine.passage_embed` (loads the weights on the call)."""
        return self.engine.passage_embed(items, **options)

    def classify(self, images: Iterable[ImageInput], labels: Sequence[str], **options: Any) -> np.ndarray:
        """:meth:`JinaCLIPEngine.classify` (loads the weights on the first call)."""
        return self.engine.classify(images, labels, **options)

    similarity = staticmethod(JinaCLIPEngine.similarity)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name_or_path!r}, loaded={self.loaded})"
