"""Token-aware chunking of long texts for the jina-clip-v2 text tower.

The text tower reads at most 8192 tokens and retrieval works best on passages of a few hundred, so a long text is cut
into chunks that the model embeds whole, never truncated. The caller passes the model tokenizer's character offsets
(``Offsets``); the text is tokenized once and cut on token indexes:

* Boundaries. A chunk starting at token ``s`` may hold tokens ``[s, s + budget)``; it ends at the strongest boundary in
  the last half of that window (so it is at least about half full), the latest of equal strength: before a markdown
  heading line, a blank line, a line break, a sentence end (``.!?…`` then whitespace, or CJK ``。！？``), whitespace,
  any token boundary. A heading line never ends a chunk that more text follows (it goes with its section), unless the
  window's last half holds nothing else.
* Overlap. The next chunk starts ``overlap`` tokens (at most half the chunk) before the previous chunk's end, moved
  forward to the first sentence start in that region, else the first word start; always after the previous start.
  A chunk that ends before a heading line is not overlapped: the next one starts at the heading.
* Headings (markdown). A chunk that starts inside a section, not at its heading line, is embedded as
  ``"Guide > Install\\n\\n" + text`` so that it keeps its context; the trail's tokens come out of its budget.
* Guarantee. Every chunk's embedded string, tokenized on its own, has at most ``max_tokens`` tokens: all of them are
  checked in one batch at the end, and a chunk that is over (tokens change where a chunk is cut off its text) is cut
  again with a smaller budget, and the chunks after it with it. No text is lost: every non-whitespace character is in
  a chunk, and chunk spans never start or end with whitespace.
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

Offsets = Callable[[list[str]], list[list[tuple[int, int]]]]
"""``offsets(texts)``: each text's content tokens (no special tokens) as ``(start, end)`` character spans, in order."""

_NON_WS = re.compile(r"\S")
_FENCE_OR_HEADING = re.compile(r"^ {0,3}(`{3,}|~{3,})|^(#{1,6}) (\S[^\n]*)", re.MULTILINE)
_CLOSING_HASHES = re.compile(r"\s+#+$")
# boundaries weaker than a heading, strongest first: (pattern, whether the chunk ends after the match, else before)
_BOUNDARIES = (
    (re.compile(r"\n[^\S\n]*\n\s*"), False),
    (re.compile(r"\n\s*"), False),
    (re.compile(r"[.!?…](?=\s)|[。！？]"), True),
    (re.compile(r"\s+"), False),
)
_WORD_START = re.compile(r"(?<=[\s。！？])\S")


@dataclass(frozen=True)
class ChunkOptions:
    """How long chunks are and how much consecutive chunks share.

    Attributes:
        max_tokens: content tokens per chunk, 16 to 8190 (the model adds 2 special tokens and reads 8192 in all).
        overlap: tokens of a chunk's end repeated at the start of the next chunk, 0 to ``max_tokens // 2``.
    """

    max_tokens: int = 512
    overlap: int = 64

    def __post_init__(self) -> None:
        _check_int("max_tokens", self.max_tokens, 16, 8190)
        _check_int("overlap", self.overlap, 0, self.max_tokens // 2)


def _check_int(name: str, value: object, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"ChunkOptions.{name} must be an int from {low} to {high}, got {value!r}")


@dataclass(frozen=True)
class Chunk:
    """One chunk of a text.

    Attributes:
        text: the chunk, ``section_text[start:end]`` of the text given to ``chunk_text``.
        start: where it starts in the text (characters).
        end: where it ends (exclusive).
        heading: the markdown heading trail in force where the chunk starts (``"Guide > Install > Linux"``), else None.
        embed_text: what to embed: ``text``, or ``f"{trail}\\n\\n{text}"`` for a chunk that starts inside a section
            but not at its heading line (the trail cut to at most ``max_tokens // 4`` tokens).
        tokens: content tokens of ``embed_text``, at most ``max_tokens``.
    """

    text: str
    start: int
    end: int
    heading: str | None
    embed_text: str
    tokens: int


def chunk_text(
    text: str, offsets: Offsets, options: ChunkOptions = ChunkOptions(), *, markdown: bool = False
) -> list[Chunk]:
    """Cut ``text`` into chunks of at most ``options.max_tokens`` tokens each (see the module docstring).

    ``markdown=True`` makes ``#`` heading lines (outside fenced code) boundaries and heading trails. A text that fits is
    one chunk without its surrounding whitespace; a blank text gives no chunks. ``offsets`` is called once on the text,
    once on the heading trails (markdown) and once on the chunks, more only where a chunk has to be cut again.
    """
    first = _NON_WS.search(text)
    return [] if first is None else _Splitter(text, first.start(), offsets, options, markdown).run()


def _headings(text: str) -> list[tuple[int, int, tuple[str, ...]]]:
    """The heading lines outside fenced code: (line start, line end, trail of heading texts in force after it)."""
    found, stack, fence = [], [], ""
    for match in _FENCE_OR_HEADING.finditer(text):
        marker, hashes, title = match.groups()
        if marker:
            if not fence:
                fence = marker
            elif marker[0] == fence[0] and len(marker) >= len(fence):
                fence = ""
        elif not fence:
            stack = [(level, t) for level, t in stack if level < len(hashes)]
            stack.append((len(hashes), _CLOSING_HASHES.sub("", title.strip())))
            found.append((match.start(), match.end(), tuple(t for _, t in stack)))
    return found


def _is_sentence_start(text: str, pos: int) -> bool:
    """Whether the word at ``pos`` starts the text, a line or a sentence."""
    i = pos - 1
    while i >= 0 and text[i].isspace():
        if text[i] == "\n":
            return True
        i -= 1
    return i < 0 or text[i] in "。！？" or (i < pos - 1 and text[i] in ".!?…")


class _Splitter:
    """The state of one ``chunk_text`` call: the text, its token offsets and headings."""

    def __init__(self, text: str, first: int, offsets: Offsets, options: ChunkOptions, markdown: bool) -> None:
        self.text, self.first, self.offsets, self.options = text, first, offsets, options
        spans = offsets([text])[0]
        self.starts, self.ends = [a for a, _ in spans], [b for _, b in spans]
        self.heads = _headings(text) if markdown else []
        self.head_starts = [start for start, _, _ in self.heads]
        self.heading_lines = set(self.head_starts)
        self.trails = self._fit_trails()
        self.counts = {text: len(spans)}  # embedded string -> its tokens
        self.caps: dict[int, int] = {}  # chunk start -> most text tokens, for chunks found over

    def _fit_trails(self) -> dict[tuple[str, ...], tuple[str, int]]:
        """Each heading trail -> (the prefix to embed, its cost in tokens); the prefix fits in ``max_tokens // 4``."""
        limit, trails = self.options.max_tokens // 4, {trail for _, _, trail in self.heads}
        candidates = sorted({" > ".join(trail[i:]) for trail in trails for i in range(len(trail))})
        spans = dict(zip(candidates, self.offsets(candidates), strict=True)) if candidates else {}
        fitted = {}
        for trail in trails:
            joined = (" > ".join(trail[i:]) for i in range(len(trail)))
            prefix = next((s for s in joined if len(spans[s]) <= limit), None)
            if prefix is None:  # the last heading alone is too long: keep its first tokens
                prefix = trail[-1][: spans[trail[-1]][limit - 1][1]].rstrip()
            fitted[trail] = (prefix, (len(spans[prefix]) if prefix in spans else limit) + 2)
        return fitted

    def run(self) -> list[Chunk]:
        """Chunk the text, re-cutting chunks found over budget (and those after them) until all fit."""
        done: list[Chunk] = []
        start: int | None = self.first
        while start is not None:
            planned, position = [], start
            while position is not None:
                chunk, used, stuck, position = self._cut(position)
                planned.append((chunk, used, stuck))
            new = list(dict.fromkeys(c.embed_text for c, _, _ in planned if c.embed_text not in self.counts))
            self.counts.update(zip(new, map(len, self.offsets(new) if new else ()), strict=True))
            start = None
            for chunk, used, stuck in planned:
                over = self.counts[chunk.embed_text] - self.options.max_tokens
                if over > 0 and not stuck:
                    self.caps[chunk.start], start = used - over, chunk.start
                    break
                done.append(replace(chunk, tokens=self.counts[chunk.embed_text]))
        return done

    def _cut(self, start: int) -> tuple[Chunk, int, bool, int | None]:
        """The chunk at ``start`` (non-whitespace), its text tokens (at most its budget), whether it cannot shrink, and
        where the next chunk starts."""
        j = bisect_right(self.head_starts, start) - 1
        trail = self.heads[j][2] if j >= 0 else ()
        prefix, cost = self.trails[trail] if trail and self.heads[j][0] != start else ("", 0)
        # alone, a chunk that does not start after a space usually gains a token (the tokenizer marks word starts)
        spare = 0 if prefix or start == self.first or self.text[start - 1] == " " else 1
        budget = min(self.options.max_tokens - cost - spare, self.caps.get(start, self.options.max_tokens))
        stuck = budget < 1
        if stuck:
            prefix, budget = "", 1
        s = bisect_right(self.ends, start)
        if len(self.starts) - s <= budget:
            end, used, after = len(self.text.rstrip()), len(self.starts) - s, None
        else:
            end = self._end(start, s, budget)
            used = bisect_left(self.starts, end) - s
            after = self._next_start(start, s, s + used, end)
        text = self.text[start:end]
        embed = f"{prefix}\n\n{text}" if prefix else text
        return Chunk(text, start, end, " > ".join(trail) or None, embed, 0), min(used, budget), stuck, after

    def _end(self, start: int, s: int, budget: int) -> int:
        """Where the chunk from ``start`` (token ``s``) ends: the strongest boundary in its window's last half."""
        low, high = s + (budget + 1) // 2, s + budget
        lo, hi = max(self.starts[low - 1], start), self.starts[high]
        for cut in self._candidates(lo, hi, low, high):
            end = self._trim_end(start, cut)
            if end > start and not self._in_heading(end):
                return end
        if hi <= start:  # tokens sharing one character: take that character whatever its tokens
            k = bisect_right(self.starts, start)
            hi = self.starts[k] if k < len(self.starts) else len(self.text)
        return self._trim_end(start, hi)

    def _candidates(self, lo: int, hi: int, low: int, high: int) -> Iterator[int]:
        """Cut positions in ``(lo, hi]``, strongest boundary first and the latest first within a strength."""
        yield from reversed(self.head_starts[bisect_right(self.head_starts, lo) : bisect_right(self.head_starts, hi)])
        following = _NON_WS.search(self.text, hi)
        stop = following.end() if following else len(self.text)  # the patterns read only whitespace past ``hi``
        for pattern, after in _BOUNDARIES:
            cuts = [match.end() if after else match.start() for match in pattern.finditer(self.text, lo, stop)]
            yield from reversed([cut for cut in cuts if lo < cut <= hi])
        yield from (self.starts[k] for k in range(high, low - 1, -1))

    def _trim_end(self, start: int, cut: int) -> int:
        """``cut`` moved back over whitespace, not before ``start``."""
        while cut > start and self.text[cut - 1].isspace():
            cut -= 1
        return cut

    def _in_heading(self, end: int) -> bool:
        """Whether the character before ``end`` is on a heading line."""
        j = bisect_right(self.head_starts, end - 1) - 1
        return j >= 0 and end - 1 < self.heads[j][1]

    def _next_start(self, start: int, s: int, k: int, end: int) -> int | None:
        """Where the chunk after tokens ``[s, k)`` (characters ``[start, end)``) starts; None if only space follows."""
        following = _NON_WS.search(self.text, end)
        overlap = min(self.options.overlap, (k - s) // 2)
        if following is None:
            return None
        if overlap <= 0 or following.start() in self.heading_lines:  # a new section starts without overlap
            return following.start()
        region = max(self.starts[k - overlap], start + 1)
        word = None
        for match in _WORD_START.finditer(self.text, region, end):
            if _is_sentence_start(self.text, match.start()):
                return match.start()
            word = word or match.start()
        exact = _NON_WS.search(self.text, region, end)
        return word or (exact.start() if exact else following.start())
