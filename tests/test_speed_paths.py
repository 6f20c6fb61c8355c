"""Speed paths that must not change the vectors: ``torch.compile`` (``compile=``) and decoding
large JPEGs at a reduced scale."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import V2_TINY, load_engine
from jinaclip_integrations import JinaCLIPEngine
from jinaclip_integrations.engine.inputs import load_image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from bench_decode import photo_jpeg  # noqa: E402  (the benchmark's synthetic photo)


@pytest.mark.skipif(not torch._dynamo.is_dynamo_supported(), reason="torch.compile is not supported here")
def test_compiled_towers_give_the_eager_vectors():
    """``compile="eager"``: dynamo captures both towers' forward (graph breaks, guards, dynamic
    shapes and a recompile on a new batch size all run) but runs the captured graph without
    generating code, so the test stays cheap. Measured by hand here with the default inductor
    backend (C++ codegen, ~70 s to compile on 2 cores): max |diff| 1.0e-7 on texts and 1.5e-7
    on images against eager, fp32 tiny v2."""
    eager = load_engine(V2_TINY)
    compiled = JinaCLIPEngine.from_pretrained(V2_TINY, device="cpu", dtype="float32", compile="eager")
    texts = ["a photo of a cat", "hello world " * 20, "x", "a dog on a sofa " * 9]
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (64, 80, 3), dtype=np.uint8) for _ in range(3)]
    for run in (lambda e: e.encode_text(texts, batch_size=2), lambda e: e.encode_image(images, batch_size=2)):
        np.testing.assert_allclose(run(compiled), run(eager), atol=1e-6)


def test_large_jpeg_is_decoded_at_reduced_scale_with_the_same_vector(engine):
    """A 1600x1200 JPEG for the tiny model's 56-pixel input decodes at 1/8 scale (200x150, the
    shortest side still over twice 56) instead of in full: the vector keeps cosine >= 0.999 to
    the full decode's (measured on 3 such photos: 0.99997-0.99999 on tiny v2, 0.99991-0.99998
    on tiny v1)."""
    data = photo_jpeg(1600, 1200)
    assert load_image(data, 0, min_side=engine.preprocessor.size).size == (200, 150)
    assert load_image(data, 0).size == (1600, 1200)
    full = Image.open(io.BytesIO(data)).convert("RGB")  # a caller's decoded image is used as it is
    drafted, whole = engine.encode_image([data, full])
    assert float(drafted @ whole) >= 0.999


def test_small_or_non_jpeg_images_decode_in_full(engine):
    small = photo_jpeg(200, 150)  # shortest side under 4 x 56: nothing to gain
    assert load_image(small, 0, min_side=engine.preprocessor.size).size == (200, 150)
    png = io.BytesIO()
    Image.open(io.BytesIO(photo_jpeg(1600, 1200))).save(png, "PNG")
    assert load_image(png.getvalue(), 0, min_side=engine.preprocessor.size).size == (1600, 1200)


def test_reduced_decoding_can_be_turned_off_and_covers_camera_mpo_files(engine):
    """``reduced_jpeg_decoding=False`` decodes every pixel, as the reference does: the vector of
    the JPEG's bytes then equals that of the caller's fully decoded image (atol 1e-6, fp32).
    MPO files (a JPEG with previews, what many cameras write) are JPEGs to the reduced decoding."""
    data = photo_jpeg(1600, 1200)
    exact = JinaCLIPEngine.from_pretrained(V2_TINY, device="cpu", dtype="float32", reduced_jpeg_decoding=False)
    full = Image.open(io.BytesIO(data)).convert("RGB")
    from_bytes, from_image = exact.encode_image([data, full])
    np.testing.assert_allclose(from_bytes, from_image, atol=1e-6)
    mpo = io.BytesIO()
    full.save(mpo, "MPO", save_all=True, append_images=[full.resize((160, 120))])  # a photo and its preview
    assert Image.open(io.BytesIO(mpo.getvalue())).format == "MPO"
    assert load_image(mpo.getvalue(), 0, min_side=engine.preprocessor.size).size == (200, 150)
