"""The checkpoint's ``tokenizer.json``, loaded as it is with the ``tokenizers`` library.

Neither ``AutoTokenizer`` (it asks to run the checkpoint's remote code) nor transformers'
``XLMRobertaTokenizer`` class (it rebuilds its own normalizer and pre-tokenizer, which changes
the ids of texts with leading, repeated or non-space whitespace) reproduces the reference ids;
the file itself does.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import CheckpointError


@dataclass(frozen=True)
class Tokenized:
    """Token ids of texts as the model reads them, and which texts were cut to fit."""

    ids: list[list[int]]
    #: positions of the texts longer than ``max_length`` tokens (they keep their first tokens)
    truncated: list[int]
    max_length: int


class TextTokenizer:
    """Texts -> unpadded token ids (special tokens included), and padding into batches."""

    def __init__(self, serialized: str, pad_token_id: int) -> None:
        self._serialized = serialized
        self.pad_token_id = pad_token_id
        self._by_max_length: dict[int, object] = {}
        self._longest_piece: int | None = None
        self._lock = threading.Lock()

    def __getstate__(self) -> dict:  # pickled to workers (Ray) as the serialized tokenizer
        return {"serialized": self._serialized, "pad_token_id": self.pad_token_id}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["serialized"], state["pad_token_id"])

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
        ``tokenizer(..., truncation=True, max_length=...)`` does; 0: no truncation). One per
        length, because truncation is state of a ``tokenizers.Tokenizer`` and calls may run
        concurrently."""
        from tokenizers import Tokenizer

        with self._lock:
            tok = self._by_max_length.get(max_length)
            if tok is None:
                tok = Tokenizer.from_str(self._serialized)
                tok.no_padding()
                if max_length:
                    tok.enable_truncation(max_length)
                else:
                    tok.no_truncation()
                self._by_max_length[max_length] = tok
            return tok

    def encode(self, texts: list[str], max_length: int) -> list[list[int]]:
        """Token ids of each text (the batch is tokenized in parallel by the Rust library)."""
        return [enc.ids for enc in self._truncating(max_length).encode_batch(texts)]

    def encode_reporting(self, texts: list[str], max_length: int) -> tuple[list[list[int]], list[int]]:
        """``(ids, cut)``: the ids of :meth:`encode` and the positions of the texts that were
        longer than ``max_length`` tokens. One pass: the texts are tokenized to one token more
        than the limit, and a text that reaches it is cut to its first ``max_length - 1`` ids
        and its closing special token, which is what truncating to ``max_length`` gives.

        A text longer than :meth:`chars_for` ``(max_length)`` characters is cut to that many
        first: more characters than its first tokens can cover, so a megabyte of text costs
        what its first tokens cost, not seconds of tokenizing what is then thrown away."""
        keep = self.chars_for(max_length + 1)
        ids = self.encode([text[:keep] for text in texts], max_length + 1)
        cut = [i for i, row in enumerate(ids) if len(row) > max_length]
        for i in cut:
            ids[i] = ids[i][: max_length - 1] + ids[i][-1:]
        return ids, cut

    def chars_for(self, tokens: int) -> int:
        """A number of characters that ``tokens`` tokens never span: tokens times twice the
        longest piece of the vocabulary (twice: Unicode normalization may merge characters),
        plus room for the whitespace between words."""
        if self._longest_piece is None:
            from tokenizers import Tokenizer

            vocab = Tokenizer.from_str(self._serialized).get_vocab()
            self._longest_piece = max(len(piece.strip("▁#")) for piece in vocab) + 1
        return tokens * 2 * self._longest_piece + 1024

    def offsets(self, texts: list[str]) -> list[list[tuple[int, int]]]:
        """The character span ``(start, end)`` of every content token of each text (special
        tokens left out, nothing truncated), as the model's tokenizer splits it."""
        return [enc.offsets for enc in self._truncating(0).encode_batch(texts, add_special_tokens=False)]

    def pad(self, batch: list[list[int]]) -> torch.Tensor:
        """Right-pad to the longest row with the pad id: a [B, L] int64 tensor."""
        out = torch.full((len(batch), max(map(len, batch))), self.pad_token_id, dtype=torch.long)
        for row, ids in zip(out, batch, strict=True):
            row[: len(ids)] = torch.tensor(ids, dtype=torch.long)
        return out
