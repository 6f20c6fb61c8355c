"""The engine's user-facing calls beyond encode_text/encode_image: one call for texts and images
(``encode``, ``ImageRef``), ``encode_query``/``encode_document``, ``similarity``, streaming
``embed``, ``precision=``, zero-shot ``classify`` and ``jinaclip classify``.

Vectors are compared at atol 1e-5 (the same float32 model run on other batches: test_engine_api's
tolerance; measured 0 here, the batches being the same); quantized outputs exactly.
"""

from __future__ import annotations

import io
import itertools
import json

import numpy as np
import pytest
from PIL import Image

from conftest import V1_TINY, V2_TINY, load_engine
from jinaclip_integrations import ImageRef, InputError, cli
from jinaclip_integrations.engine import PRECISIONS, LazyEngine, quantize, resolve_image

EMB = dict(atol=1e-5, rtol=0)


@pytest.fixture(scope="module")
def paths(manifest) -> list:
    return [V2_TINY / name for name in manifest["images"]]


def test_mixed_list_rows_equal_the_single_modality_calls_in_input_order(engine, paths):
    pil = Image.open(paths[1])
    array = np.array(Image.open(paths[2]).convert("RGB"))
    items = ["a cat", paths[0], pil, "ein Hund", array, paths[3].read_bytes(), ImageRef(str(paths[4])), "x"]
    out = engine.encode(items, task="retrieval.query")
    texts = engine.encode_text(["a cat", "ein Hund", "x"], task="retrieval.query")
    images = engine.encode_image([paths[0], pil, array, paths[3], paths[4]])
    assert out.shape == (8, 64) and out.dtype == np.float32
    np.testing.assert_allclose(out[[0, 3, 7]], texts, **EMB)
    np.testing.assert_allclose(out[[1, 2, 4, 5, 6]], images, **EMB)
    np.testing.assert_allclose(engine.encode(np.stack([array, array])), images[[2, 2]], **EMB)  # N x H x W x C
    assert engine.encode([]).shape == (0, 64)


def test_a_path_string_is_a_text_unless_wrapped(engine, paths):
    path = str(paths[0])
    as_text, as_image = engine.encode([path]), engine.encode([ImageRef(path)])
    np.testing.assert_allclose(as_text, engine.encode_text([path]), **EMB)
    np.testing.assert_allclose(as_image, engine.encode_image([path]), **EMB)
    assert not np.allclose(as_text, as_image, atol=1e-2)
    # the wrapper is an image input wherever images are read, and keyed as its source
    np.testing.assert_allclose(engine.encode_image([ImageRef(paths[0])]), as_image, **EMB)
    assert resolve_image(ImageRef(path), 0) == resolve_image(path, 0)
    with pytest.raises(TypeError, match="ImageRef takes an image input.*got int"):
        ImageRef(3)


def test_a_bad_item_is_an_input_error_naming_its_index(engine, paths):
    with pytest.raises(InputError, match=r"invalid input at index 2: expected a text \(str\) or an image") as info:
        engine.encode(["a", paths[0], None])
    assert info.value.index == 2
    with pytest.raises(InputError, match="invalid image at index 1: file not found: 'missing.jpg'"):
        engine.encode(["a", ImageRef("missing.jpg"), "b"])
    with pytest.raises(InputError, match="invalid text at index 2: not valid Unicode"):
        engine.encode([paths[0], "a", "\ud800"])

    class Recorded(io.BytesIO):
        """An image file object that records being read."""

        read_calls = 0

        def read(self, *args):
            Recorded.read_calls += 1
            return super().read(*args)

    with pytest.raises(ValueError, match="unknown task"):  # texts and task are checked before images are read
        engine.encode([Recorded(paths[0].read_bytes()), "a"], task="no-such-task")
    assert Recorded.read_calls == 0


def test_a_single_text_or_image_gives_one_vector(engine, paths):
    np.testing.assert_allclose(engine.encode("a cat"), engine.encode_text(["a cat"])[0], **EMB)
    np.testing.assert_allclose(engine.encode(Image.open(paths[0])), engine.encode_image([paths[0]])[0], **EMB)
    np.testing.assert_allclose(engine.encode(ImageRef(str(paths[0]))), engine.encode_image([paths[0]])[0], **EMB)
    assert engine.encode(paths[0], truncate_dim=16).shape == (16,)
    with pytest.raises(TypeError, match="wrap a single array image in a list"):
        engine.encode(np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(TypeError, match="got int"):
        engine.encode(5)
    for unordered in ({"a text": 1}, {"a", "b"}):  # a mapping's keys, a set in no order: refused
        with pytest.raises(TypeError, match="ordered iterable"):
            engine.encode(unordered)
        with pytest.raises(TypeError, match="ordered iterable"):
            engine.embed(unordered)


def test_query_and_document_names(engine, paths):
    texts = ["a cat", "a dog"]
    query = engine.encode_query([texts[0], paths[0], texts[1]])
    np.testing.assert_allclose(query[[0, 2]], engine.encode_text(texts, task=engine.query_task), **EMB)
    np.testing.assert_allclose(query[1], engine.encode_image([paths[0]])[0], **EMB)  # images have no task
    np.testing.assert_allclose(engine.encode_document(texts), engine.encode_text(texts), **EMB)
    assert not np.allclose(engine.encode_query(texts), engine.encode_document(texts), atol=1e-3)
    v1 = load_engine(V1_TINY)  # no query task: queries and documents alike
    assert v1.query_task is None
    np.testing.assert_allclose(v1.encode_query(texts), v1.encode_document(texts), **EMB)


def test_similarity(engine, paths):
    texts, images = engine.encode_text(["a", "b", "c"]), engine.encode_image(paths[:2])
    sim = engine.similarity(texts, images)
    assert sim.shape == (3, 2) and sim.dtype == np.float32
    np.testing.assert_allclose(sim, texts @ images.T, atol=1e-6)  # unit rows: cosine = dot product
    np.testing.assert_allclose(engine.similarity(texts[0], images), sim[:1], atol=1e-6)
    raw = engine.encode_text(["a", "b"], normalize=False)  # cosine, whatever the norms
    np.testing.assert_allclose(engine.similarity(raw, raw).diagonal(), [1, 1], atol=1e-6)
    # int8 rows keep the cosines within 0.02 on 64 dimensions (measured 0.0023)
    np.testing.assert_allclose(engine.similarity(quantize(texts, "int8"), quantize(images, "int8")), sim, atol=0.02)
    with pytest.raises(ValueError, match="64 and 16 dimensions"):
        engine.similarity(texts, engine.encode_text(["a"], truncate_dim=16))


def test_embed_streams_lazily_in_chunks(engine, paths):
    pulled = []

    def endless():
        for i in itertools.count():
            pulled.append(i)
            yield f"text {i}" if i % 3 else ImageRef(str(paths[i % len(paths)]))

    stream = engine.embed(endless(), chunk_size=5, batch_size=2)
    assert pulled == []  # nothing read before the first next()
    first = next(stream)
    assert len(pulled) == 5  # one chunk read, not more
    rest = list(itertools.islice(stream, 6))
    assert len(pulled) == 10  # the 7th vector needed the second chunk only
    items = [f"text {i}" if i % 3 else ImageRef(str(paths[i % len(paths)])) for i in range(7)]
    np.testing.assert_allclose(np.stack([first, *rest]), engine.encode(items), **EMB)
    assert all(v.base is None for v in rest)  # each vector owns its memory: none keeps a chunk alive

    query = list(engine.query_embed(iter(["a", "b"]), precision="binary"))
    np.testing.assert_array_equal(np.stack(query), engine.encode_query(["a", "b"], precision="binary"))
    np.testing.assert_allclose(np.stack(list(engine.passage_embed(["a"]))), engine.encode_document(["a"]), **EMB)

    lines = np.stack(list(engine.embed(io.StringIO("a\nb\n"))))  # a text-mode file is its lines
    np.testing.assert_allclose(lines, engine.encode(["a\n", "b\n"]), **EMB)

    bad = engine.embed(["a"] * 7 + [None], chunk_size=5)
    assert len(list(itertools.islice(bad, 5))) == 5
    with pytest.raises(InputError) as info:
        next(bad)
    assert info.value.index == 7  # its place in the stream, not in its chunk
    with pytest.raises(ValueError, match="unknown precision"):  # checked at the call
        engine.embed(["a"], precision="int4")
    with pytest.raises(TypeError, match="iterable of texts and images"):
        engine.embed("a text")


@pytest.mark.parametrize("precision", PRECISIONS)
def test_precision_outputs_are_the_quantized_floats(engine, paths, precision):
    texts, images = ["a cat", "", "ein Hund"], paths[:3]
    np.testing.assert_array_equal(
        engine.encode_text(texts, precision=precision), quantize(engine.encode_text(texts), precision)
    )
    expected = quantize(engine.encode_image(images, truncate_dim=16), precision)
    out = engine.encode_image(images, truncate_dim=16, precision=precision)
    np.testing.assert_array_equal(out, expected)
    assert out.dtype == expected.dtype and out.shape == ((3, 2) if "binary" in precision else (3, 16))
    mixed = engine.encode([texts[0], images[0]], precision=precision)
    np.testing.assert_array_equal(mixed, quantize(engine.encode([texts[0], images[0]]), precision))
    assert engine.encode_text([], precision=precision).shape == (0, 8 if "binary" in precision else 64)


def test_unknown_precision_fails_before_embedding(engine):
    for call in (engine.encode_text, engine.encode_image, engine.encode):
        with pytest.raises(ValueError, match=r"unknown precision 'int4'; choose one of \['float32', 'int8'"):
            call(["a"], precision="int4")


def test_classify_is_clip_zero_shot_with_the_checkpoints_temperature(engine, manifest, golden, paths):
    labels = manifest["texts"][:8]
    probabilities = engine.classify(paths, labels)
    assert probabilities.shape == (8, 8) and probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, atol=1e-6)
    # the reference model's own logits (its forward: texts without a task instruction), softmaxed per
    # image. Logits agree within 5e-5 (test_parity); probabilities measured within 5.3e-7.
    logits = golden["logits_per_text"].T.astype(np.float64)
    reference = np.exp(logits - logits.max(axis=1, keepdims=True))
    np.testing.assert_allclose(probabilities, reference / reference.sum(axis=1, keepdims=True), atol=1e-5)
    # and by hand from the engine's vectors
    manual = np.exp(engine.logit_scale) * engine.encode_image(paths) @ engine.encode_text(labels).T
    manual = np.exp(manual - manual.max(axis=1, keepdims=True))
    np.testing.assert_allclose(probabilities, manual / manual.sum(axis=1, keepdims=True), atol=1e-6)
    # a label's probability does not depend on the labels' order
    order = [3, 0, 7, 1, 6, 2, 5, 4]
    np.testing.assert_allclose(engine.classify(paths[:2], [labels[i] for i in order]), probabilities[:2, order], atol=1e-6)  # fmt: skip


def test_classify_bad_labels(engine, paths):
    with pytest.raises(InputError, match="invalid text at index 1") as info:
        engine.classify(paths[:1], ["a cat", 3])
    assert info.value.kind == "text"
    with pytest.raises(ValueError, match="at least one label"):
        engine.classify(paths[:1], [])
    with pytest.raises(TypeError, match="wrap a single label in a list"):
        engine.classify(paths[:1], "a cat")
    assert engine.classify([], ["a", "b"]).shape == (0, 2)


def test_lazy_engine_passes_the_calls_through():
    lazy = LazyEngine(V2_TINY, device="cpu", dtype="float32")
    vectors = np.eye(3, dtype=np.float32)
    np.testing.assert_allclose(lazy.similarity(vectors, vectors), np.eye(3))
    assert not lazy.loaded  # similarity needs no weights
    engine = load_engine(V2_TINY)
    np.testing.assert_allclose(lazy.encode_query(["a", "b"]), engine.encode_query(["a", "b"]), **EMB)
    np.testing.assert_allclose(lazy.encode_document(["a"]), engine.encode_document(["a"]), **EMB)
    np.testing.assert_allclose(lazy.encode(["a"]), engine.encode(["a"]), **EMB)
    np.testing.assert_allclose(np.stack(list(lazy.embed(["a"]))), engine.encode(["a"]), **EMB)
    np.testing.assert_allclose(np.stack(list(lazy.query_embed(["a"]))), engine.encode_query(["a"]), **EMB)
    np.testing.assert_allclose(np.stack(list(lazy.passage_embed(["a"]))), engine.encode(["a"]), **EMB)
    image = V2_TINY / "rgb_gradient_64x48.png"
    np.testing.assert_allclose(lazy.classify([image], ["a", "b"]), engine.classify([image], ["a", "b"]), atol=1e-6)


def test_cli_classify(capsys, paths, monkeypatch):
    monkeypatch.setenv("JINACLIP_MODEL", str(V2_TINY))
    images = [str(p) for p in paths[:2]]
    labels = ["a photo of a cat", "a photo of a dog", "a red circle"]
    expected = load_engine(V2_TINY).classify(images, labels)

    exact = ["--device", "cpu", "--dtype", "float32", "-q"]  # the engine compared with, whatever the defaults
    assert cli.main(["classify", *images, "--labels", *labels, "--json", *exact]) == 0
    found = json.loads(capsys.readouterr().out)
    assert [r["image"] for r in found] == images
    for result, row in zip(found, expected, strict=True):
        order = np.argsort(-row, kind="stable")
        assert [e["label"] for e in result["labels"]] == [labels[j] for j in order]  # most likely first
        np.testing.assert_allclose([e["probability"] for e in result["labels"]], row[order], atol=1e-6)

    assert cli.main(["classify", images[0], "--labels", *labels, "--top-k", "2", *exact]) == 0
    lines = capsys.readouterr().out.splitlines()
    order = np.argsort(-expected[0], kind="stable")
    assert lines == [cli.shown(images[0]), *(f"  {100 * expected[0][j]:6.2f}%  {labels[j]}" for j in order[:2])]

    assert cli.main(["classify", "missing.jpg", "--labels", "a", "-q"]) == 1
    assert "missing.jpg: no such file" in capsys.readouterr().err
    assert cli.main(["classify", images[0], "--labels", "a", "--top-k", "0", "-q"]) == 1
    assert "--top-k must be at least 1" in capsys.readouterr().err
