"""Gitignore-style patterns: which paths one ignore file, or one list of ``--include``/``--exclude`` patterns, matches.

``jinaclip index`` honours a project's ``.gitignore`` files as git does and takes its own patterns in the same syntax,
so a user learns one language. This module is that language alone (``git help gitignore`` and git's wildmatch),
translated to regular expressions once, when parsed; which ignore files apply where is :mod:`.walk`'s business.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

#: the POSIX classes wildmatch knows inside brackets (``[[:digit:]]``), as regex class contents
_CLASSES = {
    "alnum": "a-zA-Z0-9",
    "alpha": "a-zA-Z",
    "blank": r" \t",
    "cntrl": r"\x00-\x1f\x7f",
    "digit": "0-9",
    "graph": "!-~",
    "lower": "a-z",
    "print": " -~",
    "punct": r"!-/:-@\[-`{-~",
    "space": r" \t\n\r\f\v",
    "upper": "A-Z",
    "xdigit": "0-9A-Fa-f",
}


def compile_glob(pattern: str, *, hidden: bool = True) -> re.Pattern[str]:
    """A path glob as a regex on POSIX-style paths (use ``fullmatch``).

    ``*`` and ``?`` match within one component, ``[...]`` is one character of a class (``[!...]``/``[^...]``
    negate it; POSIX classes such as ``[:digit:]`` are known) and ``\\`` makes the next character literal, as in
    git's wildmatch. ``**`` as a whole component matches any number of components (``**/b``, ``a/**/b``, ``a/**``);
    elsewhere it is ``*``. With ``hidden=False`` (as shells expand globs) a wildcard never matches the leading ``.``
    of a name: hidden files and folders match only a component that starts with ``.`` itself.
    """
    name = "[^/]+" if hidden else r"(?!\.)[^/]+"
    *parts, last = pattern.split("/")
    regex = "".join(f"(?:{name}/)*" if _globstar(part) else _component(part, hidden) + "/" for part in parts)
    return re.compile(regex + (f"{name}(?:/{name})*" if _globstar(last) else _component(last, hidden)))


def _globstar(part: str) -> bool:
    """Whether a component is ``**`` (any run of two or more stars, as in git), which spans components."""
    return len(part) > 1 and not part.strip("*")


def _component(part: str, hidden: bool) -> str:
    """The regex of one path component of a glob."""
    out = [r"(?!\.)"] if not hidden and part.startswith(("*", "?", "[")) else []
    i = 0
    while i < len(part):
        c, i = part[i], i + 1
        if c == "*":
            while part.startswith("*", i):
                i += 1
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[" and (cls := _bracket(part, i)):
            out.append(cls[0])
            i = cls[1]
        elif c == "\\":  # escapes the next character; a trailing one makes the pattern match nothing, as in git
            out.append(re.escape(part[i]) if i < len(part) else "(?!)")
            i += 1
        else:
            out.append(re.escape(c))
    return "".join(out)


def _bracket(part: str, i: int) -> tuple[str, int] | None:
    """The class that opens before ``part[i]``: its regex and the index after its ``]``; None if it is not closed
    (the ``[`` is then literal). A class never matches ``/``; a ``]`` first in it is literal."""
    negate = part.startswith(("!", "^"), i)
    i += negate
    body, start = [], i
    while i < len(part):
        if part[i] == "]" and i > start:
            content = "".join(body)
            return (f"[^/{content}]" if negate else f"(?!/)[{content}]" if content else "(?!)"), i + 1
        if part.startswith("[:", i) and (end := part.find(":]", i + 2)) != -1:
            body.append(_CLASSES.get(part[i + 2 : end], ""))
            i = end + 2
            continue
        low, i = _char(part, i)
        if part.startswith("-", i) and i + 1 < len(part) and part[i + 1] != "]":
            high, i = _char(part, i + 1)
            if low <= high:  # a reversed range matches nothing
                body.append(f"{re.escape(low)}-{re.escape(high)}")
        else:
            body.append(re.escape(low))
    return None


def _char(part: str, i: int) -> tuple[str, int]:
    """The character of a class at ``part[i]`` (``\\`` escapes the next one) and the index after it."""
    if part[i] == "\\" and i + 1 < len(part):
        return part[i + 1], i + 2
    return part[i], i + 1


@dataclass(frozen=True)
class _Rule:
    regex: re.Pattern[str]
    negate: bool  # a "!" rule re-includes what it matches
    dir_only: bool  # a trailing "/": matches folders only
    basename: bool  # no "/" in the pattern: matched against the name, at any depth


def _parse_line(line: str) -> _Rule | None:
    """One line of an ignore file as a rule; None for blank lines and comments."""
    if not line or line.startswith("#"):
        return None
    end = len(line.rstrip(" "))
    if end < len(line) and (end - len(line[:end].rstrip("\\"))) % 2:
        end += 1  # "\ " keeps the space it escapes
    line = line[:end]
    negate = line.startswith("!")
    line = line[negate:]
    dir_only = line.endswith("/")
    line = line.removesuffix("/")
    if not line:
        return None
    return _Rule(compile_glob(line.removeprefix("/")), negate, dir_only, "/" not in line)


class IgnoreRules:
    """The rules of one ignore file (or of ``--exclude``/``--include`` patterns), relative to ``base`` (a folder).

    A pattern with a ``/`` at its start or middle is anchored to ``base``; one without matches a name at any depth.
    The last matching rule decides. Only the path given is matched: a file inside an ignored folder is the caller's
    to leave out (git never looks inside an ignored folder, so no rule can re-include what is in it).
    """

    def __init__(self, rules: list[_Rule], base: Path, source: str = "") -> None:
        self.rules = rules
        self.base = base
        self.source = source  #: where the rules come from, for messages (a file's path, "--exclude")
        self._prefix = os.path.join(os.fspath(base), "")

    @classmethod
    def parse(cls, lines: Iterable[str], base: Path, *, source: str = "") -> IgnoreRules:
        """Parse the lines of an ignore file (line ends are stripped) whose patterns are relative to ``base``."""
        rules = [_parse_line(line.rstrip("\n").removesuffix("\r")) for line in lines]
        return cls([rule for rule in rules if rule], base, source)

    def match(self, path: Path | str, is_dir: bool) -> bool | None:
        """True if the last rule that matches ``path`` (absolute, below ``base``) ignores it, False if it is a ``!``
        rule (re-included), None if no rule matches (or ``path`` is not below ``base``)."""
        path = os.fspath(path)
        if not path.startswith(self._prefix):
            return None
        rel = path[len(self._prefix) :].replace(os.sep, "/")
        name = rel.rpartition("/")[2]
        for rule in reversed(self.rules):
            if (is_dir or not rule.dir_only) and rule.regex.fullmatch(name if rule.basename else rel):
                return not rule.negate
        return None
