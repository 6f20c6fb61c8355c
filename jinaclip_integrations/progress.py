"""What long work shows on the terminal: progress bars (shown on a terminal, silent when asked or
when not a TTY), and nothing of other libraries' notes that do not concern the user."""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

#: the loggers' levels are process-wide: two threads quieting them at once take turns, so that
#: neither restores the other's ERROR as a logger's level for good
_QUIET_LOCK = threading.Lock()


def show_progress_default(show: bool | None) -> bool:
    """``show`` when given; otherwise whether stderr (where the bar is drawn) is a terminal."""
    if show is not None:
        return show
    return bool(getattr(sys.stderr, "isatty", None) and sys.stderr.isatty())


def progress_bar(total: int | None, desc: str, show: bool | None, **kwargs: Any):
    """A ``tqdm`` bar (use as a context manager); disabled unless :func:`show_progress_default`."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, disable=not show_progress_default(show), leave=False, **kwargs)


@contextmanager
def quiet_loggers(*names: str) -> Iterator[None]:
    """Only errors from the loggers ``names`` while inside (their levels restored after): for
    libraries' notes on their own internals that would print on every command."""
    with _QUIET_LOCK:
        loggers = [logging.getLogger(name) for name in names]
        levels = [logger.level for logger in loggers]
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        try:
            yield
        finally:
            for logger, level in zip(loggers, levels, strict=True):
                logger.setLevel(level)
