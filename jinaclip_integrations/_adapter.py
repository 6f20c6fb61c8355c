"""What the LangChain and LlamaIndex adapters resolve the same way: their engine and options."""

from __future__ import annotations

from typing import Any

from .engine import JinaCLIPEngine, model_key, shared_engine


def configure_adapter(adapter: Any, engine: JinaCLIPEngine | None) -> JinaCLIPEngine:
    """Resolve the engine of a LangChain or LlamaIndex adapter and check its options.

    ``adapter`` is a pydantic model with the fields ``model_name``, ``device``, ``dtype``,
    ``query_task``, ``document_task`` and ``dimensions``; its ``model_fields_set`` tells which
    the user set. Given an ``engine``, the model name, device and dtype are rewritten to
    describe it (a different explicit ``model_name`` is an error), so the adapter describes
    the model it really runs. On a model without tasks (jina-clip-v1) the default query task
    is dropped, while a task the user asked for is an error, as is a task or a ``dimensions``
    the model does not have. Returns the engine.
    """
    explicit = adapter.model_fields_set
    if engine is None:
        engine = shared_engine(adapter.model_name, device=adapter.device, dtype=adapter.dtype)
    elif "model_name" in explicit and model_key(adapter.model_name) != model_key(engine.name_or_path):
        raise ValueError(f"model_name {adapter.model_name!r} does not match the engine's model {engine.name_or_path!r}")
    name = engine.name_or_path or adapter.model_name
    tasks = engine.tasks
    if "query_task" not in explicit:
        adapter.query_task = engine.query_task
    for option in ("query_task", "document_task"):
        task = getattr(adapter, option)
        if task is not None and task not in tasks:
            raise ValueError(f"{option} {task!r} is not a task of {name}; choose one of {list(tasks)} or None")
    dims = engine.matryoshka_dims
    if adapter.dimensions is not None and adapter.dimensions not in dims:
        raise ValueError(
            f"dimensions {adapter.dimensions} is not supported by {name}; choose one of {list(dims)} or None"
        )
    adapter.model_name = name
    adapter.device = str(engine.device)
    adapter.dtype = str(engine.dtype).removeprefix("torch.")
    return engine
