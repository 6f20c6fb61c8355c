"""Properties of the engine over any text and image input (hypothesis).

Whatever a caller passes, the engine gives finite float32 unit vectors of the right shape, or an
InputError naming the item; never another exception. A vector does not depend on the batch
around it (atol 1e-5: the same float32 model run on other batch shapes), and lossless
re-encoding does not change it (atol 1e-6: the same pixels).
"""

from __future__ import annotations

import io
import operator

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

from conftest import V2_TINY, load_engine
from jinaclip_integrations import InputError

#: loaded once at import: hypothesis runs the test body many times, fixtures once
ENGINE = load_engine(V2_TINY)
DIM = ENGINE.embedding_dim
BATCH = dict(atol=1e-5, rtol=0)

# -- strategies ---------------------------------------------------------------------------------

#: any code point but surrogates: control characters, combining marks, RTL, emoji...
_any_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=60)
_long_text = st.builds(operator.mul, st.text(min_size=1, max_size=8), st.integers(100, 2000))
_odd_text = st.sampled_from(
    [
        "",
        " ",
        "\n\t\r",
        "\x00\x1b[31m",
        "\ufeff",
        "\u202eשלום עולם",
        "👩\u200d👩\u200d👧\u200d👦" * 100,
        "e\u0301" * 300,
    ]
)
_with_surrogate = st.builds(
    lambda text, at, surrogate: text[:at] + surrogate + text[at:],
    _any_text,
    st.integers(0, 60),
    st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF),
)
valid_texts = st.one_of(_any_text, _long_text, _odd_text)
any_texts = st.one_of(valid_texts, _with_surrogate)

_side = st.integers(1, 64)
_shapes = st.one_of(st.tuples(_side, _side), st.tuples(_side, _side, st.sampled_from([1, 3, 4])))
valid_arrays = _shapes.flatmap(lambda shape: hnp.arrays(np.uint8, shape))

_bad_dtypes = st.sampled_from(
    [np.int8, np.uint16, np.int32, np.int64, np.float16, np.float32, np.float64, np.bool_, np.complex64, object]
)
_bad_shapes = st.one_of(
    st.tuples(),
    st.tuples(_side),
    st.tuples(_side, _side, st.sampled_from([0, 2, 5, 6])),
    st.tuples(_side, _side, st.sampled_from([1, 3, 4]), st.integers(1, 3)),
    st.tuples(st.just(0), st.integers(0, 4)),
    st.tuples(st.integers(1, 4), st.just(0), st.sampled_from([1, 3, 4])),
)
invalid_arrays = st.one_of(
    st.builds(np.zeros, _shapes, _bad_dtypes),
    st.builds(np.zeros, _bad_shapes, st.just(np.uint8)),
)


def _expected_surrogate_error(texts: list[str]) -> int | None:
    """Index of the first text that is not valid Unicode (holds a lone surrogate), if any."""
    for i, text in enumerate(texts):
        if any(0xD800 <= ord(c) <= 0xDFFF for c in text):
            return i
    return None


def assert_unit_vectors(out: np.ndarray, n: int, dim: int = DIM) -> None:
    assert out.shape == (n, dim) and out.dtype == np.float32
    assert np.isfinite(out).all()
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1, atol=1e-5)


# -- texts --------------------------------------------------------------------------------------


@settings(max_examples=80, deadline=None)
@given(texts=st.lists(any_texts, max_size=6), truncate_dim=st.sampled_from([None, 8, 32]))
def test_any_texts_give_unit_vectors_or_name_the_bad_one(texts, truncate_dim):
    bad = _expected_surrogate_error(texts)
    if bad is None:
        assert_unit_vectors(ENGINE.encode_text(texts, truncate_dim=truncate_dim), len(texts), truncate_dim or DIM)
        return
    with pytest.raises(InputError) as info:
        ENGINE.encode_text(texts, truncate_dim=truncate_dim)
    assert (info.value.index, info.value.kind) == (bad, "text")
    assert "not valid Unicode text" in info.value.reason


@settings(max_examples=50, deadline=None)
@given(
    text=valid_texts,
    others=st.lists(valid_texts, max_size=6),
    at=st.integers(0, 6),
    batch_size=st.integers(1, 8),
)
def test_a_text_embeds_the_same_alone_and_in_any_batch(text, others, at, batch_size):
    at = min(at, len(others))
    batch = [*others[:at], text, *others[at:]]
    alone = ENGINE.encode_text([text])[0]
    np.testing.assert_allclose(ENGINE.encode_text(batch, batch_size=batch_size)[at], alone, **BATCH)


# -- images -------------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(array=valid_arrays)
def test_any_uint8_array_gives_a_unit_vector_and_png_keeps_it(array):
    """(H, W), (H, W, 1), (H, W, 3) and (H, W, 4), any size from 1 x 1; the same image as PNG
    (L, L, RGB, RGBA) embeds identically."""
    out = ENGINE.encode_image([array])
    assert_unit_vectors(out, 1)
    png = io.BytesIO()
    Image.fromarray(array[:, :, 0] if array.ndim == 3 and array.shape[2] == 1 else array).save(png, "PNG")
    np.testing.assert_allclose(ENGINE.encode_image([png.getvalue()]), out, atol=1e-6, rtol=0)


@settings(max_examples=30, deadline=None)
@given(image=valid_arrays, others=st.lists(valid_arrays, max_size=5), at=st.integers(0, 5), batch_size=st.integers(1, 4))  # fmt: skip
def test_an_image_embeds_the_same_alone_and_in_any_batch(image, others, at, batch_size):
    at = min(at, len(others))
    batch = [*others[:at], image, *others[at:]]
    alone = ENGINE.encode_image([image])[0]
    np.testing.assert_allclose(ENGINE.encode_image(batch, batch_size=batch_size)[at], alone, **BATCH)


@settings(max_examples=100, deadline=None)
@given(bad=invalid_arrays, at=st.integers(0, 2))
def test_invalid_arrays_are_input_errors_naming_them(bad, at):
    items: list = [np.zeros((4, 4, 3), np.uint8)] * 2
    items.insert(at, bad)
    with pytest.raises(InputError) as info:
        ENGINE.encode_image(items)
    assert (info.value.index, info.value.kind) == (at, "image")
    assert "numpy image" in info.value.reason


def _decodes_or_is_an_input_error(item: object) -> None:
    """The item embeds to a unit vector (random data can be a valid image in a lenient format)
    or is an InputError at its index; anything else fails the test."""
    try:
        out = ENGINE.encode_image([np.zeros((2, 2), np.uint8), item])
    except InputError as exc:
        assert (exc.index, exc.kind) == (1, "image")
    else:
        assert_unit_vectors(out, 2)


_prefixes = st.sampled_from([b"", b"GIF89a", b"RIFF\x00\x01\x00\x00WEBPVP8 ", b"BM", b"II*\x00", b"\x00\x00\x00\x18ftypheic"])  # fmt: skip


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")  # PIL's, about random TIFF tags
@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=300), prefix=_prefixes)
def test_random_bytes_never_raise_anything_but_an_input_error(data, prefix):
    _decodes_or_is_an_input_error(prefix + data)


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=300), prefix=st.sampled_from([b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff"]))
def test_random_bytes_after_png_or_jpeg_magic_are_input_errors(data, prefix):
    """A PNG needs chunks with valid CRCs, a JPEG a whole scan: random bytes never make one."""
    with pytest.raises(InputError) as info:
        ENGINE.encode_image([prefix + data])
    assert info.value.index == 0
    assert "cannot decode image (bytes)" in info.value.reason


@settings(max_examples=200, deadline=None)
@given(text=st.text(st.characters(exclude_categories=()), max_size=80))
def test_random_strings_as_images_never_raise_anything_but_an_input_error(text):
    """Strings are read as paths, URLs, data URIs or base64, in that order; none of it may fail
    with another exception (a NUL, a surrogate, a very long name...)."""
    if text.startswith(("http://", "https://")):  # would go to the network
        return
    _decodes_or_is_an_input_error(text)
