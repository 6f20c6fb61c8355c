"""The checkpoint's ``tokenizer.json``, loaded as it is with the ``tokenizers`` library.

Neither ``AutoTokenizer`` (it asks to run the checkpoint's remote code) nor transformers'
``XLMRobertaTokenizer`` class (it rebuilds its own normalizer and pre-tokenizer, which changes
the ids of texts with leading, repeated or non-space whitespace) reproduces the reference ids;
the file itself does.
"""

from __future__ import annotations

import threading
from pathlib import Path

import torch

from ..errors import CheckpointError


class TextTokenizer:
    """Texts -> unpadded token ids (special tokens included), and padding into batches."""

    def __init__(self, serialized: str, pad_token_id: int) -> None:
        self._serialized = serialized
        self.pad_token_id = pad_token_id
        self._by_max_length: dict[int, object] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_folder(cls, folder: Path, pad_token_id: int) -> TextTokenizer:
        from tokenizers import Tokenizer

        path = folder / "tokenizer.json"
        if not path.is_file():
            raise CheckpointError(f"no tokenizer.json in {folder}")
        try:
            serialized = Tokenizer.from_file(str(path)).to_str()
        except Exception as exc:  # tokenizers raises plain Exception subclasses
            raise CheckpointError(f"cannot load {path}: {exc}") from exc
        return cls(serialized, pad_token_id)

    def _truncating(self, max_length: int):
        """A tokenizer that truncates to ``max_length`` tokens, special tokens included (as
        ``tokenizer(..., truncation=True, max_length=...)`` does). One per length, because
        truncation is state of a ``tokenizers.Tokenizer`` and calls may run concurrently."""
        from tokenizers import Tokenizer

        with self._lock:
            tok = self._by_max_length.get(max_length)
            if tok is None:
                tok = Tokenizer.from_str(self._serialized)
                tok.no_padding()
                tok.enable_truncation(max_length)
                self._by_max_length[max_length] = tok
            return tok

    def encode(self, texts: list[str], max_length: int) -> list[list[int]]:
        """Token ids of each text (the batch is tokenized in parallel by the Rust library)."""
        return [enc.ids for enc in self._truncating(max_length).encode_batch(texts)]

    def pad(self, batch: list[list[int]]) -> torch.Tensor:
        """Right-pad to the longest row with the pad id: a [B, L] int64 tensor."""
        out = torch.full((len(batch), max(map(len, batch))), self.pad_token_id, dtype=torch.long)
        for row, ids in zip(out, batch, strict=True):
            row[: len(ids)] = torch.tensor(ids, dtype=torch.long)
        return out
