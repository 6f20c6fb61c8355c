"""Every accepted image input gives the same embedding; every bad one a typed, indexed error."""

from __future__ import annotations

import base64
import functools
import http.server
import io
import os
import pickle
import socket
import struct
import threading
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import V2_TINY
from jinaclip_integrations import InputError, JinaCLIPEngine

GRADIENT = V2_TINY / "rgb_gradient_64x48.png"
CMYK = V2_TINY / "cmyk_45x45.jpg"


@pytest.fixture(scope="module")
def server():
    """A local HTTP server over the fixture folder (404 for anything else)."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(V2_TINY))
    handler.log_message = lambda *args: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def same_as_path(engine, path: Path, item) -> None:
    expected = engine.encode_image([path])
    np.testing.assert_allclose(engine.encode_image([item]), expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda p: Image.open(p), id="pil"),
        pytest.param(lambda p: str(p), id="str-path"),
        pytest.param(lambda p: p, id="pathlib"),
        pytest.param(lambda p: p.read_bytes(), id="bytes"),
        pytest.param(lambda p: bytearray(p.read_bytes()), id="bytearray"),
        pytest.param(lambda p: memoryview(p.read_bytes()), id="memoryview"),
        pytest.param(lambda p: io.BytesIO(p.read_bytes()), id="file-object"),
        pytest.param(lambda p: open(p, "rb"), id="open-file"),  # noqa: SIM115 (the caller owns the file)
        pytest.param(lambda p: base64.b64encode(p.read_bytes()).decode(), id="base64"),
        pytest.param(
            lambda p: base64.urlsafe_b64encode(p.read_bytes()).decode().rstrip("="), id="base64-urlsafe-unpadded"
        ),  # fmt: skip
        pytest.param(lambda p: "data:image/png;base64," + base64.b64encode(p.read_bytes()).decode(), id="data-uri"),
        pytest.param(lambda p: np.asarray(Image.open(p).convert("RGB")), id="numpy-hwc"),
    ],
)
def test_every_input_kind_matches_the_file(engine, make):
    item = make(GRADIENT)
    same_as_path(engine, GRADIENT, item)
    if isinstance(item, io.IOBase):
        item.close()


def test_url(engine, server):
    same_as_path(engine, GRADIENT, f"{server}/{GRADIENT.name}")


def test_numpy_gray_and_rgba(engine):
    gray = V2_TINY / "gray_L_50x70.png"
    same_as_path(engine, gray, np.asarray(Image.open(gray)))
    same_as_path(engine, gray, np.asarray(Image.open(gray))[:, :, None])
    rgba = V2_TINY / "rgba_80x80.png"
    same_as_path(engine, rgba, np.asarray(Image.open(rgba)))  # alpha dropped, as the reference does


def _png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width`` x ``height`` pixels: a decompression bomb."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def _bad_inputs(tmp_path: Path) -> dict[str, tuple[object, str]]:
    png = GRADIENT.read_bytes()
    jpeg = CMYK.read_bytes()
    return {
        "missing-file": (str(tmp_path / "nope.jpg"), "file not found"),
        "missing-pathlib": (tmp_path / "nope.png", "file not found"),
        "directory": (tmp_path, "is not a regular file"),
        "directory-str": (str(tmp_path), "is not a regular file"),
        "nul-in-path": (Path("a\x00b.png"), "cannot read"),
        "corrupt-bytes": (b"definitely not an image", "cannot decode image"),
        "truncated-png": (png[: len(png) // 2], "cannot decode image"),
        "truncated-jpeg": (jpeg[: len(jpeg) // 2], "cannot decode image"),
        "bomb": (_png_claiming(100_000, 100_000), "decompression bomb refused"),
        "not-base64": ("x" * 40 + "!!", "file not found"),
        "base64-not-image": (base64.b64encode(b"hello world, not an image at all").decode(), "cannot decode image"),
        "data-uri-not-base64": ("data:image/png,rawbytes", "data URI"),
        "data-uri-bad-base64": ("data:image/png;base64,@@@@", "not valid base64"),
        "float-array": (np.zeros((4, 4, 3)), "must be uint8"),
        "bad-shape-array": (np.zeros((4, 4, 2), np.uint8), "must have shape"),
        "empty-array": (np.zeros((0, 4, 3), np.uint8), "empty"),
        "empty-pil": (Image.new("RGB", (0, 5)), "image is empty (0x5)"),
        "empty-bytes": (b"", "no image data"),
        "bad-url": ("http://[::1/x.png", "cannot fetch"),
        "text-file-object": (io.StringIO("abc"), "binary mode"),
        "int": (42, "unsupported image type int"),
        "none": (None, "unsupported image type NoneType"),
    }


@pytest.mark.parametrize("case", list(_bad_inputs(Path("/tmp"))))
def test_bad_image_is_an_input_error_with_its_index(engine, tmp_path, case):
    item, reason = _bad_inputs(tmp_path)[case]
    good = str(GRADIENT)
    with pytest.raises(InputError) as info:
        engine.encode_image([good, good, item, good], batch_size=2)
    assert info.value.index == 2
    assert reason in info.value.reason
    assert str(info.value).startswith("invalid image at index 2: ")
    assert isinstance(info.value, ValueError)


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_bomb_over_our_limit_but_under_pils(engine):
    """120 megapixels: PIL only warns; the engine's limit refuses it before decoding."""
    with pytest.raises(InputError, match="12000x10000 = 120000000 pixels, more than the limit"):
        engine.encode_image([_png_claiming(12_000, 10_000)])


def test_fifo_is_refused_without_blocking(engine, tmp_path):
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    with pytest.raises(InputError, match="is not a regular file"):
        engine.encode_image([str(fifo)])


def test_elongated_image_is_refused_before_resizing(engine):
    """A 1 x 200000 sliver would be resized to 56 x 11.2M pixels (size**2 * length)."""
    sliver = io.BytesIO()
    Image.new("L", (1, 200_000)).save(sliver, format="PNG")
    with pytest.raises(InputError, match=r"too elongated: resizing it needs 56x11200000 = 627200000 pixels"):
        engine.encode_image([sliver.getvalue()])
    assert engine.encode_image([Image.new("L", (1, 3000))]).shape == (1, 64)  # within the limit


def test_shared_caller_objects(engine):
    """The same lazily-decoded PIL image many times in one call (decoded by several threads)."""
    lazy = Image.open(io.BytesIO(CMYK.read_bytes()))
    out = engine.encode_image([lazy] * 8, batch_size=3)
    np.testing.assert_allclose(out, np.repeat(engine.encode_image([CMYK]), 8, axis=0), atol=1e-6)
    stream = io.BytesIO(GRADIENT.read_bytes())
    with pytest.raises(InputError, match="index 1: file object returned no data"):
        engine.encode_image([stream, stream])


@pytest.fixture
def garbage_server():
    """A TCP server that answers any request with bytes that are not HTTP."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()

    def serve():
        conn, _ = sock.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(b"NOT HTTP AT ALL\r\n\r\n")

    threading.Thread(target=serve, daemon=True).start()
    yield f"http://127.0.0.1:{sock.getsockname()[1]}/x.png"
    sock.close()


def test_url_answering_garbage(engine, garbage_server):
    with pytest.raises(InputError, match="index 0: cannot fetch"):
        engine.encode_image([garbage_server])


def test_truncated_file_on_disk(engine, tmp_path):
    path = tmp_path / "cut.jpg"
    path.write_bytes(CMYK.read_bytes()[:700])
    with pytest.raises(InputError, match="index 0: cannot decode image") as info:
        engine.encode_image([path])
    assert str(path) in info.value.reason


def test_http_errors(engine, server):
    with pytest.raises(InputError, match="HTTP 404") as info:
        engine.encode_image([str(GRADIENT), f"{server}/missing.png"])
    assert info.value.index == 1
    with pytest.raises(InputError, match="cannot fetch"):
        engine.encode_image(["http://127.0.0.1:9/closed-port.png"])


def test_pixel_limit_is_configurable(engine):
    strict = JinaCLIPEngine(engine.model, engine.tokenizer, max_image_pixels=64 * 48)
    strict.encode_image([GRADIENT])  # exactly at the limit
    with pytest.raises(InputError, match=r"1000x300 = 300000 pixels, more than the limit of 3072"):
        strict.encode_image([GRADIENT, V2_TINY / "rgb_wide_1000x300.png"])
    too_big = Image.new("RGB", (100, 100))
    with pytest.raises(InputError, match="index 0"):
        strict.encode_image([too_big])
    unlimited = JinaCLIPEngine(engine.model, engine.tokenizer, max_image_pixels=None)
    assert unlimited.encode_image([V2_TINY / "rgb_wide_1000x300.png"]).shape == (1, 64)


def test_the_first_bad_item_in_input_order_is_reported(engine):
    items = [str(GRADIENT)] * 5 + [b"bad"] + [str(GRADIENT)] * 3 + [None]
    with pytest.raises(InputError) as info:
        engine.encode_image(items, batch_size=4)
    assert info.value.index == 5


def test_input_error_survives_pickling():
    error = pickle.loads(pickle.dumps(InputError(3, "file not found: 'a.jpg'", kind="image")))
    assert (error.index, error.reason, str(error)) == (3, "file not found: 'a.jpg'", "invalid image at index 3: file not found: 'a.jpg'")  # fmt: skip


def test_tiny_and_odd_images_embed(engine):
    """Sizes and modes that break some processors: 1x1, 1xN, 16-bit gray, palette, CMYK."""
    items = [
        Image.new("RGB", (1, 1), "red"),
        Image.new("L", (1, 300)),
        Image.new("I;16", (20, 30)),
        Image.open(V2_TINY / "palette_P_60x40.png"),
        Image.open(CMYK),
    ]
    out = engine.encode_image(items)
    assert out.shape == (5, 64) and np.isfinite(out).all()
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1, atol=1e-5)
