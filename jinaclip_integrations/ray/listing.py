"""What a Ray job indexes: local paths walked as ``jinaclip index`` walks them, or the files under URIs.

Local files, folders and globs go through :func:`~jinaclip_integrations.ingest.walk.walk` itself, so the job takes
the files the single-process path takes and skips the others for the same reasons. URIs of any filesystem pyarrow
reads (``s3://``, ``gs://``, ``hdfs://``, ``file://``) are listed here with the rules an object store can have:
supported suffixes (:func:`~jinaclip_integrations.ingest.readers.format_of`); hidden names, version-control folders,
``node_modules`` and ``__pycache__`` skipped at any depth below the root; ``--include``/``--exclude`` patterns
relative to the root folder; globs as the walk reads them (``*`` within a name, ``**`` across folders, no wildcard
matching a leading dot). Not there: ``.gitignore`` files and the virtual-environment and store markers, which would
mean reading every folder of a bucket.

Each file comes with its size and modification time, which tell the driver, without reading it, whether it changed
since it was stored; the roots tell which stored sources are gone (covered by a root, no longer listed).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from ..errors import InputError
from ..ingest.files import stat_file
from ..ingest.ignore import IgnoreRules, compile_glob
from ..ingest.items import Failure
from ..ingest.readers import format_of
from ..ingest.walk import Root, Skipped, name_reason, walk


@dataclass(frozen=True)
class ListedFile:
    """A file to index: ``source`` as its points name it (an absolute path, or a URI), ``path`` where the workers
    read it (the same local path, or the path on the listing's pyarrow filesystem), its size and modification time
    (None where the filesystem does not tell)."""

    source: str
    path: str
    size: int
    mtime_ns: int | None


@dataclass(frozen=True)
class UriRoot:
    """One URI the user gave and the sources it covers: a file; a folder and what is below it; or, for a glob, what
    ``pattern`` matches below the folder ``uri`` (and what is below a folder it matches)."""

    given: str
    uri: str
    kind: Literal["file", "folder", "glob"]
    pattern: str = ""

    def covers(self, source: str) -> bool:
        """Whether a source is within this root's scope (ignore rules are not consulted)."""
        if self.kind == "file":
            return source == self.uri
        if not source.startswith(self.uri + "/"):
            return False
        return self.kind == "folder" or _scope(self.pattern).fullmatch(source[len(self.uri) + 1 :]) is not None


@dataclass
class JobFiles:
    """The files of a job (each once, in walk order), those left out and why, the files listed that could not be
    looked at (``failed``), the roots, and the pyarrow filesystem of URIs (None for local paths)."""

    files: list[ListedFile] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    failed: list[Failure] = field(default_factory=list)
    roots: list[Root | UriRoot] = field(default_factory=list)
    filesystem: Any = None

    def covers(self, source: str) -> bool:
        """Whether any root covers ``source``: a stored source that is covered and not listed is gone."""
        return any(root.covers(source) for root in self.roots)

    def listed(self) -> set[str]:
        """Every source listed, those that failed included."""
        return {f.source for f in self.files} | {f.source for f in self.failed}


def list_files(
    paths: str | os.PathLike | Iterable[str | os.PathLike],
    *,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    gitignore: bool = True,
    skip: Sequence[str | os.PathLike] = (),
) -> JobFiles:
    """The files under ``paths``: local files, folders and globs (walked, with ``.gitignore`` files unless
    ``gitignore=False``, never entering the folders in ``skip``), or URIs, all on one filesystem.

    Raises:
        InputError: a path does not exist, a glob matches nothing, or a file named explicitly is not supported.
        ValueError: local paths and URIs mixed, or URIs of several filesystems.
    """
    given = [os.fspath(p) for p in ([paths] if isinstance(paths, (str, os.PathLike)) else paths)]
    uris = ["://" in p for p in given]
    if any(uris) and not all(uris):
        local = given[uris.index(False)]
        raise ValueError(f"give either local paths or URIs, not both: {local!r} is local (as a URI: file://{os.path.abspath(local)})")  # fmt: skip
    if any(uris):
        return _list_uris(given, include, exclude)
    return _list_local(given, include, exclude, gitignore, skip)


def _supported(path: Path) -> bool:
    return format_of(path) is not None


def _list_local(paths: list[str], include: Sequence[str], exclude: Sequence[str], gitignore: bool,
                skip: Sequence[str | os.PathLike]) -> JobFiles:  # fmt: skip
    listing = walk(paths, supported=_supported, include=include, exclude=exclude, skip=skip, gitignore=gitignore)
    found = JobFiles(skipped=listing.skipped, roots=list(listing.roots))
    for path in listing.files:  # absolute: the workers' working folder is where `ray start` ran
        source = str(path)
        try:
            size, mtime_ns = stat_file(path)
        except OSError as exc:
            found.failed.append(Failure(source, f"cannot read {source}: {exc.strerror or exc}"))
            continue
        found.files.append(ListedFile(source, source, size, mtime_ns))
    return found


def _list_uris(uris: list[str], include: Sequence[str], exclude: Sequence[str]) -> JobFiles:
    from pyarrow import fs as pafs

    found = JobFiles()
    taken: dict[str, ListedFile] = {}
    dropped: dict[str, Skipped] = {}
    rules = {"exclude": IgnoreRules.parse(exclude, Path("/")), "include": IgnoreRules.parse(include, Path("/"))}
    for i, given in enumerate(uris):
        uri = given.rstrip("/") or given
        filesystem, path = pafs.FileSystem.from_uri(uri)
        if found.filesystem is None:
            found.filesystem = filesystem
        elif filesystem.type_name != found.filesystem.type_name:
            raise ValueError(f"all paths must be on one filesystem: {given} is on {filesystem.type_name}, not {found.filesystem.type_name}")  # fmt: skip
        prefix = uri[: len(uri) - len(path)] if uri.endswith(path) else uri.split("://", 1)[0] + "://"
        root, base, candidates = _root(i, given, prefix, filesystem, path)
        found.roots.append(root)
        for info in candidates:
            rel = info.path[len(base) :].lstrip("/")
            reason, what = _reason(rel, rules, explicit=root.kind == "file")
            source = f"{prefix}{base}/{rel}"
            if reason:
                dropped.setdefault(f"{prefix}{base}/{what}", Skipped(f"{prefix}{base}/{what}", reason))
            else:
                taken.setdefault(source, ListedFile(source, info.path, info.size, info.mtime_ns))
    found.files = list(taken.values())
    found.skipped = [skipped for key, skipped in dropped.items() if key not in taken]
    return found


def _root(i: int, given: str, prefix: str, filesystem: Any, path: str) -> tuple[UriRoot, str, list[Any]]:
    """A URI's root, the folder its rules and files are relative to, and the ``FileInfo`` of its candidate files."""
    from pyarrow import fs as pafs

    if (at := _magic(path)) >= 0:
        base = path[:at].rpartition("/")[0]
        root = UriRoot(given, prefix + base, "glob", path[len(base) + 1 :])
        files = [info for info in _files_under(filesystem, base) if root.covers(prefix + info.path)]
        if not files:
            raise InputError(i, f"{given} matches no file", kind="path")
        return root, base, files
    info = filesystem.get_file_info(path)
    if info.type == pafs.FileType.NotFound:
        raise InputError(i, f"{given} does not exist", kind="path")
    if info.type == pafs.FileType.Directory:
        return UriRoot(given, prefix + path, "folder"), path, _files_under(filesystem, path)
    if format_of(path) is None:
        raise InputError(i, f"{given} is not a supported file type ({PurePosixPath(path).suffix or 'no suffix'})", kind="path")  # fmt: skip
    return UriRoot(given, prefix + path, "file"), path.rpartition("/")[0], [info]


def _reason(rel: str, rules: dict[str, IgnoreRules], explicit: bool) -> tuple[str | None, str]:
    """Why a file (``rel``: its path below the root's folder) is left out, and what is left out: the file, or the
    highest folder above it that is; ``(None, rel)`` when it is taken. A file named explicitly is only filtered."""
    parts = rel.split("/")
    if not explicit:
        for k, name in enumerate(parts[:-1]):
            folder = "/".join(parts[: k + 1])
            if reason := name_reason(name):
                return reason, folder
            if rules["exclude"].match("/" + folder, True):
                return "excluded", folder
        if reason := name_reason(parts[-1]):
            return reason, rel
    if rules["exclude"].match("/" + rel, False):
        return "excluded", rel
    include = rules["include"]
    if include.rules and not any(include.match("/" + "/".join(parts[: k + 1]), k < len(parts) - 1) for k in range(len(parts))):  # fmt: skip
        return "not_included", rel
    if not explicit and format_of(rel) is None:
        return "unsupported", rel
    return None, rel


def _magic(path: str) -> int:
    """Where the first glob character of ``path`` is, or -1."""
    return min((i for i in (path.find(c) for c in "*?[") if i >= 0), default=-1)


@lru_cache(maxsize=64)
def _scope(pattern: str) -> re.Pattern[str]:
    """What a glob covers: what it matches and what is below (a folder it matches is listed)."""
    return re.compile(f"(?:{compile_glob(pattern, hidden=False).pattern})(?:/.*)?", re.DOTALL)


def _files_under(filesystem: Any, folder: str) -> list[Any]:
    """The ``FileInfo`` of the files under ``folder`` of a pyarrow filesystem, recursively, sorted by path."""
    from pyarrow import fs as pafs

    infos = filesystem.get_file_info(pafs.FileSelector(folder, recursive=True, allow_not_found=True))
    return sorted((info for info in infos if info.type == pafs.FileType.File), key=lambda info: info.path)
