"""Lazy public names: a package's ``__getattr__`` that imports each name's module on first use,
so importing the package stays cheap and optional extras are needed only by what is used."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from importlib import import_module
from typing import Any


def lazy_getattr(package: str, names: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package``: ``names`` maps each public name to the module
    (relative to ``package``) that defines it. A name is imported on first access and then
    stored in the package, so later accesses do not come back here."""

    def __getattr__(name: str) -> Any:
        module = names.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(import_module(module, package), name)
        setattr(sys.modules[package], name, value)
        return value

    return __getattr__


@contextmanager
def needs_extra(extra: str, what: str) -> Iterator[None]:
    """Around a module's imports of an optional framework: an ``ImportError`` becomes one that
    names ``what`` needs it and the extra to install (``pip install "jinaclip-integrations[extra]"``)."""
    try:
        yield
    except ImportError as exc:
        missing = exc.name or "its dependencies"
        raise ImportError(f'{what} needs {missing}: pip install "jinaclip-integrations[{extra}]"') from exc
