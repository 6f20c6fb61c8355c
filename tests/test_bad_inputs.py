"""The bad-input matrix: odd and broken texts and images, what each gives, and skip mode.

Vectors are compared at atol 1e-5 (the same float32 model run on other batches), decoded pixels
exactly. Decoding of valid-but-unusual images (EXIF, animations, modes, formats) is in
test_images.py; redirects to private addresses are the server's business (test_server.py).
"""

from __future__ import annotations

import base64
import http.server
import io
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageFile
from test_images import _png_claiming, serve_http

from conftest import V2_TINY
from jinaclip_integrations import InputError, JinaCLIPEngine
from jinaclip_integrations.engine import inputs
from jinaclip_integrations.ingest import items as ingest_items
from jinaclip_integrations.ingest.chunking import ChunkOptions
from jinaclip_integrations.ingest.files import file_items, read_source
from jinaclip_integrations.ingest.items import IngestReport, embed_items, iter_image_items, text_items
from jinaclip_integrations.qdrant import QdrantVectorizer

GRADIENT = V2_TINY / "rgb_gradient_64x48.png"
EMB = dict(atol=1e-5, rtol=0)


def assert_unit_vectors(out: np.ndarray, n: int, dim: int = 64) -> None:
    assert out.shape == (n, dim) and out.dtype == np.float32
    assert np.isfinite(out).all()
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1, atol=1e-5)


# -- texts --------------------------------------------------------------------------------------


BLANK_TEXTS = ["", " ", "  \n\t ", "\u200b", "\x00"]


def test_empty_and_whitespace_texts_embed_as_the_reference_does(engine):
    """Nothing is stripped or refused: an empty text is just <s> </s>, whitespace keeps its
    tokens; each gives a unit vector, the same alone as beside a long padded neighbour."""
    assert engine.tokenizer.encode(["", " "], engine.max_length) == [[0, 2], [0, 4, 2]]
    alone = np.concatenate([engine.encode_text([text]) for text in BLANK_TEXTS])
    assert_unit_vectors(alone, len(BLANK_TEXTS))
    padded = engine.encode_text(BLANK_TEXTS + ["a long neighbour " * 40], batch_size=len(BLANK_TEXTS) + 1)
    np.testing.assert_allclose(padded[: len(BLANK_TEXTS)], alone, **EMB)
    assert not np.allclose(alone[0], alone[1], atol=1e-3)  # " " is not read as ""
    assert_unit_vectors(engine.encode_text([""], task="retrieval.query"), 1)


def test_text_over_max_length_is_truncated_to_its_first_tokens(engine):
    """Truncated to ``max_length`` tokens (</s> kept): the same vector as the text cut after its
    first ``max_length - 2`` tokens (found with the tokenizer's own offsets), whatever follows;
    a 200k-character text is fine too."""
    from tokenizers import Tokenizer

    text = " ".join(f"word{i}" for i in range(3000))
    ids = engine.tokenizer.encode([text], engine.max_length)[0]
    assert len(ids) == engine.max_length == 512 and ids[-1] == 2
    offsets = Tokenizer.from_file(str(V2_TINY / "tokenizer.json")).encode(text).offsets
    head, shorter = text[: offsets[engine.max_length - 2][1]], text[: offsets[engine.max_length - 3][1]]
    assert engine.tokenizer.encode([head], 10**6)[0] == ids  # the cut text is not truncated
    out = engine.encode_text([text, head, text + " but a different ending", text * 8])
    assert_unit_vectors(out, 4)
    for row in out[1:]:
        np.testing.assert_allclose(row, out[0], **EMB)
    assert not np.allclose(engine.encode_text([shorter])[0], out[0], atol=1e-4)  # one token matters


@pytest.mark.parametrize(
    "bad, kind",
    [({"text": "a"}, "dict"), (3.5, "float"), (bytearray(b"x"), "bytearray"), (Path("a.txt"), "PosixPath")],
)
def test_non_string_text_is_an_input_error_naming_it(engine, bad, kind):
    """Beyond test_engine_api's int/None/bytes/list; and the ingest path says the same."""
    for call in (engine.encode_text, text_items):
        with pytest.raises(InputError) as info:
            call(["fine", "also fine", bad])
        assert (info.value.index, info.value.kind) == (2, "text")
        assert info.value.reason == f"expected a string, got {kind}"


def test_lone_surrogate_in_ingest_is_an_input_error():
    with pytest.raises(InputError, match=r"invalid text at index 1: .*lone surrogate at character 3"):
        text_items(["ok", "bad\udc80"])


@pytest.mark.parametrize(
    "data, byte",
    [
        ("café".encode("latin-1"), 3),
        ("truncated €".encode()[:-1], 10),
        ("utf-16".encode("utf-16"), 0),
    ],
)
def test_text_file_that_is_not_utf8_is_an_input_error_naming_it(tmp_path, engine, data, byte):
    path = tmp_path / "notes.txt"
    path.write_bytes(data)
    with pytest.raises(InputError) as info:
        read_items(engine, path, 7)
    assert (info.value.index, info.value.kind) == (7, "file")
    assert info.value.reason == f"{path}: not UTF-8 text (byte {byte})"


def test_utf8_text_file_with_bom_is_read_without_it(tmp_path, engine):
    path = tmp_path / "bom.txt"
    path.write_bytes("\ufeffhello".encode())
    assert [item.content for item in read_items(engine, path, 0)] == ["hello"]


def read_items(engine, path, index: int) -> list:
    """A file's items as the ingest path reads them."""
    with open(path, "rb") as f:
        data = read_source(f.read, str(path), index)
    return file_items(str(path), data, offsets=engine.token_offsets, options=ChunkOptions(), size=len(data), mtime_ns=0, index=index)[1]  # fmt: skip


# -- images: a local web site -------------------------------------------------------------------

SLOW_S = 1.5  # how long /slow.png waits before answering
TIMEOUT_S = 0.5  # the engine's URL timeout in these tests


class _Site(http.server.BaseHTTPRequestHandler):
    """/image.png, /binary (octet-stream), /page.html, /notes.txt, /to-page (302 to the page),
    /slow.png (answers after SLOW_S)."""

    ROUTES = {
        "/image.png": ("image/png", GRADIENT.read_bytes()),
        "/binary": ("application/octet-stream", GRADIENT.read_bytes()),
        "/slow.png": ("image/png", GRADIENT.read_bytes()),
        "/page.html": ("text/html; charset=utf-8", b"<!doctype html><title>Not found</title>"),
        "/notes.txt": ("text/plain", b"not an image"),
    }

    def do_GET(self) -> None:
        if self.path == "/slow.png":
            time.sleep(SLOW_S)
        try:
            if self.path == "/to-page":
                self.send_response(302)
                self.send_header("Location", "/page.html")
                self.end_headers()
                return
            content_type, body = self.ROUTES[self.path]
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except OSError:  # the client gave up waiting (the timeout test)
            pass

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def site() -> Iterator[str]:
    with serve_http(_Site) as url:
        yield url


@pytest.fixture(autouse=True)
def short_url_timeout(monkeypatch) -> None:
    monkeypatch.setattr(inputs, "URL_TIMEOUT_S", TIMEOUT_S)


@pytest.mark.parametrize("path", ["/image.png", "/binary"])
def test_image_urls_still_embed(engine, site, path):
    np.testing.assert_allclose(engine.encode_image([site + path]), engine.encode_image([GRADIENT]), **EMB)


@pytest.mark.parametrize(
    "path, reason",
    [
        ("/page.html", "{url} returned text/html, not an image"),
        ("/notes.txt", "{url} returned text/plain, not an image"),
        ("/to-page", "{url} returned text/html, not an image"),  # the redirect is followed, then refused
        ("/slow.png", "{url} timed out after 0.5 s"),
    ],
)
def test_url_answering_html_or_too_slowly_is_an_input_error(engine, site, path, reason):
    url = site + path
    with pytest.raises(InputError) as info:  # "timed out after 0.5 s": it did not wait for the slow answer
        engine.encode_image([GRADIENT, url])
    assert (info.value.index, info.value.reason) == (1, reason.format(url=url))


# -- images: data URIs ----------------------------------------------------------------------------

PNG_B64 = base64.b64encode(GRADIENT.read_bytes()).decode()


@pytest.mark.parametrize(
    "header",
    [
        "data:image/png;base64",
        "data:IMAGE/JPEG;base64",
        "data:;base64",
        "data:application/octet-stream;base64",
        "data:image/png;name=x.png;base64",
    ],  # fmt: skip
)
def test_data_uri_with_an_image_type_is_decoded_by_content(engine, header):
    """A declared JPEG holding a PNG is read as the PNG it is."""
    out = engine.encode_image([f"{header},{PNG_B64}"])
    np.testing.assert_allclose(out, engine.encode_image([GRADIENT]), **EMB)


@pytest.mark.parametrize("mime", ["text/html", "application/json", "text/plain"])
def test_data_uri_with_another_type_is_refused(engine, mime):
    with pytest.raises(InputError) as info:
        engine.encode_image([GRADIENT, f"data:{mime.upper()};charset=utf-8;base64,{PNG_B64}"])
    assert (info.value.index, info.value.reason) == (1, f"data URI has MIME type {mime!r}, not an image type")


# -- images: sizes ------------------------------------------------------------------------------


def _encode(img: Image.Image, fmt: str, **kwargs: Any) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kwargs)
    return buf.getvalue()


@pytest.mark.parametrize("fmt", ["PNG", "GIF", "BMP", "TIFF", "WEBP"])
def test_1x1_image_embeds_like_the_pixel_it_holds(engine, fmt):
    """Upscaled to the model's size like any other; lossless formats give the exact pixel."""
    pixel = Image.new("RGB", (1, 1), (0, 0, 255))
    data = _encode(pixel, fmt, **({"lossless": True} if fmt == "WEBP" else {}))
    out = engine.encode_image([data])
    assert_unit_vectors(out, 1)
    np.testing.assert_allclose(out, engine.encode_image([np.array([[[0, 0, 255]]], np.uint8)]), **EMB)


@pytest.mark.parametrize("fmt", ["PNG", "GIF", "BMP", "TIFF", "WEBP", "JPEG"])
def test_image_over_the_pixel_limit_is_refused_before_decoding(engine, monkeypatch, fmt):
    """Real, cheaply compressed 2000 x 1500 images against a 1-megapixel limit: refused from the
    header alone (decoding would fail the test)."""
    data = _encode(Image.new("L", (2000, 1500), 200), fmt)
    strict = JinaCLIPEngine(engine.model, engine.tokenizer, max_image_pixels=1_000_000)
    with pytest.raises(InputError, match=r"index 0: image has 2000x1500 = 3000000 pixels, more than the limit"):
        strict.encode_image([data])

    def no_decoding(self: Image.Image) -> None:
        pytest.fail("the image was decoded")

    monkeypatch.setattr(Image.Image, "load", no_decoding)
    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    with pytest.raises(InputError, match="more than the limit"):
        inputs.load_image(data, 0, 1_000_000)


# -- images: the matrix, failing loudly or skipped --------------------------------------------------

_NOISE = np.random.default_rng(11).integers(0, 256, 4096, dtype=np.uint8).tobytes()
_JPEG = _encode(Image.open(GRADIENT).convert("RGB"), "JPEG")
_PNG = GRADIENT.read_bytes()
_EPS = _encode(Image.open(GRADIENT).convert("RGB"), "EPS")  # PIL would hand it to Ghostscript

#: bad image -> (a function of the test's folder and site URL giving the item, the engine's reason)
BAD_IMAGES: dict[str, tuple[Callable[[Path, str], Any], str]] = {
    "corrupt": (lambda tmp, site: _NOISE, "cannot decode image (bytes)"),
    "corrupt-with-png-magic": (lambda tmp, site: _PNG[:8] + _NOISE, "cannot decode image (bytes)"),
    "corrupt-heic": (lambda tmp, site: b"\x00\x00\x00\x18ftypheic" + _NOISE, "cannot decode image (bytes)"),
    "truncated-png": (lambda tmp, site: _PNG[: len(_PNG) // 2], "cannot decode image (bytes)"),
    "truncated-jpeg": (lambda tmp, site: _JPEG[: len(_JPEG) // 2], "cannot decode image (bytes)"),
    "zero-width-png": (lambda tmp, site: _png_claiming(0, 5), "cannot decode image (bytes)"),
    "eps": (lambda tmp, site: _EPS, "image format EPS is not accepted (bytes)"),
    "eps-file": (lambda tmp, site: _file(tmp, "photo.jpg", _EPS), "image format EPS is not accepted ("),
    "zero-sized-pil": (lambda tmp, site: Image.new("RGB", (7, 0)), "image is empty (7x0)"),
    "zero-sized-array": (lambda tmp, site: np.zeros((5, 0, 3), np.uint8), "numpy image is empty"),
    "bomb": (lambda tmp, site: _png_claiming(60_000, 60_000), "decompression bomb refused"),
    "over-the-limit": (lambda tmp, site: _png_claiming(10_000, 9_000), "more than the limit of 89478485"),
    "empty-file": (lambda tmp, site: _file(tmp, "empty.png", b""), "no image data in"),
    "missing-file": (lambda tmp, site: tmp / "missing.png", "file not found"),
    "wrong-base64": (lambda tmp, site: "data:image/png;base64,iVBORw0KGgo*&^%", "data URI is not valid base64"),
    "html-data-uri": (lambda tmp, site: "data:text/html;base64,PGgxPmhpPC9oMT4=", "MIME type 'text/html'"),
    "html-url": (lambda tmp, site: f"{site}/page.html", "returned text/html, not an image"),
    "slow-url": (lambda tmp, site: f"{site}/slow.png", "timed out after 0.5 s"),
    "float-array": (lambda tmp, site: np.zeros((8, 8, 3), np.float32), "must be uint8, got float32"),
    "not-an-image": (lambda tmp, site: {"image": "cat.jpg"}, "unsupported image type dict"),
}


def _file(folder: Path, name: str, data: bytes) -> Path:
    path = folder / name
    path.write_bytes(data)
    return path


def _good_images() -> list[Any]:
    """Three different good images of three kinds."""
    return [GRADIENT, Image.open(V2_TINY / "rgba_80x80.png"), np.asarray(Image.open(V2_TINY / "rgb_tall_30x90.png"))]


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
@pytest.mark.parametrize("case", list(BAD_IMAGES))
def test_bad_image_is_an_input_error_naming_it(engine, tmp_path, site, case):
    make, reason = BAD_IMAGES[case]
    with pytest.raises(InputError) as info:
        engine.encode_image([*_good_images()[:2], make(tmp_path, site), _good_images()[2]], batch_size=2)
    assert (info.value.index, info.value.kind) == (2, "image")
    assert reason in info.value.reason


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
@pytest.mark.parametrize("case", list(BAD_IMAGES))
def test_skip_mode_keeps_every_good_image(engine, tmp_path, site, case):
    """Through the ingest path (reading, then embedding): the good ones embed as they do alone,
    in order; the bad one is listed with its index (or its path) and a reason."""
    bad = BAD_IMAGES[case][0](tmp_path, site)
    goods = _good_images()
    report = IngestReport()
    items = list(iter_image_items([goods[0], goods[1], bad, goods[2]], None, report, "skip"))
    kept, vectors = embed_items(engine, items, on_error="skip", report=report)
    assert [item.index for item in kept] == [0, 1, 3]
    np.testing.assert_allclose(vectors, engine.encode_image(goods), **EMB)
    assert len(report.failed) == 1
    assert report.failed[0].source in ("image 2", str(bad)) and report.failed[0].reason


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_vectorizer_skipping_the_whole_matrix_stores_the_good_ones(engine, tmp_path, site):
    """Every bad image at once, between good ones, into an embedded Qdrant store."""
    bads = [make(tmp_path, site) for make, _ in BAD_IMAGES.values()]
    goods = _good_images()
    items = [goods[0], *bads[:6], goods[1], *bads[6:], goods[2]]
    with QdrantVectorizer(tmp_path / "store", engine=engine, on_error="skip", show_progress=False) as vectorizer:
        report = vectorizer.add_images(items)
        assert (report.added, report.existing, len(report.failed)) == (3, 0, len(bads))
        assert vectorizer.count() == 3
        for good in goods:
            hit = vectorizer.search_image(good, limit=1, modality="image")[0]
            assert hit.score == pytest.approx(1, abs=1e-5)


@pytest.mark.parametrize("name, modality", [("big.txt", "text"), ("big.png", "image")])
def test_a_file_over_the_size_limit_fails_alone_without_being_read_whole(tmp_path, engine, monkeypatch, name, modality):  # fmt: skip
    monkeypatch.setitem(ingest_items.MAX_FILE_BYTES, modality, 100)
    (tmp_path / name).write_bytes(b"x" * 101)
    (tmp_path / "small.txt").write_text("fits")
    with pytest.raises(InputError, match=rf"index 0: .*{name} is larger than 100 bytes, the most read from such a file"):  # fmt: skip
        read_items(engine, tmp_path / name, 0)
    assert [item.content for item in read_items(engine, tmp_path / "small.txt", 1)] == ["fits"]
