"""Typed errors of jinaclip_integrations.

Every error a caller can act on has its own class, so that adapters and servers can map it to
their framework's error shape (an HTTP 400 for :class:`InputError`, a start-up failure for
:class:`CheckpointError`) without parsing messages.
"""

from __future__ import annotations


class JinaCLIPError(Exception):
    """Base class of the errors raised by this package."""


class InputError(JinaCLIPError, ValueError):
    """One item of a batch cannot be embedded.

    Attributes:
        index: the item's position in the input sequence.
        reason: what is wrong with it, in words (e.g. ``"file not found: 'a.jpg'"``).
    """

    def __init__(self, index: int, reason: str, *, kind: str = "input") -> None:
        self.index = index
        self.reason = reason
        self.kind = kind
        super().__init__(f"invalid {kind} at index {index}: {reason}")

    def at(self, index: int) -> InputError:
        """The same error for the same item at another position (a batch's, from a part's)."""
        return InputError(index, self.reason, kind=self.kind)

    def __reduce__(self):  # keep index/reason across pickling (process pools, multiprocessing)
        return (_rebuild_input_error, (self.index, self.reason, self.kind))


def _rebuild_input_error(index: int, reason: str, kind: str) -> InputError:
    return InputError(index, reason, kind=kind)


class CheckpointError(JinaCLIPError, ValueError):
    """A checkpoint folder or its config does not describe a model this package can load.

    Raised for a missing file, a missing/unexpected/mis-shaped weight (the message names the
    key exactly as published), or a configuration option that is not supported.
    """


class StoreError(JinaCLIPError, ValueError):
    """A vector-database collection cannot be used for this model: it exists with another
    layout (vector names, sizes or distance) or was built with another model."""


class DocumentError(JinaCLIPError, ValueError):
    """A file cannot be read as the document its name says it is (a PDF that is damaged or
    encrypted, a text that is not UTF-8, an HTML page in an unknown encoding). The message is
    the reason, in words, without the file's name: callers name the file."""
