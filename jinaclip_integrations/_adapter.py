"""What the LangChain and LlamaIndex adapters resolve the same way: their engine and options."""

from __future__ import annotations

from collections.abc import Set
from dataclasses import dataclass

from .engine import JinaCLIPEngine, shared_engine
from .engine.engine import model_key

#: Task defaults of the adapters: queries get the query instruction, documents none.
DEFAULT_QUERY_TASK = "retrieval.query"


@dataclass(frozen=True)
class AdapterSettings:
    engine: JinaCLIPEngine
    model_name: str
    device: str
    dtype: str
    query_task: str | None
    document_task: str | None


def resolve_adapter(
    *,
    engine: JinaCLIPEngine | None,
    model_name: str,
    device: str | None,
    dtype: str | None,
    query_task: str | None,
    document_task: str | None,
    dimensions: int | None,
    explicit: Set[str],
) -> AdapterSettings:
    """The engine an adapter uses and its checked options.

    ``explicit`` names the options the user set. Given an ``engine``, the model name, device
    and dtype come from it (a different explicit ``model_name`` is an error), so the adapter
    describes the model it really runs. On a model without tasks (jina-clip-v1) the default
    query task is dropped, while a task the user asked for is an error, as is a task or a
    ``dimensions`` the model does not have.
    """
    if engine is None:
        engine = shared_engine(model_name, device=device, dtype=dtype)
    elif "model_name" in explicit and model_key(model_name) != model_key(engine.name_or_path):
        raise ValueError(f"model_name {model_name!r} does not match the engine's model {engine.name_or_path!r}")
    name = engine.name_or_path or model_name
    tasks = engine.tasks
    if not tasks and "query_task" not in explicit:
        query_task = None
    for option, task in (("query_task", query_task), ("document_task", document_task)):
        if task is not None and task not in tasks:
            raise ValueError(f"{option} {task!r} is not a task of {name}; choose one of {list(tasks)} or None")
    if dimensions is not None and dimensions not in engine.matryoshka_dims:
        raise ValueError(
            f"dimensions {dimensions} is not supported by {name}; choose one of {list(engine.matryoshka_dims)} or None"
        )
    return AdapterSettings(
        engine=engine,
        model_name=name,
        device=str(engine.device),
        dtype=str(engine.dtype).removeprefix("torch."),
        query_task=query_task,
        document_task=document_task,
    )
