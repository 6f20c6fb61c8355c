"""Every accepted image input gives the same embedding; every bad one a typed, indexed error."""

from __future__ import annotations

import base64
import contextlib
import functools
import http.server
import io
import os
import pickle
import socket
import struct
import subprocess
import sys
import threading
import warnings
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import EpsImagePlugin, ExifTags, Image, ImageFile

from conftest import V2_TINY
from jinaclip_integrations import InputError, JinaCLIPEngine
from jinaclip_integrations.engine import IMAGE_FORMATS, inputs, open_image
from jinaclip_integrations.engine.inputs import load_image
from jinaclip_integrations.ingest.readers.images import pil_size

GRADIENT = V2_TINY / "rgb_gradient_64x48.png"
CMYK = V2_TINY / "cmyk_45x45.jpg"


@contextlib.contextmanager
def serve_http(handler: Callable[..., http.server.BaseHTTPRequestHandler]) -> Iterator[str]:
    """A local HTTP server answering with ``handler``, in a thread; yields its base URL."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def serve_folder(folder: Path) -> contextlib.AbstractContextManager[str]:
    """A local HTTP server over ``folder`` (404 for anything else)."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *args: None
    return serve_http(handler)


@pytest.fixture(scope="module")
def server():
    """A local HTTP server over the fixture folder."""
    with serve_folder(V2_TINY) as url:
        yield url


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


# -- decoding: orientation, frames, modes, formats ---------------------------------------------

#: a deterministic, asymmetric RGB image: any flip or rotation changes it
PHOTO = np.random.default_rng(7).integers(0, 256, (12, 20, 3), dtype=np.uint8)


def _encode(img: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kwargs)
    return buf.getvalue()


def _pixels(item) -> np.ndarray:
    return np.asarray(load_image(item, 0))


def _with_orientation(orientation: int, fmt: str = "PNG", **kwargs) -> bytes:
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = orientation
    return _encode(Image.fromarray(PHOTO), fmt, exif=exif, **kwargs)


#: EXIF orientation -> what a viewer shows, written with numpy (independent of PIL's transposes)
UPRIGHT = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.swapaxes(0, 1),
    6: lambda a: np.rot90(a, -1),
    7: lambda a: a[::-1, ::-1].swapaxes(0, 1),
    8: lambda a: np.rot90(a, 1),
}


@pytest.mark.parametrize("orientation", list(UPRIGHT))
def test_exif_orientation_is_applied_as_a_viewer_shows_it(orientation):
    """Lossless PNG, WebP and TIFF (which PIL turns upright itself, on load): the decoded pixels
    are exactly the stored ones, turned upright."""
    expected = UPRIGHT[orientation](PHOTO)
    np.testing.assert_array_equal(_pixels(_with_orientation(orientation)), expected)
    np.testing.assert_array_equal(_pixels(_with_orientation(orientation, "WEBP", lossless=True)), expected)
    np.testing.assert_array_equal(_pixels(_with_orientation(orientation, "TIFF")), expected)


def test_exif_rotated_jpeg_embeds_as_its_upright_pixels(engine):
    data = _with_orientation(6, "JPEG", quality=95)
    stored = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))  # as the camera wrote it
    np.testing.assert_array_equal(_pixels(data), np.rot90(stored, -1))
    upright = engine.encode_image([np.ascontiguousarray(np.rot90(stored, -1))])
    np.testing.assert_allclose(engine.encode_image([data]), upright, atol=1e-6, rtol=0)
    assert not np.allclose(engine.encode_image([stored]), upright, atol=1e-3)  # orientation matters here


def test_callers_pil_image_is_not_modified():
    """Orientation, mode, size, pixels and frame of the caller's image stay as they were."""
    img = Image.open(io.BytesIO(_with_orientation(8)))
    assert _pixels(img).shape == (20, 12, 3)
    assert (img.size, img.mode, img.getexif()[ExifTags.Base.Orientation]) == ((20, 12), "RGB", 8)
    np.testing.assert_array_equal(np.asarray(img), PHOTO)


FRAME_COLORS = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]


def _animation(fmt: str) -> bytes:
    frames = [Image.new("RGB", (8, 6), color) for color in FRAME_COLORS]
    extra = {"lossless": True} if fmt == "WEBP" else {}
    return _encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100, loop=0, **extra)


@pytest.mark.parametrize("fmt", ["GIF", "WEBP", "PNG"])
def test_animated_image_gives_its_first_frame(engine, fmt):
    """Encoded animations (GIF, WebP, APNG) give frame 0; a PIL image gives the frame it is on,
    and stays on it."""
    data = _animation(fmt)
    assert Image.open(io.BytesIO(data)).n_frames == 3
    assert (_pixels(data) == FRAME_COLORS[0]).all()
    np.testing.assert_allclose(
        engine.encode_image([data]), engine.encode_image([np.full((6, 8, 3), FRAME_COLORS[0], np.uint8)]), atol=1e-6
    )
    seeked = Image.open(io.BytesIO(data))
    seeked.seek(2)
    assert (_pixels(seeked) == FRAME_COLORS[2]).all()
    assert seeked.tell() == 2


#: 8-bit gray levels and the same levels widened to 16 bits (v * 257, as 8 -> 16 bit tools do)
GRAY8 = np.random.default_rng(3).integers(0, 256, (20, 30), dtype=np.uint8)
GRAY16 = GRAY8.astype(np.uint16) * 257


def _png16_rgb(levels: np.ndarray) -> bytes:
    """A 16-bit-per-channel RGB PNG (pillow cannot write one), rows unfiltered."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    height, width = levels.shape[:2]
    rows = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in levels)
    ihdr = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


@pytest.mark.parametrize(
    "make, mode",
    [
        pytest.param(lambda: _encode(Image.fromarray(GRAY16), "PNG"), "I;16", id="png"),
        pytest.param(lambda: _encode(Image.fromarray(GRAY16), "TIFF"), "I;16", id="tiff-little-endian"),
        pytest.param(
            lambda: _encode(Image.frombytes("I;16B", (30, 20), GRAY16.astype(">u2").tobytes()), "TIFF"),
            "I;16B",
            id="tiff-big-endian",
        ),
        pytest.param(lambda: Image.fromarray(GRAY16), "I;16", id="pil-I;16"),
        pytest.param(lambda: Image.fromarray(GRAY16.astype(np.int32)), "I", id="pil-I"),
    ],
)
def test_16_bit_gray_is_scaled_not_clipped(make, mode):
    """PIL's own conversion clips levels above 255 to white; they are scaled to 0..255 instead,
    so a 16-bit image gives exactly the 8-bit image it was widened from."""
    item = make()
    assert (item if isinstance(item, Image.Image) else Image.open(io.BytesIO(item))).mode == mode  # pillow 13
    np.testing.assert_array_equal(_pixels(item), np.repeat(GRAY8[:, :, None], 3, axis=2))


def test_32_bit_gray_is_clipped_to_16_bits_then_scaled():
    levels = np.array([[-5, 0, 128, 32896, 65535, 70000]], np.int32)
    np.testing.assert_array_equal(_pixels(Image.fromarray(levels))[0, :, 0], [0, 0, 0, 128, 255, 255])


def test_16_bit_rgb_png_keeps_the_high_byte():
    """Pillow's PNG decoder reads 48-bit RGB as 8-bit RGB (the high byte of each level)."""
    low = np.random.default_rng(5).integers(0, 256, PHOTO.shape, dtype=np.uint16)  # must not matter
    rgb16 = PHOTO.astype(np.uint16) * 256 + low
    np.testing.assert_array_equal(_pixels(_png16_rgb(rgb16)), PHOTO)


def test_float_image_is_clipped_and_truncated_as_pil_does():
    """Mode F is taken as 0..255 levels: out-of-range values clip, fractions truncate."""
    values = np.array([[-5.0, 0.5, 127.6, 254.9, 300.0]], np.float32)
    np.testing.assert_array_equal(_pixels(Image.fromarray(values))[0, :, 0], [0, 0, 127, 254, 255])


@pytest.mark.parametrize("fmt, tolerance", [("TIFF", 0), ("JPEG", 3)])
def test_cmyk_inks_become_their_rgb_colors(fmt, tolerance):
    """Pure inks in 16 px blocks: cyan, magenta, yellow, black. Pillow writes CMYK JPEGs inverted
    with an Adobe marker, as Photoshop does; its decoder undoes that."""
    inks = [(255, 0, 0, 0), (0, 255, 0, 0), (0, 0, 255, 0), (0, 0, 0, 255)]
    expected = [(0, 255, 255), (255, 0, 255), (255, 255, 0), (0, 0, 0)]
    cmyk = Image.new("CMYK", (64, 16))
    for i, ink in enumerate(inks):
        cmyk.paste(ink, (16 * i, 0, 16 * i + 16, 16))
    pixels = _pixels(_encode(cmyk, fmt, quality=95) if fmt == "JPEG" else _encode(cmyk, fmt))
    centers = pixels[8, [8, 24, 40, 56]].astype(int)
    np.testing.assert_allclose(centers, expected, atol=tolerance)


def _palette_with_alpha(transparency: bytes | int = bytes([0, 128, 255, 0])) -> Image.Image:
    """A palette image with transparency: a bytes table (PNG tRNS; PIL warns on convert("RGB"))
    or one transparent index (GIF)."""
    img = Image.fromarray(np.arange(48, dtype=np.uint8).reshape(6, 8) % 4, mode="P")
    img.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255, 10, 20, 30])
    img.info["transparency"] = transparency
    return img


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(_palette_with_alpha, id="pil-bytes-transparency"),
        pytest.param(lambda: Image.open(io.BytesIO(_encode(_palette_with_alpha(), "PNG"))), id="png-trns"),
        pytest.param(lambda: Image.open(io.BytesIO(_encode(_palette_with_alpha(3), "GIF"))), id="gif-transparency"),
    ],
)
def test_palette_with_transparency_keeps_the_reference_pixels_without_warning(make):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = np.asarray(make().convert("RGB"))  # what the reference's convert("RGB") gives
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(_pixels(make()), reference)
    assert {tuple(p) for p in reference.reshape(-1, 3)} <= {(255, 0, 0), (0, 255, 0), (0, 0, 255), (10, 20, 30)}


def test_alpha_is_dropped_not_composited():
    """Fully transparent pixels keep the color they store (no white or black background)."""
    rgba = np.array([[[10, 20, 30, 0], [200, 100, 50, 255]]], np.uint8)
    np.testing.assert_array_equal(_pixels(Image.fromarray(rgba)), rgba[:, :, :3])
    la = Image.fromarray(np.array([[[90, 0], [250, 128]]], np.uint8), mode="LA")
    np.testing.assert_array_equal(_pixels(la)[0], [[90, 90, 90], [250, 250, 250]])


GRADIENT_ARRAY = np.asarray(Image.open(GRADIENT).convert("RGB"))
#: a smooth picture for the lossy formats: red grows to the right, green downwards
_ys, _xs = np.mgrid[0:48, 0:64]
SMOOTH = np.stack([_xs * 4, _ys * 5, np.full_like(_xs, 128)], axis=2).astype(np.uint8)


def test_webp_lossless_is_exact(engine):
    data = _encode(Image.fromarray(GRADIENT_ARRAY), "WEBP", lossless=True)
    np.testing.assert_array_equal(_pixels(data), GRADIENT_ARRAY)
    same_as_path(engine, GRADIENT, data)


def test_heic_is_read_through_pillow_heif():
    pillow_heif = pytest.importorskip("pillow_heif")
    buf = io.BytesIO()
    pillow_heif.from_pillow(Image.fromarray(SMOOTH)).save(buf, format="HEIF", quality=95)
    data = buf.getvalue()
    assert data[4:12] == b"ftypheic"
    pixels = _pixels(data)
    np.testing.assert_array_equal(pixels, np.asarray(pillow_heif.open_heif(data)))  # libheif's own decoding
    assert np.abs(pixels.astype(int) - SMOOTH).mean() < 3  # lossy, but the same picture


def test_avif_is_read_by_pillow_even_with_pillow_heif_registered():
    inputs._heif_opener()  # pillow-heif's opener registered (if installed) must not take AVIF over
    data = _encode(Image.fromarray(SMOOTH), "AVIF", quality=95)
    assert data[4:12] == b"ftypavif"
    assert np.abs(_pixels(data).astype(int) - SMOOTH).mean() < 3


@pytest.fixture
def without_pillow_heif(monkeypatch):
    """As if pillow-heif were not installed: its import fails, and the opener is looked up again."""
    monkeypatch.setitem(sys.modules, "pillow_heif", None)
    inputs._heif_opener.cache_clear()
    yield
    inputs._heif_opener.cache_clear()  # before monkeypatch restores the module: found again next time


def test_heic_without_pillow_heif_says_what_to_install(engine, without_pillow_heif):
    heic = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(64)
    with pytest.raises(InputError, match=r'index 1: bytes is a HEIC/HEIF image: pip install "jinaclip-integrations\[heif\]"'):  # fmt: skip
        engine.encode_image([GRADIENT, heic])


def test_pillow_heif_is_imported_only_for_a_heif_image():
    pytest.importorskip("pillow_heif")
    code = (
        "import sys, io\n"
        "from PIL import Image\n"
        "from jinaclip_integrations.engine.inputs import load_image\n"
        f"load_image({str(GRADIENT)!r}, 0)\n"
        "assert 'pillow_heif' not in sys.modules, 'imported too early'\n"
        "try:\n"
        "    load_image(b'\\x00\\x00\\x00\\x18ftypheic' + bytes(64), 0)\n"
        "except ValueError:\n"
        "    pass\n"
        "assert 'pillow_heif' in sys.modules, 'not imported for a HEIC image'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_an_avif_with_the_generic_mif1_brand_is_not_taken_for_heic(engine, without_pillow_heif):
    """AVIF files may name ``mif1`` as their major brand; pillow reads them without pillow-heif."""
    buf = io.BytesIO()
    Image.fromarray(SMOOTH).save(buf, format="AVIF", quality=95)
    avif = buf.getvalue()
    mif1 = avif[:8] + b"mif1" + avif[12:]
    assert b"avif" in mif1[16:32]
    np.testing.assert_allclose(engine.encode_image([mif1]), engine.encode_image([avif]), atol=1e-6)


# -- formats: an allow-list ----------------------------------------------------------------------

FORMATS = "JPEG, PNG, WEBP, GIF, BMP, TIFF, AVIF, HEIF"


def _written(fmt: str) -> bytes:
    """A small picture in ``fmt``, as PIL (and pillow-heif, for HEIF) writes it; skips the test
    where this installation cannot write it."""
    if fmt == "HEIF" and not inputs._heif_opener():
        pytest.skip("pillow-heif is not installed")
    frames = {"append_images": [Image.new("RGB", (20, 12), "blue")], "save_all": True} if fmt == "MPO" else {}
    mode = {"XBM": "1", "MSP": "1", "BLP": "P"}.get(fmt, "RGB")
    try:
        return _encode(Image.fromarray(SMOOTH[:12, :20]).convert(mode), fmt, **frames)
    except (KeyError, OSError, ValueError) as exc:  # no writer, or one not built in
        pytest.skip(f"this PIL cannot write {fmt}: {exc}")


@pytest.mark.parametrize("fmt", [*IMAGE_FORMATS, "MPO"])
def test_every_accepted_format_decodes_as_pil_reads_it(fmt):
    """MPO (a camera's multi-picture JPEG) is read by the JPEG reader: its first picture."""
    data = _written(fmt)
    with Image.open(io.BytesIO(data)) as img:
        assert img.format == fmt
        expected = np.asarray(img.convert("RGB"))
    np.testing.assert_array_equal(_pixels(data), expected)


@pytest.fixture
def readers_used(monkeypatch) -> list[str]:
    """Every PIL reader of a format not in IMAGE_FORMATS, and Ghostscript, replaced by a spy
    that records its name (the readers then do their work; Ghostscript is never run)."""
    Image.init()
    used: list[str] = []
    for name, (factory, accept) in list(Image.OPEN.items()):
        if name not in IMAGE_FORMATS:

            def spy(*args, name=name, factory=factory):
                used.append(name)
                return factory(*args)

            monkeypatch.setitem(Image.OPEN, name, (spy, accept))

    def ghostscript(*args, **kwargs):
        used.append("Ghostscript")
        raise OSError("Ghostscript must not run")

    monkeypatch.setattr(EpsImagePlugin, "Ghostscript", ghostscript)
    return used


_PSD_HEADER = (
    b"8BPS\x00\x01" + bytes(6) + b"\x00\x03" + (12).to_bytes(4, "big") + (20).to_bytes(4, "big") + b"\x00\x08\x00\x03"
)
_WMF_HEADER = b"\xd7\xcd\xc6\x9a" + bytes(20)


@pytest.mark.parametrize(
    "make, detected",
    [
        *[pytest.param(lambda fmt=fmt: _written(fmt), fmt, id=fmt) for fmt in ["EPS", "ICO", "PCX", "SGI", "PPM", "XBM", "DDS", "QOI", "MSP", "JPEG2000"]],
        pytest.param(lambda: _PSD_HEADER, "PSD", id="PSD"),
        pytest.param(lambda: _WMF_HEADER, "WMF", id="WMF"),
        pytest.param(lambda: _written("PDF"), None, id="PDF"),  # PIL writes PDFs, reads none
        pytest.param(lambda: _written("SPIDER"), None, id="SPIDER"),  # no magic number to tell it by
    ],
)  # fmt: skip
def test_other_formats_are_refused_before_their_reader_runs(readers_used, make, detected):
    data = make()
    with pytest.raises(InputError) as info:
        load_image(data, 4)
    assert info.value.index == 4
    if detected:
        assert info.value.reason == f"image format {detected} is not accepted (bytes); accepted formats: {FORMATS}"
    else:
        assert info.value.reason == f"cannot decode image (bytes): not an image in an accepted format ({FORMATS})"
    assert readers_used == []


EPS = _encode(Image.fromarray(PHOTO), "EPS")


@pytest.mark.parametrize(
    "make, label",
    [
        pytest.param(lambda folder, site: EPS, "bytes", id="bytes"),
        pytest.param(lambda folder, site: folder / "photo.eps", "{path!r}", id="path"),
        pytest.param(lambda folder, site: io.BytesIO(EPS), "file object", id="file-object"),
        pytest.param(lambda folder, site: base64.b64encode(EPS).decode(), "base64 string", id="base64"),
        pytest.param(lambda folder, site: "data:image/x-eps;base64," + base64.b64encode(EPS).decode(), "data URI", id="data-uri"),
        pytest.param(lambda folder, site: f"{site}/photo.eps", "{site}/photo.eps", id="url"),
    ],
)  # fmt: skip
def test_eps_never_reaches_ghostscript(engine, readers_used, tmp_path, make, label):
    """PIL would run Ghostscript on the PostScript; whatever form the EPS comes in, the EPS
    reader never sees it and the item is refused, naming the format."""
    (tmp_path / "photo.eps").write_bytes(EPS)
    with serve_folder(tmp_path) as site, pytest.raises(InputError) as info:
        engine.encode_image([GRADIENT, make(tmp_path, site)])
    shown = label.format(path=str(tmp_path / "photo.eps"), site=site)
    assert (info.value.index, info.value.reason) == (
        1,
        f"image format EPS is not accepted ({shown}); accepted formats: {FORMATS}",
    )
    assert readers_used == []


def test_a_callers_pil_image_is_decoded_whatever_its_format():
    """A PIL image is the caller's own decoding: taken as it is, as before."""
    with Image.open(io.BytesIO(_written("PCX"))) as img:
        np.testing.assert_array_equal(_pixels(img), np.asarray(img.convert("RGB")))


def test_open_image_reads_the_header_only(monkeypatch):
    """The seam the server's header check and the document readers use (they decode nothing)."""

    def no_decoding(self: Image.Image) -> None:
        pytest.fail("the image was decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    with open_image(GRADIENT.read_bytes(), 0) as img:
        assert (img.format, img.size) == ("PNG", (64, 48))
    with pytest.raises(InputError, match=r"^invalid image at index 3: image format EPS is not accepted \(upload\)"):
        open_image(EPS, 3, "upload")


def test_document_images_are_kept_in_the_accepted_formats_only():
    """The docx reader keeps an embedded image only when its size can be read: by the same
    allow-list (an EPS or WMF picture is left out with a warning, never read)."""
    assert pil_size(GRADIENT.read_bytes()) == (64, 48)
    assert pil_size(EPS) is None and pil_size(_WMF_HEADER) is None


# -- one dispatch: what an input is ------------------------------------------------------------


def test_every_spelling_of_a_file_resolves_to_its_bytes(tmp_path, monkeypatch):
    """A file, its ``file://`` URI, ``~`` path, bytes, base64, data URI and file object are the
    same encoded bytes: what the engine decodes and the ingest pipeline hashes."""
    data = GRADIENT.read_bytes()
    b64 = base64.b64encode(data).decode()
    monkeypatch.setenv("HOME", str(GRADIENT.parent))
    spellings = [GRADIENT, str(GRADIENT), GRADIENT.as_uri(), f"~/{GRADIENT.name}", data, bytearray(data), b64,
                 f"data:image/png;base64,{b64}", io.BytesIO(data)]  # fmt: skip
    sources = [inputs.resolve_image(item, 0) for item in spellings]
    assert {(s.kind, s.data) for s in sources} == {("bytes", data)}
    assert [s.path for s in sources[:4]] == [os.path.abspath(GRADIENT)] * 4 and sources[4].path is None


def test_urls_arrays_and_pil_images_are_resolved_without_reading_them():
    url, array, pil = "http://127.0.0.1:9/never-fetched.png", np.zeros((2, 2), np.float32), Image.new("RGB", (1, 1))
    assert (inputs.resolve_image(url, 0).kind, inputs.resolve_image(url, 0).value) == ("url", url)
    assert inputs.resolve_image(array, 0).value is array  # checked when decoded, not here
    assert inputs.resolve_image(pil, 0).value is pil


def test_a_missing_string_is_image_not_found_and_a_file_over_the_cap_is_refused(tmp_path):
    with pytest.raises(inputs.ImageNotFound, match="file not found: 'no/such.png'"):
        inputs.resolve_image("no/such.png", 3)
    with pytest.raises(InputError, match=r"index 0: .*gradient_64x48.png' is larger than 100 bytes"):
        inputs.resolve_image(GRADIENT, 0, max_bytes=100)


def test_resolving_and_keying_images_imports_no_torch():
    code = (
        "import sys\n"
        "from jinaclip_integrations.ingest.items import IngestReport, iter_image_items\n"
        f"list(iter_image_items([{str(GRADIENT)!r}], None, IngestReport(), 'raise'))\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
