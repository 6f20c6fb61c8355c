"""Which files ``jinaclip index PATH...`` takes, and why it leaves each other file it meets.

A user names folders, files and (quoted) globs. The walk takes what they mean to index and leaves out what nobody
does: hidden and version-control folders, dependencies, virtual environments, caches, the vector store itself, and
what ``.gitignore`` or ``--exclude`` rule out; every file or folder left out is listed with its reason, so the summary
can say why. It also keeps what was walked (:class:`Root`), so the indexer can tell the stored points of a file that
was deleted (inside the walk, no longer listed) from those of files the walk never looked at.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Literal

from ..errors import InputError
from .ignore import IgnoreRules, compile_glob

#: reason key (``Skipped.reason``) -> how the summary names it
REASONS = {
    "hidden": "hidden",
    "vcs": "version-control folder",
    "node_modules": "node_modules",
    "virtualenv": "virtual environment",
    "cache": "cache folder",
    "store": "the vector store itself",
    "gitignore": "ignored by .gitignore",
    "excluded": "excluded by --exclude",
    "not_included": "not matched by --include",
    "unsupported": "unsupported file type",
    "special": "not a regular file (broken link, pipe, device)",
    "symlink_dir": "symlinked folder (not followed)",
    "unreadable_dir": "unreadable folder",
}
#: names skipped wherever they are met, files and folders alike
_NAMED = {"node_modules": "node_modules", "__pycache__": "cache"} | dict.fromkeys(
    (".git", ".hg", ".svn", ".bzr", "_darcs", "CVS"), "vcs"
)
_MAGIC = frozenset("*?[")


def name_reason(name: str) -> str | None:
    """Why a file or folder of this name is never walked into (a key of :data:`REASONS`): a
    version-control folder, ``node_modules``, ``__pycache__``, or hidden; None otherwise."""
    if name in _NAMED or name.startswith("."):
        return _NAMED.get(name, "hidden")
    return None


@dataclass(frozen=True)
class Skipped:
    """A file, or a folder skipped whole (listed once, as the folder), that the walk met and did not take."""

    path: str  #: absolute
    reason: str  #: a key of REASONS


@dataclass(frozen=True)
class Root:
    """One path the user gave, and the scope it covers."""

    given: str  #: as the user typed it
    path: str  #: absolute (symlinks not resolved)
    kind: Literal["file", "folder", "glob"]

    def covers(self, source: str) -> bool:
        """Whether an absolute source path is within this root's scope: the file itself, the folder or anything below
        it, or what the glob matches (and anything below a folder it matches). Ignore rules are not consulted."""
        source = os.path.abspath(source)
        if self.kind == "file":
            return source == self.path
        if self.kind == "folder":
            return source == self.path or source.startswith(os.path.join(self.path, ""))
        return _glob_scope(self.path).fullmatch(source.replace(os.sep, "/")) is not None


@lru_cache(maxsize=64)
def _glob_scope(pattern: str) -> re.Pattern[str]:
    """What a glob root covers: what it matches and what is below (a folder it matches is walked)."""
    return re.compile(f"(?:{compile_glob(pattern.replace(os.sep, '/'), hidden=False).pattern})(?:/.*)?", re.DOTALL)


@dataclass
class Listing:
    """What a walk found: the files to index (absolute, in walk order, each once), the others and why, the roots."""

    files: list[Path] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    roots: list[Root] = field(default_factory=list)

    def covers(self, source: str) -> bool:
        """Whether any root covers ``source``: a stored source that is covered but not in ``files`` is stale."""
        return any(root.covers(source) for root in self.roots)

    def counts(self) -> dict[str, int]:
        """The number of skipped files and folders by reason key."""
        return dict(Counter(skipped.reason for skipped in self.skipped))


def walk(
    paths: Iterable[str | os.PathLike] | str | os.PathLike,
    *,
    supported: Callable[[Path], bool],
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    skip: Sequence[str | os.PathLike] = (),
    gitignore: bool = True,
) -> Listing:
    """List the files to index under ``paths`` (files, folders, quoted globs), and the others met with their reasons.

    ``supported`` says whether a file's type can be indexed; ``include``/``exclude`` are gitignore-style patterns
    relative to each root folder (for a file, the folder it is in; for a glob, the folder it starts from); folders in
    ``skip`` (the store's) are never walked; ``gitignore=False`` disregards ``.gitignore`` files. A path that does not
    exist, a glob that matches nothing and a named file of an unsupported type are an ``InputError`` naming the path
    and its index, raised before any folder is read.
    """
    given = [os.fspath(p) for p in ([paths] if isinstance(paths, (str, os.PathLike)) else paths)]
    roots = [Root(path, os.path.abspath(path), _kind(i, path, supported)) for i, path in enumerate(given)]
    targets = [_targets(i, root) for i, root in enumerate(roots)]
    walker = _Walker(supported, include, exclude, {os.path.realpath(folder) for folder in skip}, gitignore)
    walker.listing.roots = roots
    for root, (base, matches) in zip(roots, targets, strict=True):
        for path, real, is_dir in matches:
            if is_dir:
                walker.folder(path, real, base)
            else:
                walker.file(path, real, base, explicit=root.kind == "file")
    walker.listing.skipped = [skipped for key, skipped in walker.dropped.items() if key not in walker.taken]
    return walker.listing


def _kind(i: int, path: str, supported: Callable[[Path], bool]) -> Literal["file", "folder", "glob"]:
    """What a given path is; an ``InputError`` if it does not exist (and has no wildcard) or cannot be indexed."""
    if os.path.isdir(path):
        return "folder"
    if os.path.isfile(path):
        if not supported(Path(path)):
            suffix = Path(path).suffix or "no suffix"
            raise InputError(i, f"{path} is not a supported file type ({suffix})", kind="path")
        return "file"
    if os.path.exists(path):
        raise InputError(i, f"{path} is not a regular file", kind="path")
    if _MAGIC.intersection(path):
        return "glob"
    raise InputError(i, f"{path} does not exist", kind="path")


def _targets(i: int, root: Root) -> tuple[str, list[tuple[str, str, bool]]]:
    """The folder that --include/--exclude patterns are relative to, and the ``(path, resolved path, is_dir)`` of what
    a root names."""
    if root.kind == "glob":
        return _expand(i, root.given)
    folder = root.kind == "folder"
    return root.path if folder else os.path.dirname(root.path), [(root.path, os.path.realpath(root.path), folder)]


def _expand(i: int, pattern: str) -> tuple[str, list[tuple[str, str, bool]]]:
    """A glob's folder (its leading parts without wildcards) and its matches, in walk order, as ``(path, resolved path,
    is_dir)``: ``**`` spans folders, wildcards do not match hidden names, symlinked folders are not descended into."""
    parts = os.path.abspath(pattern).split(os.sep)
    n = next(k for k, part in enumerate(parts) if _MAGIC.intersection(part))
    base, rest = os.sep.join(parts[:n]) or os.sep, "/".join(parts[n:])
    regex, depth = compile_glob(rest, hidden=False), len(parts) - n if "**" not in rest else float("inf")
    dotted = any(part.lstrip("\\").startswith(".") for part in parts[n:])  # else no match is in a hidden folder
    real, found = os.path.realpath(base), []

    def visit(folder: str, rel: str, level: int) -> None:
        try:
            entries = sorted(os.scandir(folder), key=lambda entry: entry.name)
        except OSError:
            return
        for entry in entries:
            if regex.fullmatch(rel + entry.name) and (entry.is_dir() or entry.is_file()):
                key = os.path.realpath(entry.path) if entry.is_symlink() else os.path.join(real, rel + entry.name)
                found.append((entry.path, key, entry.is_dir()))
            elif level < depth and entry.is_dir(follow_symlinks=False) and (dotted or entry.name[0] != "."):
                visit(entry.path, f"{rel}{entry.name}/", level + 1)

    visit(base, "", 1)
    if not found:
        raise InputError(i, f"{pattern} matches no file", kind="path")
    return base, found


def _within(rules: IgnoreRules, path: str, base: str, is_dir: bool, ancestors: bool = True) -> bool:
    """Whether ``rules`` match ``path`` or (unless the walk checked them) a folder above it, below ``base``: as git
    decides for one ignore file."""
    if not rules.rules or rules.match(path, is_dir):
        return bool(rules.rules)
    prefix = os.path.join(base, "")
    parts = path[len(prefix) :].split(os.sep)[:-1] if ancestors else []
    return any(rules.match(prefix + os.sep.join(parts[: k + 1]), True) for k in range(len(parts)))


def _marker(names: dict[str, os.DirEntry]) -> str | None:
    """Why a folder is skipped for what it holds: a virtual environment, or an embedded vector store."""
    if "pyvenv.cfg" in names or "conda-meta" in names:
        return "virtualenv"
    return "store" if "jinaclip.json" in names and "segments" in names and names["segments"].is_dir() else None


@dataclass
class _Walker:
    """One walk's state: the listing so far, what was taken and skipped (by resolved path), the rules parsed."""

    supported: Callable[[Path], bool]
    include: Sequence[str]
    exclude: Sequence[str]
    skip: set[str]  # resolved paths
    gitignore: bool
    listing: Listing = field(default_factory=Listing)
    taken: set[str] = field(default_factory=set)
    dropped: dict[str, Skipped] = field(default_factory=dict)
    parsed: dict[tuple[str, str], IgnoreRules | None] = field(default_factory=dict)

    def note(self, path: str, key: str, reason: str | None, file: Path | None = None) -> None:
        """Take a file (reason None) or skip a file or folder; each once, by ``key``, its resolved path."""
        if reason:
            self.dropped.setdefault(key, Skipped(path, reason))
        elif key not in self.taken:
            self.taken.add(key)
            self.listing.files.append(file or Path(path))

    def rules(self, source: str, base: str, lines: Sequence[str] | None = None) -> IgnoreRules | None:
        """The rules of ``lines``, or of the ignore file ``source`` (None if it cannot be read), relative to ``base``;
        each parsed once."""
        if (source, base) not in self.parsed:
            try:
                if lines is None:
                    with open(source, encoding="utf-8", errors="surrogateescape") as f:
                        lines = f.read().splitlines()
                self.parsed[source, base] = IgnoreRules.parse(lines, Path(base), source=source)
            except OSError:
                self.parsed[source, base] = None
        return self.parsed[source, base]

    def file(self, path: str, real: str, base: str, explicit: bool = False) -> None:
        """A file named by the user (its type already checked) or matched by a glob; ``real``: its resolved path."""
        file, reason = Path(path), self._filtered(path, base, False)
        if not reason and not explicit and not self.supported(file):
            reason = "unsupported"
        self.note(path, real, reason, file)

    def folder(self, path: str, real: str, base: str) -> None:
        """A folder named by the user or matched by a glob: walked whatever its name, unless excluded or the store."""
        reason = "store" if real in self.skip else self._filtered(path, base, True)
        if reason:
            return self.note(path, real, reason)
        self._walk(path, real, self._above(path), base, nested=False)

    def _filtered(self, path: str, base: str, is_dir: bool, walked: bool = False) -> str | None:
        """Whether ``--exclude`` or (for a file) ``--include``, relative to ``base``, leave a path out, and how.
        ``walked``: the path's folders were walked, so none is excluded."""
        if _within(self.rules("--exclude", base, self.exclude), path, base, is_dir, ancestors=not walked):
            return "excluded"
        if not is_dir and self.include and not _within(self.rules("--include", base, self.include), path, base, False):
            return "not_included"
        return None

    def _above(self, folder: str) -> tuple[IgnoreRules, ...]:
        """The ignore rules that apply to a root folder from above: its repository's ``.git/info/exclude`` and the
        ``.gitignore`` files from the repository's top down to the folder's parent (none outside a repository)."""
        if not self.gitignore:
            return ()
        chain, top = [], folder
        while not os.path.lexists(os.path.join(top, ".git")):
            if top == os.path.dirname(top):
                return ()
            chain.append(top := os.path.dirname(top))
        files = [(os.path.join(top, ".git", "info", "exclude"), top)]
        files += [(os.path.join(above, ".gitignore"), above) for above in reversed(chain)]
        return tuple(rules for rules in (self.rules(file, base) for file, base in files) if rules)

    def _walk(self, path: str, real: str, ignores: tuple[IgnoreRules, ...], base: str, nested: bool) -> None:
        """Walk a folder depth-first in name order. ``real`` is its resolved path, ``ignores`` the .gitignore rules
        that apply (the deepest last), ``base`` the folder the --include/--exclude patterns are relative to."""
        try:
            entries = sorted(os.scandir(path), key=lambda entry: entry.name)
        except OSError:
            return self.note(path, real, "unreadable_dir")
        names = {entry.name: entry for entry in entries}
        if nested and (reason := _marker(names)):
            return self.note(path, real, reason)
        if self.gitignore and ".gitignore" in names and (rules := self.rules(names[".gitignore"].path, path)):
            ignores = (*ignores, rules)
        for entry in entries:
            is_dir, key = entry.is_dir(), os.path.join(real, entry.name)
            reason = self._reason(entry, key, is_dir, ignores, base)
            if is_dir and not reason:
                self._walk(entry.path, key, ignores, base, nested=True)
                continue
            file = None if reason else Path(entry.path)
            if file and not entry.is_file():
                reason = "special"
            elif file and not self.supported(file):
                reason = "unsupported"
            self.note(entry.path, os.path.realpath(key) if entry.is_symlink() else key, reason, file)

    def _reason(self, entry: os.DirEntry, key: str, is_dir: bool, ignores: tuple, base: str) -> str | None:
        """Why an entry of a walked folder is skipped, as its name, its kind and the rules tell; None if it is not."""
        if reason := name_reason(entry.name):
            return reason
        if is_dir and (entry.is_symlink() or key in self.skip):
            return "symlink_dir" if entry.is_symlink() else "store"
        if next((v for rules in reversed(ignores) if (v := rules.match(entry.path, is_dir)) is not None), False):
            return "gitignore"
        return self._filtered(entry.path, base, is_dir, walked=True)
