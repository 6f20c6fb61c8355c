"""The Ray job's per-batch steps: read files into points, decode images, embed.

Each is a function of a pyarrow table (a batch of :mod:`.rows`) run by Ray Data on the workers; the write step is
the target's (:mod:`.targets`). They make what the single-process sync makes (:mod:`jinaclip_integrations.ingest.sync`):
a file becomes its points through :func:`~jinaclip_integrations.ingest.files.file_items`, texts are embedded up to
the chunk length and images through the same preprocessing, so IDs, payloads and vectors are the same.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import InputError
from ..ingest.chunking import ChunkOptions
from ..ingest.files import file_items, read_source
from .rows import EMBEDDED, EXISTING, FAILED, FILE, NEW, POINT, READ, UNCHANGED, list_column, read_schema, set_column

if TYPE_CHECKING:
    import pyarrow as pa


def read_files(table: pa.Table, *, filesystem: Any, spec: Any, options: ChunkOptions, removes: bool) -> pa.Table:
    """The read stage: each file of a batch of file rows (``source``, ``path``, ``size``, ``mtime_ns``,
    ``position``, ``stored``) -> its file row and its point rows.

    ``stored`` lists the IDs the target holds for the source (null: none, not even an empty version). A file whose
    points are all stored, with nothing else to remove (``removes``: the target deletes old versions), is
    ``unchanged`` (touched, not changed) and has no point rows; the other files' stored points are ``existing``.
    ``spec`` is the engine without weights (its ``token_offsets`` cut the chunks); ``filesystem`` the pyarrow
    filesystem of the paths (None: local paths).
    """
    import pyarrow as pa

    out: list[dict[str, Any]] = []
    columns = ("source", "path", "size", "mtime_ns", "position", "stored")
    for source, path, size, mtime_ns, position, stored in zip(*(table.column(c).to_pylist() for c in columns), strict=True):  # fmt: skip
        try:
            try:
                with open(path, "rb") if filesystem is None else filesystem.open_input_stream(path) as stream:
                    data = read_source(stream.read, source, position)
            except OSError as exc:
                raise InputError(position, f"cannot read {source}: {exc.strerror or exc}", kind="file") from None
            version, items, warnings = file_items(source, data, offsets=spec.token_offsets, options=options,
                                                  size=size, mtime_ns=mtime_ns, index=position)  # fmt: skip
        except (InputError, ImportError) as exc:
            out.append({"kind": FILE, "source": source, "status": FAILED, "reason": getattr(exc, "reason", None) or str(exc)})  # fmt: skip
            continue
        known = set(stored or ())
        ids = {item.id for item in items}
        if stored is not None and ids <= known and (not removes or ids == known):
            out.append({"kind": FILE, "source": source, "status": UNCHANGED})
            continue
        info = {"file_hash": version.file_hash, "chunking": version.chunking, "parts": len(items),
                "chunks": sum(item.modality == "text" for item in items), "warnings": warnings}  # fmt: skip
        out.append({"kind": FILE, "source": source, "status": READ, "info": json.dumps(info)})
        for item in items:
            text, data = (item.content, None) if item.modality == "text" else (None, item.content)
            out.append({"kind": POINT, "source": source, "status": EXISTING if item.id in known else NEW,
                        "where": item.where, "id": item.id, "modality": item.modality, "text": text,
                        "payload": json.dumps(item.payload, ensure_ascii=False), "data": data})  # fmt: skip
    return pa.Table.from_pylist(out, schema=read_schema())


def preprocess_images(table: pa.Table, *, preprocessor: Any, max_pixels: int | None) -> pa.Table:
    """The decode stage: the new images' bytes -> ``pixels`` (uint8 crops, as bytes); a corrupt one fails."""
    import pyarrow as pa

    status, reason = table.column("status").to_pylist(), table.column("reason").to_pylist()
    kind, modality, data = table.column("kind").to_pylist(), table.column("modality").to_pylist(), table.column("data")
    pixels: list[bytes | None] = [None] * len(status)
    for i, s in enumerate(status):
        if kind[i] == POINT and s == NEW and modality[i] == "image":
            try:
                pixels[i] = preprocessor.crop(data[i].as_py(), i, max_pixels).tobytes()
            except InputError as exc:
                status[i], reason[i] = FAILED, exc.reason
    table = set_column(set_column(table.drop_columns(["data"]), "status", status, pa.string()), "reason", reason, pa.string())  # fmt: skip
    return set_column(table, "pixels", pixels, pa.large_binary())


class Embedder:
    """An embedding actor: loads the engine once, then embeds the new points of each batch into a ``vector`` column
    (full size, normalized, as the single-process path): texts read up to ``max_length`` tokens (the chunk length
    and the two special tokens), images from their crops."""

    def __init__(self, model_name: str, device: str | None, dtype: str | None, max_length: int) -> None:
        from ..engine import JinaCLIPEngine

        self.engine = JinaCLIPEngine.from_pretrained(model_name, device=device, dtype=dtype, show_progress=False)
        self.max_length = max_length

    def __call__(self, table: pa.Table) -> pa.Table:
        import pyarrow as pa

        engine = self.engine
        kind, status = table.column("kind").to_pylist(), table.column("status").to_pylist()
        modality = table.column("modality").to_pylist()
        new = [kind[i] == POINT and s == NEW for i, s in enumerate(status)]
        texts = [i for i, hit in enumerate(new) if hit and modality[i] == "text"]
        images = [i for i, hit in enumerate(new) if hit and modality[i] == "image"]
        vectors = np.zeros((len(status), engine.embedding_dim), dtype=np.float32)
        if texts:
            column = table.column("text")
            vectors[texts] = engine.encode_text([column[i].as_py() for i in texts], max_length=self.max_length, show_progress=False)  # fmt: skip
        if images:
            column, size = table.column("pixels"), engine.preprocessor.size
            crops = np.stack([np.frombuffer(column[i].as_py(), np.uint8) for i in images])
            vectors[images] = engine.encode_pixels(crops.reshape(-1, size, size, 3))
        embedded = np.zeros(len(status), dtype=bool)
        embedded[texts + images] = True
        status = [EMBEDDED if hit else s for s, hit in zip(status, embedded, strict=True)]
        table = set_column(table.drop_columns(["pixels"]), "status", status, pa.string())
        return set_column(table, "vector", list_column(vectors, ~embedded))
