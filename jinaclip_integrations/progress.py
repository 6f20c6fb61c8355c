"""Progress bars for long work: shown on a terminal, silent when asked or when not a TTY."""

from __future__ import annotations

import sys
from typing import Any


def show_progress_default(show: bool | None) -> bool:
    """``show`` when given; otherwise whether stderr (where the bar is drawn) is a terminal."""
    if show is not None:
        return show
    return bool(getattr(sys.stderr, "isatty", None) and sys.stderr.isatty())


def progress_bar(total: int | None, desc: str, show: bool | None, **kwargs: Any):
    """A ``tqdm`` bar (use as a context manager); disabled unless :func:`show_progress_default`."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, disable=not show_progress_default(show), leave=False, **kwargs)
