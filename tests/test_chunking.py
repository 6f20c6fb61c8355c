"""Token-aware chunking (jinaclip_integrations.ingest.chunking), with the tiny checkpoint's real tokenizer and with a
whitespace-word fake tokenizer for exact expectations."""

from __future__ import annotations

import re
import time
from itertools import pairwise
from pathlib import Path

import pytest
import tokenizers
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jinaclip_integrations.ingest.chunking import Chunk, ChunkOptions, chunk_text

_TOKENIZER = tokenizers.Tokenizer.from_file(
    str(Path(__file__).parent / "fixtures" / "jina-clip-v2-tiny" / "tokenizer.json")
)


def tiny_offsets(texts: list[str]) -> list[list[tuple[int, int]]]:
    return [encoding.offsets for encoding in _TOKENIZER.encode_batch(texts, add_special_tokens=False)]


def word_offsets(texts: list[str]) -> list[list[tuple[int, int]]]:
    """One token per whitespace-separated word."""
    return [[m.span() for m in re.finditer(r"\S+", text)] for text in texts]


def words(n: int, start: int = 0) -> str:
    return " ".join(f"w{i}" for i in range(start, start + n))


def heading_trail(text: str, pos: int) -> str | None:
    """The markdown heading trail in force at ``pos``, computed line by line (the reference for the chunker's)."""
    stack: list[tuple[int, str]] = []
    fence, line_start = "", 0
    for line in text.split("\n"):
        if line_start > pos:
            break
        line_start += len(line) + 1
        if marker := re.match(r" {0,3}(`{3,}|~{3,})", line):
            if not fence:
                fence = marker.group(1)
            elif marker.group(1)[0] == fence[0] and len(marker.group(1)) >= len(fence):
                fence = ""
        elif (m := re.match(r"(#{1,6}) (\S.*)", line)) and not fence:
            stack = [(level, t) for level, t in stack if level < len(m.group(1))]
            stack.append((len(m.group(1)), re.sub(r"\s+#+$", "", m.group(2).strip())))
    return " > ".join(t for _, t in stack) or None


def check_invariants(text: str, chunks: list[Chunk], offsets, options: ChunkOptions) -> None:
    """The guarantees every chunking keeps."""
    if not text.strip():
        assert chunks == []
        return
    counts = [len(spans) for spans in offsets([c.embed_text for c in chunks])]
    for chunk, count in zip(chunks, counts, strict=True):
        assert chunk.text == text[chunk.start : chunk.end]
        assert chunk.text and chunk.text == chunk.text.strip()
        assert count == chunk.tokens <= options.max_tokens
        if chunk.embed_text != chunk.text:
            assert chunk.heading is not None and chunk.embed_text.endswith("\n\n" + chunk.text)
    assert all(a.start < b.start for a, b in pairwise(chunks))
    covered = [False] * len(text)
    for chunk in chunks:
        covered[chunk.start : chunk.end] = [True] * (chunk.end - chunk.start)
    assert all(covered[i] for i, char in enumerate(text) if not char.isspace())


# ---- options


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"max_tokens": 15}, "max_tokens"),
        ({"max_tokens": 8191}, "max_tokens"),
        ({"max_tokens": True}, "max_tokens"),
        ({"max_tokens": 512.0}, "max_tokens"),
        ({"max_tokens": "512"}, "max_tokens"),
        ({"overlap": -1}, "overlap"),
        ({"max_tokens": 100, "overlap": 51}, "overlap"),
        ({"overlap": False}, "overlap"),
        ({"overlap": 1.5}, "overlap"),
    ],
)
def test_options_are_validated(kwargs, field):
    with pytest.raises(ValueError, match=rf"ChunkOptions\.{field}\b"):
        ChunkOptions(**kwargs)


@pytest.mark.parametrize(("max_tokens", "overlap"), [(16, 0), (16, 8), (8190, 4095), (512, 64)])
def test_options_limits_are_accepted(max_tokens, overlap):
    assert ChunkOptions(max_tokens, overlap) == ChunkOptions(max_tokens=max_tokens, overlap=overlap)


# ---- small texts


@pytest.mark.parametrize("text", ["", "   ", "\n\n\t \n", "\u3000\u2028"])
def test_blank_text_gives_no_chunks(text):
    assert chunk_text(text, word_offsets) == []
    assert chunk_text(text, tiny_offsets, markdown=True) == []


def test_text_that_fits_is_one_trimmed_chunk():
    text = "\n  Hello world. Second sentence.\n\n"
    for offsets in (word_offsets, tiny_offsets):
        [chunk] = chunk_text(text, offsets)
        assert (chunk.start, chunk.end, chunk.text) == (3, 32, "Hello world. Second sentence.")
        assert chunk.heading is None and chunk.embed_text == chunk.text
        assert chunk.tokens == len(offsets([chunk.text])[0])


def test_default_options():
    assert ChunkOptions() == ChunkOptions(max_tokens=512, overlap=64)
    text = words(600)
    chunks = chunk_text(text, word_offsets)
    check_invariants(text, chunks, word_offsets, ChunkOptions())
    assert [c.tokens for c in chunks] == [512, 152]


# ---- boundaries


def test_paragraphs_split_at_paragraph_breaks():
    paragraphs = [f"Para {i}. " + words(28, 100 * i) for i in range(10)]  # 30 words each
    text = "\n\n".join(paragraphs)
    chunks = chunk_text(text, word_offsets, ChunkOptions(max_tokens=100, overlap=0))
    assert [c.text for c in chunks] == ["\n\n".join(paragraphs[i : i + 3]) for i in range(0, 10, 3)]


def test_long_paragraph_splits_at_sentence_ends():
    sentences = [f"S{i} " + words(9, 10 * i) + "." for i in range(25)]  # 10 words each
    text = "Intro paragraph.\n\n" + " ".join(sentences)
    chunks = chunk_text(text, word_offsets, ChunkOptions(max_tokens=64, overlap=0))
    check_invariants(text, chunks, word_offsets, ChunkOptions(max_tokens=64, overlap=0))
    assert chunks[0].text == "Intro paragraph.\n\n" + " ".join(sentences[:6])
    assert [c.text for c in chunks[1:]] == [" ".join(sentences[i : i + 6]) for i in range(6, 25, 6)]


@pytest.mark.parametrize(
    ("middle", "first_ends_with"),
    [
        ("line one.\nline two end. more words", "line one."),  # a line break beats a later sentence end
        ("alpha beta! gamma delta epsilon", "beta!"),  # a sentence end beats later word boundaries
        ("alpha 一二。三四 delta epsilon", "一二。"),  # CJK sentence ends need no space
        ("alpha…beta gamma… delta epsilon", "gamma…"),  # "…" then whitespace ends a sentence
        ("alpha beta gamma delta epsilon", "w102"),  # else the latest word boundary: a full chunk
    ],
)
def test_boundary_strength(middle, first_ends_with):
    text = words(8) + " " + middle + " " + words(40, 100)
    options = ChunkOptions(max_tokens=16, overlap=0)
    first = chunk_text(text, word_offsets, options)[0]
    assert first.text.endswith(first_ends_with)


def test_boundaries_only_in_the_last_half_of_the_window():
    text = "A short one.\n\n" + words(60)  # the paragraph break is in the first half of a 32-token window
    first = chunk_text(text, word_offsets, ChunkOptions(max_tokens=32, overlap=0))[0]
    assert first.tokens == 32


def test_word_longer_than_a_chunk_is_cut_at_token_boundaries():
    text = "start " + "x" * 500 + "y" + " end"
    options = ChunkOptions(max_tokens=40, overlap=8)
    chunks = chunk_text(text, tiny_offsets, options)
    check_invariants(text, chunks, tiny_offsets, options)
    assert len(chunks) > 5 and chunks[-1].text.endswith("y end")


@pytest.mark.parametrize(
    "text",
    [
        "\n# Title\nﷺ",  # one character that is 15 tokens, after a trail: embedded without the trail
        "ﷺ" * 6,
        "a" + " " * 50_000 + "b",
        "#" * 3000,
        "\n".join(["# A", "## B", "### C", "#### D"] * 20),  # nothing but headings
    ],
)
def test_edge_texts(text):
    options = ChunkOptions(max_tokens=16, overlap=8)
    chunks = chunk_text(text, tiny_offsets, options, markdown=True)
    check_invariants(text, chunks, tiny_offsets, options)


def test_tokens_straddling_a_paragraph_break():
    """The tiny tokenizer makes one token of "\\n\\nN": the break counts at the token's start."""
    text = "First paragraph here.\n\nNext one starts here and goes on for a while with more words."
    assert "\n\nN" in [text[a:b] for a, b in tiny_offsets([text])[0]]
    options = ChunkOptions(max_tokens=30, overlap=0)
    chunks = chunk_text(text, tiny_offsets, options)
    check_invariants(text, chunks, tiny_offsets, options)
    assert chunks[0].text == "First paragraph here."


def test_twenty_thousand_words():
    sentences = [
        f"Sentence {i} says " + " ".join(f"word{j}" for j in range(i % 7, i % 7 + 7)) + "." for i in range(2222)
    ]
    paragraphs = [" ".join(sentences[i : i + 2]) for i in range(0, len(sentences), 2)]
    last = "The unique final sentence ends everything."
    text = "\n\n".join(paragraphs) + "\n\n" + last
    assert len(text.split()) >= 20_000
    options = ChunkOptions()
    tokens = len(tiny_offsets([text])[0])
    began = time.perf_counter()
    chunks = chunk_text(text, tiny_offsets, options)
    elapsed = time.perf_counter() - began
    print(f"{len(text.split())} words, {tokens} tokens -> {len(chunks)} chunks in {elapsed:.3f} s")
    check_invariants(text, chunks, tiny_offsets, options)
    assert chunks[-1].text.endswith(last)
    expected = tokens / (options.max_tokens - options.overlap)
    assert expected <= len(chunks) <= 1.5 * expected  # paragraphs are kept whole: chunks are ~80% full
    assert sum(c.tokens for c in chunks) / len(chunks) >= 0.75 * options.max_tokens
    assert all(c.text.endswith(".") for c in chunks)


# ---- overlap


def test_overlap_starts_at_a_sentence_in_the_previous_chunk():
    sentences = [f"S{i} " + words(4, 10 * i) + "." for i in range(40)]  # 5 words each
    text = " ".join(sentences)
    options = ChunkOptions(max_tokens=40, overlap=12)
    chunks = chunk_text(text, word_offsets, options)
    check_invariants(text, chunks, word_offsets, options)
    for previous, chunk in pairwise(chunks):
        assert previous.start < chunk.start < previous.end
        assert previous.text.endswith(text[chunk.start : previous.end])
        assert chunk.text.startswith("S") and text[chunk.start - 2 : chunk.start] == ". "
        assert len(text[chunk.start : previous.end].split()) == 10  # 12 tokens back, moved forward to a sentence


def test_overlap_without_sentences_starts_at_a_word():
    text = words(200)
    options = ChunkOptions(max_tokens=50, overlap=10)
    chunks = chunk_text(text, word_offsets, options)
    check_invariants(text, chunks, word_offsets, options)
    assert [c.tokens for c in chunks] == [50, 50, 50, 50, 40]
    for previous, chunk in pairwise(chunks):
        assert len(text[chunk.start : previous.end].split()) == 10


def test_overlap_on_the_real_tokenizer_keeps_word_starts():
    text = " ".join(f"token{i}" for i in range(400))
    options = ChunkOptions(max_tokens=64, overlap=16)
    chunks = chunk_text(text, tiny_offsets, options)
    check_invariants(text, chunks, tiny_offsets, options)
    for previous, chunk in pairwise(chunks):
        assert previous.start < chunk.start < previous.end and text[chunk.start - 1] == " "


def test_no_overlap_starts_after_the_previous_chunk():
    text = words(300)
    chunks = chunk_text(text, word_offsets, ChunkOptions(max_tokens=50, overlap=0))
    assert " ".join(c.text for c in chunks) == text


# ---- markdown

GUIDE = "\n".join(
    [
        "# Guide",
        "",
        "Intro " + words(14) + ".",
        "",
        "## Install",
        "",
        " ".join(f"Install {i} " + words(3, 10 * i) + "." for i in range(12)),
        "",
        "### Linux",
        "",
        " ".join(f"Linux {i} " + words(3, 10 * i) + "." for i in range(12)),
        "",
        "## Usage",
        "",
        "Use " + words(6) + ".",
    ]
)


def test_markdown_heading_trails():
    """Sections end in the last half of the 24-token windows, so every heading starts a chunk."""
    options = ChunkOptions(max_tokens=24, overlap=0)
    chunks = chunk_text(GUIDE, word_offsets, options, markdown=True)
    check_invariants(GUIDE, chunks, word_offsets, options)
    for chunk in chunks:
        assert chunk.heading == heading_trail(GUIDE, chunk.start)
        if chunk.text.startswith("#"):
            assert chunk.embed_text == chunk.text
        else:
            assert chunk.embed_text == f"{chunk.heading}\n\n{chunk.text}"
        assert not re.search(r"(^|\n)#+ [^\n]*$", chunk.text) or chunk is chunks[-1]
    starts = {c.text.split("\n")[0]: c for c in chunks if c.text.startswith("#")}
    assert starts["## Install"].heading == "Guide > Install"
    assert starts["### Linux"].heading == "Guide > Install > Linux"
    assert starts["## Usage"].heading == "Guide > Usage"  # level-aware: replaces Install and Linux
    continuation = next(c for c in chunks if c.heading == "Guide > Install > Linux" and not c.text.startswith("#"))
    assert continuation.embed_text.startswith("Guide > Install > Linux\n\nLinux")
    assert continuation.tokens == len(continuation.text.split()) + 5  # the trail's 5 tokens are in the budget
    assert chunks[0].text.startswith("# Guide") and chunks[0].heading == "Guide"


def test_heading_goes_with_its_section():
    text = words(20) + "\n\n# Title\n\n" + words(30, 100)
    options = ChunkOptions(max_tokens=24, overlap=6)
    chunks = chunk_text(text, word_offsets, options, markdown=True)
    check_invariants(text, chunks, word_offsets, options)
    assert chunks[0].text == words(20)
    assert chunks[1].text.startswith("# Title\n\n") and chunks[1].embed_text == chunks[1].text  # no overlap before it


def test_consecutive_headings_stay_together():
    text = words(14) + "\n# A\n## B\n" + words(30, 100)
    chunks = chunk_text(text, word_offsets, ChunkOptions(max_tokens=20, overlap=0), markdown=True)
    assert chunks[0].text == words(14) and chunks[1].text.startswith("# A\n## B\n")


def test_headings_need_markdown_and_a_space():
    text = "# Title\n\n" + words(40) + "\n#hashtag " + words(40, 100)
    for markdown in (False, True):
        chunks = chunk_text(text, word_offsets, ChunkOptions(max_tokens=32, overlap=0), markdown=markdown)
        assert {c.heading for c in chunks} == ({"Title"} if markdown else {None})


def test_fenced_code_has_no_headings():
    code = "\n".join(
        ["```python", "# not a heading", "x = 1", "## nor this", *[f"y{i} = {i}" for i in range(30)], "```"]
    )
    text = "# Real\n\n" + code + "\n\nAfter the code " + words(20)
    options = ChunkOptions(max_tokens=24, overlap=4)
    chunks = chunk_text(text, word_offsets, options, markdown=True)
    check_invariants(text, chunks, word_offsets, options)
    assert {c.heading for c in chunks} == {"Real"}
    assert all(c.embed_text.startswith("Real\n\n") for c in chunks[1:])


def test_closing_hashes_are_dropped():
    [chunk] = chunk_text("## Setup ##\n\ntext", word_offsets, markdown=True)
    assert chunk.heading == "Setup"


def test_long_trails_are_cut_to_fit_a_quarter():
    first = "# " + words(10)
    second = "## " + words(10, 50)
    text = f"{first}\n\n{second}\n\n" + words(100, 100)
    options = ChunkOptions(max_tokens=64, overlap=0)  # a trail may take 16 tokens: the full one has 21
    chunks = chunk_text(text, word_offsets, options, markdown=True)
    check_invariants(text, chunks, word_offsets, options)
    assert chunks[1].heading == f"{words(10)} > {words(10, 50)}"
    assert chunks[1].embed_text.startswith(words(10, 50) + "\n\nw")

    text = "# " + words(30) + "\n\n" + words(100, 100)  # one heading of 30 tokens: its first 16 are kept
    chunks = chunk_text(text, word_offsets, options, markdown=True)
    check_invariants(text, chunks, word_offsets, options)
    assert chunks[1].embed_text.startswith(words(16) + "\n\nw")


# ---- properties

_WORDS = st.sampled_from(["a", "to", "the", "Word", "install", "Linux", "chunking", "x", "embeddings", "RAG"])
_PIECES = st.one_of(
    st.sampled_from(["\n", "\n\n", " ", "  ", "\t", ". ", "! ", "? ", "… ", "。", "！", "？", "\r\n", "\u3000"]),
    st.sampled_from(["# Title", "## Section two", "### Deep", "#### x #", "```", "```py", "#tag", "####### seven"]).map(
        lambda h: f"\n{h}\n"
    ),
    st.sampled_from(
        ["日本語のテキストです", "中文文本测试", "😀🎉👩‍👩‍👧", "ﷺ", "x" * 80, "https://example.com/a/b?c=d"]
    ),
    _WORDS,
    st.text(max_size=12),
)
_TEXTS = st.lists(_PIECES, max_size=120).map("".join)
_OPTIONS = st.integers(16, 80).flatmap(
    lambda m: st.builds(ChunkOptions, max_tokens=st.just(m), overlap=st.integers(0, m // 2))
)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=_TEXTS, options=_OPTIONS, markdown=st.booleans())
def test_properties_with_the_real_tokenizer(text, options, markdown):
    chunks = chunk_text(text, tiny_offsets, options, markdown=markdown)
    check_invariants(text, chunks, tiny_offsets, options)
    if markdown:
        assert all(c.heading == heading_trail(text, c.start) for c in chunks)
    else:
        assert all(c.heading is None and c.embed_text == c.text for c in chunks)


_BLOCK = st.tuples(
    st.none() | st.tuples(st.integers(1, 6), st.lists(_WORDS, min_size=1, max_size=3)),
    st.lists(st.tuples(_WORDS, st.sampled_from(["", "", ".", "!", "?"])).map("".join), min_size=1, max_size=40),
    st.sampled_from([" ", "\n", "\n\n"]),
)


def _markdown(blocks) -> str:
    parts = []
    for heading, body, separator in blocks:
        if heading:
            parts.append("#" * heading[0] + " " + " ".join(heading[1]) + "\n")
        parts.append(separator.join(body) + "\n\n")
    return "".join(parts)


@settings(max_examples=200, deadline=None)
@given(text=st.lists(_BLOCK, max_size=12).map(_markdown), options=_OPTIONS)
def test_markdown_properties_with_word_tokens(text, options):
    chunks = chunk_text(text, word_offsets, options, markdown=True)
    check_invariants(text, chunks, word_offsets, options)
    for chunk in chunks:
        assert chunk.heading == heading_trail(text, chunk.start)
        at_heading = chunk.start == 0 or text[chunk.start - 1] == "\n" and chunk.text.startswith("#")
        assert (chunk.embed_text == chunk.text) == (chunk.heading is None or at_heading)
    for chunk in chunks[:-1]:  # a heading line never ends a chunk that text follows
        assert not re.fullmatch(r"#{1,6} \S.*", chunk.text.rsplit("\n", 1)[-1])
