"""The request and response bodies of the server's routes, as pydantic models.

The routes read their bodies by hand (for error messages that name the item, in the shape
their clients read), so these models validate the parts of a request a route hands them
(:func:`~.http.validate`) and document every body in the OpenAPI schema: a route's response
models through FastAPI, its request body through :func:`request_body`. The models' names are
the schema's component names.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "BytesInput", "Classification", "ClassifyOptions", "ClassifyRequest", "ClassifyResponse", "ClipRequest",
    "ClipResponse", "Embedding", "EmbeddingError", "EmbeddingOptions", "EmbeddingRequest", "EmbeddingResponse",
    "ErrorResponse", "Format", "ImageInput", "LabelScore", "ModelCard", "ModelInfo", "ModelList", "OpenAIError",
    "StrictBody", "TextInput", "UrlInput", "Usage", "VectorConfig", "VectorRequest", "VectorResponse",
    "VectorsRequest", "VectorsResponse", "request_body",
]  # fmt: skip

#: the output formats of ``/v1/embeddings`` (the last four: ``jinaclip_integrations.engine.quantize``'s precisions)
Format = Literal["float", "base64", "int8", "uint8", "binary", "ubinary"]


class StrictBody(BaseModel):
    """A request body, or a part of one: no ``"1"`` -> 1 or 1 -> ``"1"``, and no unknown field
    (a 400 naming it: an option the server would silently ignore changes what the client
    gets). The fields clients send that mean nothing here are declared, and ignored."""

    model_config = ConfigDict(strict=True, extra="forbid")


# -- /v1/embeddings (Jina and OpenAI) -------------------------------------------------------------


class EmbeddingOptions(StrictBody):
    """Every field of a request but ``input`` (read by hand, for messages naming the item)."""

    model: str | None = Field(
        default=None,
        description="One of the models /v1/models lists (default: the first); with one model, any name.",
    )
    dimensions: int | None = Field(default=None, description="A Matryoshka size of the model, or its full size.")
    task: str | None = Field(
        default=None, description="retrieval.query (query instruction), retrieval.passage (none), or a model task."
    )
    normalized: bool = Field(default=True, description="L2-normalize (Jina).")
    embedding_type: Format | None = Field(
        default=None,
        description="Output format (Jina): float; base64 (little-endian float32); int8 (round(127 x / max|x|) per "
        "vector), uint8 (int8 + 128); ubinary (signs packed 8 per byte), binary (ubinary - 128).",
    )
    encoding_type: Format | None = Field(default=None, description="Legacy name of embedding_type.")
    encoding_format: Literal["float", "base64"] | None = Field(default=None, description="Output format (OpenAI).")
    truncate: bool | None = Field(default=None, description="Ignored: long texts are always truncated.")
    late_chunking: bool | None = Field(default=None, description="Not supported: must not be true.")
    return_multivector: bool | None = Field(default=None, description="Not supported: must not be true.")
    user: str | None = Field(default=None, description="Ignored (OpenAI).")
    modality: Literal["text", "image"] | None = Field(
        default=None, description="infinity's: 'image' makes every string of input an image (base64, data URI, URL)."
    )


class TextInput(StrictBody):
    text: str


class ImageInput(StrictBody):
    image: str = Field(
        description="An http(s) URL (if enabled), base64, or a data URI (data:image/...;base64, "
        "data:application/octet-stream;base64, or data:;base64,)."
    )


class UrlInput(StrictBody):
    url: str = Field(description="An http(s) image URL (if enabled).")


class BytesInput(StrictBody):
    bytes: str = Field(description="A base64 image.")


class EmbeddingRequest(EmbeddingOptions):
    """A Jina or OpenAI embeddings request."""

    input: str | list[str | TextInput | ImageInput | UrlInput | BytesInput] = Field(
        description="Texts, or texts and images; at most max_items."
    )


class Embedding(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | list[int] | str = Field(description="Floats, base64 float32, int8/uint8, or packed bits.")
    truncated: bool = Field(default=False, description="Present (true) only for a text cut at the model's length.")


class Usage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: Usage


class OpenAIError(BaseModel):
    message: str
    type: str
    param: str | None
    code: str | None


class EmbeddingError(BaseModel):
    """``error`` for OpenAI requests, ``detail`` for Jina ones, both when the API is not known."""

    error: OpenAIError | None = None
    detail: str | None = None


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


# -- /v1/classify (zero-shot image classification) -------------------------------------------------


class ClassifyOptions(StrictBody):
    """Every field of a classification request but ``input`` and ``labels`` (read by hand)."""

    model: str | None = Field(
        default=None,
        description="One of the models /v1/models lists (default: the first); with one model, any name.",
    )
    task: str | None = Field(
        default=None,
        description="The labels' task, as in /v1/embeddings (default: none, as CLIP's zero-shot labels).",
    )


class ClassifyRequest(ClassifyOptions):
    """Images, and the labels to score each of them against."""

    input: str | list[str | ImageInput | UrlInput | BytesInput] = Field(
        description="Images: each string is an image (base64, a data URI, or an http(s) URL if enabled)."
    )
    labels: list[str] = Field(description="The candidate labels, as texts (e.g. 'a photo of a cat').")


class LabelScore(BaseModel):
    label: str
    score: float = Field(description="The label's probability for the image; an image's scores sum to 1.")
    truncated: bool = Field(default=False, description="Present (true) only for a label cut at the model's length.")


class Classification(BaseModel):
    object: Literal["classification"] = "classification"
    index: int = Field(description="The image's position in input.")
    labels: list[LabelScore] = Field(description="Every label, most probable first.")


class ClassifyResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[Classification]
    model: str
    usage: Usage


# -- Weaviate's inference protocols ---------------------------------------------------------------


class ClipRequest(StrictBody):
    """multi2vec-clip /vectorize request; a missing or null list counts as empty."""

    texts: list[str] | None = Field(default=None, description="Texts, embedded without a task instruction.")
    images: list[str] | None = Field(default=None, description="Images as base64 (optionally a data:image URI).")


class ClipResponse(BaseModel):
    textVectors: list[list[float]] = Field(description="One vector per text, in request order.")
    imageVectors: list[list[float]] = Field(description="One vector per image, in request order.")


class VectorConfig(StrictBody):
    """text2vec-transformers per-request options (each may be missing)."""

    pooling_strategy: str | None = Field(default=None, description="Only masked_mean (the model mean-pools).")
    task_type: str | None = Field(default=None, description="'query' or 'passage'; ignored under /query and /passage.")
    dimensions: int | None = Field(default=None, description="Matryoshka size to truncate to.")


class VectorRequest(StrictBody):
    """text2vec-transformers /vectors request for one text."""

    text: str
    config: VectorConfig | None = None
    dims: int | None = Field(default=None, description="Ignored: Weaviate's client sends its answer's fields too.")
    vector: list[float] | None = Field(default=None, description="Ignored (Weaviate's client sends null).")
    error: str | None = Field(default=None, description="Ignored (Weaviate's client sends an empty string).")


class VectorsRequest(StrictBody):
    """text2vec-transformers /vectors batch request."""

    texts: list[str]
    config: VectorConfig | None = None


class VectorResponse(BaseModel):
    text: str
    vector: list[float]
    dim: int
    dims: int


class VectorsResponse(BaseModel):
    vectors: list[list[float]] = Field(description="One vector per text, in request order.")
    dims: int


class ErrorResponse(BaseModel):
    error: str


class ModelInfo(BaseModel):
    name: str
    embedding_dim: int
    matryoshka_dims: list[int]
    tasks: list[str]
    device: str
    dtype: str


# -- documenting request bodies --------------------------------------------------------------------


def request_body(*models: type[BaseModel]) -> dict[str, Any]:
    """A route's ``openapi_extra`` documenting a JSON request body of one of ``models`` (the
    routes read the body themselves, so FastAPI does not know it)."""
    schemas = [_inline_schema(model) for model in models]
    schema = schemas[0] if len(schemas) == 1 else {"anyOf": schemas}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def _inline_schema(model: type[BaseModel]) -> dict[str, Any]:
    """``model``'s JSON schema with nested models written out (OpenAPI cannot resolve ``$defs``)."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                return inline(defs[node["$ref"].rsplit("/", 1)[-1]])
            return {key: inline(value) for key, value in node.items()}
        if isinstance(node, list):
            return [inline(value) for value in node]
        return node

    return inline(schema)
