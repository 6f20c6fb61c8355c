"""The published ``config.json`` and ``preprocessor_config.json`` as small frozen dataclasses.

Pure parsing: no file or network access happens here (``weights.py`` finds the files). The one
subtlety is the text tower: the published configs do not list its sizes (jina-clip-v1's
``hf_model_config_kwargs`` holds only ``use_flash_attn``). The reference implementation builds the
tower's config from the config of the model named in ``text_config.hf_model_name_or_path``
(jina-embeddings-v3 for v2, jina-bert-flash-implementation for v1), updated by
``text_config.hf_model_config_kwargs``; :func:`parse_config` does the same, given that base
config (or ``None`` when it could not be found, in which case the built-in values below for the
known base models are used). The base model also selects the architecture: JinaBERT with ALiBi
biases (:class:`JinaBertConfig`) or XLM-RoBERTa with rotary positions (:class:`XLMRobertaConfig`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from types import MappingProxyType
from typing import Any

from ..errors import CheckpointError

#: The sizes of ``jinaai/jina-embeddings-v3``'s ``config.json``, so that a published jina-clip-v2
#: checkpoint loads offline when that model is not in the local cache. Its LoRA and task fields
#: are left out on purpose: jina-clip-v2's ``hf_model_config_kwargs`` always set them.
JINA_EMBEDDINGS_V3_TEXT_CONFIG: Mapping[str, Any] = MappingProxyType(
    {
        "vocab_size": 250002,
        "hidden_size": 1024,
        "num_hidden_layers": 24,
        "num_attention_heads": 16,
        "intermediate_size": 4096,
        "hidden_act": "gelu",
        "max_position_embeddings": 8194,
        "type_vocab_size": 1,
        "layer_norm_eps": 1e-5,
        "pad_token_id": 1,
        "position_embedding_type": "rotary",
        "rotary_emb_base": 20000.0,
    }
)

JINA_BERT_NAME = "jinaai/jina-bert-flash-implementation"

#: The sizes of ``jinaai/jina-bert-flash-implementation``'s ``config.json`` (jina-clip-v1's text
#: tower), for the same reason: jina-clip-v1's ``hf_model_config_kwargs`` set none of them.
JINA_BERT_TEXT_CONFIG: Mapping[str, Any] = MappingProxyType(
    {
        "vocab_size": 30528,
        "hidden_size": 768,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "intermediate_size": 3072,
        "hidden_act": "gelu",
        "max_position_embeddings": 8192,
        "type_vocab_size": 2,
        "layer_norm_eps": 1e-12,
        "pad_token_id": 0,
        "position_embedding_type": "alibi",
        "mlp_type": "glu",
    }
)

BUILTIN_TEXT_CONFIGS: Mapping[str, Mapping[str, Any]] = MappingProxyType(
    {
        "jinaai/jina-embeddings-v3": JINA_EMBEDDINGS_V3_TEXT_CONFIG,
        JINA_BERT_NAME: JINA_BERT_TEXT_CONFIG,
    }
)

_NO_INSTRUCTIONS: Mapping[str, str] = MappingProxyType({})

_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class _TextTowerConfig:
    """What both text towers' configs have: the BERT-family sizes, and ``pad_token_id``,
    ``max_position_embeddings`` and ``embed_dim``, which the engine reads from either."""

    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    hidden_act: str
    #: The longest input the model was trained for (JinaBERT's ALiBi itself has no table limiting it).
    max_position_embeddings: int
    type_vocab_size: int
    layer_norm_eps: float
    pad_token_id: int
    embed_dim: int


@dataclass(frozen=True)
class XLMRobertaConfig(_TextTowerConfig):
    """The XLM-RoBERTa-with-RoPE text tower (the architecture of jina-embeddings-v3)."""

    rotary_emb_base: float
    lora_adaptations: tuple[str, ...]
    lora_rank: int
    lora_alpha: float
    default_lora_task: str | None
    task_instructions: Mapping[str, str]
    default_instruction_task: str | None

    @property
    def lora_scaling(self) -> float:
        return self.lora_alpha / self.lora_rank

    def __reduce__(self) -> tuple:  # picklable (to Ray workers): the read-only mapping as a dict
        state = {f.name: getattr(self, f.name) for f in fields(self)}
        return _unpickle_xlm_roberta_config, (dict(state, task_instructions=dict(self.task_instructions)),)

    @property
    def active_adapter(self) -> int | None:
        """Index of the LoRA adapter that is always applied (the reference applies
        ``default_lora_task``'s adapter whatever the ``task`` argument), or None."""
        if self.default_lora_task is None:
            return None
        return self.lora_adaptations.index(self.default_lora_task)


def _unpickle_xlm_roberta_config(state: dict[str, Any]) -> XLMRobertaConfig:
    return XLMRobertaConfig(**dict(state, task_instructions=MappingProxyType(state["task_instructions"])))


@dataclass(frozen=True)
class JinaBertConfig(_TextTowerConfig):
    """The JinaBERT text tower of jina-clip-v1: BERT with ALiBi attention biases instead of
    position embeddings, a gated-GELU feed-forward and post-LN blocks.

    Its ``task_instructions`` and ``default_instruction_task`` are empty, so nothing outside
    the tower needs to know which text config it has.
    """

    @property
    def task_instructions(self) -> Mapping[str, str]:
        """jina-clip-v1 was trained without task instructions: none."""
        return _NO_INSTRUCTIONS

    @property
    def default_instruction_task(self) -> None:
        return None


@dataclass(frozen=True)
class VisionConfig:
    """The EVA02 vision tower, as ``vision_config`` describes it."""

    width: int
    layers: int
    head_width: int
    mlp_ratio: float
    patch_size: int
    image_size: int
    qkv_bias: bool
    subln: bool
    rope_embeddings: bool
    intp_freq: bool
    pt_hw_seq_len: int
    embed_dim: int
    layer_norm_eps: float = 1e-6

    @property
    def num_heads(self) -> int:
        return self.width // self.head_width

    @property
    def mlp_hidden(self) -> int:
        return int(self.width * self.mlp_ratio)

    @property
    def grid_size(self) -> int:
        return self.image_size // self.patch_size

    @property
    def rope_grid(self) -> int:
        """Side of the RoPE position table: the patch grid when frequencies are interpolated
        (v2), else the pre-training grid ``pt_hw_seq_len`` (v1), which must equal the grid."""
        return self.grid_size if self.intp_freq else self.pt_hw_seq_len


@dataclass(frozen=True)
class PreprocessConfig:
    """Image preprocessing of ``preprocessor_config.json`` (JinaCLIPImageProcessor)."""

    size: int
    mean: tuple[float, float, float] = _CLIP_MEAN
    std: tuple[float, float, float] = _CLIP_STD
    interpolation: str = "bicubic"


@dataclass(frozen=True)
class JinaCLIPConfig:
    """The whole model: both towers, the Matryoshka dimensions and the preprocessing."""

    text: XLMRobertaConfig | JinaBertConfig
    vision: VisionConfig
    preprocess: PreprocessConfig
    matryoshka_dims: tuple[int, ...]
    truncate_dim: int | None

    @property
    def tasks(self) -> tuple[str, ...]:
        return tuple(self.text.task_instructions)


def _require(d: Mapping[str, Any], key: str, where: str) -> Any:
    if key not in d:
        raise CheckpointError(f"{where} has no {key!r}")
    return d[key]


def _unsupported(where: str, key: str, value: Any) -> CheckpointError:
    return CheckpointError(f"{where}.{key}={value!r} is not supported by this engine")


def _text_embed_dim(text_config: Mapping[str, Any], hidden: int) -> int:
    """``text_config.embed_dim``, which must be the tower's width: the text projection is the
    identity in both published models, and the only kind supported."""
    if text_config.get("proj_type") is not None:
        raise _unsupported("text_config", "proj_type", text_config["proj_type"])
    if text_config.get("pooler_type", "mean_pooler") != "mean_pooler":
        raise _unsupported("text_config", "pooler_type", text_config["pooler_type"])
    embed_dim = int(text_config.get("embed_dim", hidden))
    if embed_dim != hidden:
        raise CheckpointError(
            f"text_config.embed_dim={embed_dim} differs from hidden_size={hidden}; a text projection is not supported"
        )
    return embed_dim


def parse_text_config(
    text_config: Mapping[str, Any], base: Mapping[str, Any] | None
) -> XLMRobertaConfig | JinaBertConfig:
    """Build the text tower's config the way the reference does, for the architecture the
    base model is: JinaBERT for ``jinaai/jina-bert-flash-implementation`` or any merged config
    with ``position_embedding_type`` ``"alibi"``, else XLM-RoBERTa with rotary positions.

    Args:
        text_config: ``config.json``'s ``text_config`` section.
        base: the ``config.json`` of the model named by ``hf_model_name_or_path`` if it was
            found locally, else None. The built-in values for that name, if any, fill what it
            lacks; ``hf_model_config_kwargs`` override both.
    """
    name = text_config.get("hf_model_name_or_path")
    builtin = BUILTIN_TEXT_CONFIGS.get(name, {})
    merged = {**builtin, **(base or {}), **text_config.get("hf_model_config_kwargs", {})}
    where = f"text config (base {name!r} + hf_model_config_kwargs)"
    # the jina-bert base config is not known to name its (only) position scheme, so its name counts too
    if name == JINA_BERT_NAME or merged.get("position_embedding_type") == "alibi":
        return _parse_jina_bert_config(text_config, merged, where)
    return _parse_xlm_roberta_config(text_config, merged, where)


def _parse_jina_bert_config(text_config: Mapping[str, Any], merged: Mapping[str, Any], where: str) -> JinaBertConfig:
    """jina-clip-v1's JinaBERT tower; options whose weights or maths it does not have are refused."""
    for key, supported in (("mlp_type", "glu"), ("hidden_act", "gelu")):
        if merged.get(key, supported) != supported:
            raise _unsupported(where, key, merged[key])
    if merged.get("use_qk_norm"):
        raise _unsupported(where, "use_qk_norm", merged["use_qk_norm"])
    if any(side != -1 for side in merged.get("window_size") or ()):  # (-1, -1): attend everywhere
        raise _unsupported(where, "window_size", merged["window_size"])
    for key in ("default_instruction_task", "default_lora_task"):  # JinaBERT has no tasks to default to
        if text_config.get(key) is not None:
            raise _unsupported("text_config", key, text_config[key])
    hidden = int(_require(merged, "hidden_size", where))
    heads = int(_require(merged, "num_attention_heads", where))
    if hidden % heads:
        raise CheckpointError(f"{where}: hidden_size={hidden} is not a multiple of num_attention_heads={heads}")
    return JinaBertConfig(
        vocab_size=int(_require(merged, "vocab_size", where)),
        hidden_size=hidden,
        num_hidden_layers=int(_require(merged, "num_hidden_layers", where)),
        num_attention_heads=heads,
        intermediate_size=int(_require(merged, "intermediate_size", where)),
        hidden_act="gelu",
        max_position_embeddings=int(_require(merged, "max_position_embeddings", where)),
        type_vocab_size=int(_require(merged, "type_vocab_size", where)),
        layer_norm_eps=float(_require(merged, "layer_norm_eps", where)),
        pad_token_id=int(_require(merged, "pad_token_id", where)),
        embed_dim=_text_embed_dim(text_config, hidden),
    )


def _parse_xlm_roberta_config(
    text_config: Mapping[str, Any], merged: Mapping[str, Any], where: str
) -> XLMRobertaConfig:
    """jina-clip-v2's XLM-RoBERTa-with-RoPE tower (jina-embeddings-v3), with its LoRA adapters
    and task instructions."""
    if merged.get("position_embedding_type", "rotary") != "rotary":
        raise _unsupported(where, "position_embedding_type", merged["position_embedding_type"])
    hidden = int(_require(merged, "hidden_size", where))
    lora_adaptations = tuple(merged.get("lora_adaptations") or ())
    default_lora_task = text_config.get("default_lora_task")
    if default_lora_task is not None and default_lora_task not in lora_adaptations:
        raise CheckpointError(
            f"text_config.default_lora_task {default_lora_task!r} is not one of lora_adaptations "
            f"{list(lora_adaptations)}"
        )
    instructions = dict(merged.get("task_instructions") or {})
    default_task = text_config.get("default_instruction_task")
    if default_task is not None and default_task not in instructions:
        raise CheckpointError(f"text_config.default_instruction_task {default_task!r} has no task instruction")
    return XLMRobertaConfig(
        vocab_size=int(_require(merged, "vocab_size", where)),
        hidden_size=hidden,
        num_hidden_layers=int(_require(merged, "num_hidden_layers", where)),
        num_attention_heads=int(_require(merged, "num_attention_heads", where)),
        intermediate_size=int(_require(merged, "intermediate_size", where)),
        hidden_act=str(merged.get("hidden_act", "gelu")),
        max_position_embeddings=int(_require(merged, "max_position_embeddings", where)),
        type_vocab_size=int(merged.get("type_vocab_size", 1)),
        layer_norm_eps=float(merged.get("layer_norm_eps", 1e-5)),
        pad_token_id=int(merged.get("pad_token_id", 1)),
        rotary_emb_base=float(_require(merged, "rotary_emb_base", where)),
        lora_adaptations=lora_adaptations,
        lora_rank=int(_require(merged, "lora_rank", where)) if lora_adaptations else 0,
        lora_alpha=float(_require(merged, "lora_alpha", where)) if lora_adaptations else 0.0,
        default_lora_task=default_lora_task,
        task_instructions=MappingProxyType(instructions),
        default_instruction_task=default_task,
        embed_dim=_text_embed_dim(text_config, hidden),
    )


def parse_vision_config(vision_config: Mapping[str, Any]) -> VisionConfig:
    """Build the EVA02 tower's config, refusing options whose weights this engine cannot run."""
    where = "vision_config"
    for key, supported in (("post_norm", False), ("naive_swiglu", True)):
        if bool(vision_config.get(key, supported)) != supported:
            raise _unsupported(where, key, vision_config[key])
    for key in ("ls_init_value", "proj_type"):
        if vision_config.get(key) is not None:
            raise _unsupported(where, key, vision_config[key])
    width = int(_require(vision_config, "width", where))
    cfg = VisionConfig(
        width=width,
        layers=int(_require(vision_config, "layers", where)),
        head_width=int(vision_config.get("head_width", 64)),
        mlp_ratio=float(_require(vision_config, "mlp_ratio", where)),
        patch_size=int(_require(vision_config, "patch_size", where)),
        image_size=int(_require(vision_config, "image_size", where)),
        qkv_bias=bool(vision_config.get("qkv_bias", True)),
        subln=bool(vision_config.get("subln", True)),
        rope_embeddings=bool(vision_config.get("rope_embeddings", True)),
        intp_freq=bool(vision_config.get("intp_freq", False)),
        pt_hw_seq_len=int(vision_config.get("pt_hw_seq_len", 16)),
        embed_dim=int(vision_config.get("embed_dim", width)),
    )
    if cfg.width % cfg.head_width:
        raise CheckpointError(f"{where}.width={width} is not a multiple of head_width={cfg.head_width}")
    if cfg.embed_dim != cfg.width:
        raise CheckpointError(
            f"{where}.embed_dim={cfg.embed_dim} differs from width={cfg.width}; a vision projection is not supported"
        )
    if cfg.rope_embeddings and cfg.rope_grid != cfg.grid_size:
        raise CheckpointError(
            f"{where}: RoPE table side {cfg.rope_grid} (pt_hw_seq_len, intp_freq false) does not "
            f"match the patch grid {cfg.grid_size} = image_size // patch_size"
        )
    return cfg


def parse_preprocess_config(preprocessor: Mapping[str, Any] | None, image_size: int) -> PreprocessConfig:
    """``preprocessor_config.json`` (or the reference's defaults when the file is absent)."""
    if preprocessor is None:
        return PreprocessConfig(size=image_size)
    mode = preprocessor.get("resize_mode", "shortest")
    if mode != "shortest":
        raise _unsupported("preprocessor_config", "resize_mode", mode)
    size = preprocessor.get("size", image_size)
    if isinstance(size, Mapping):  # HF-style {"shortest_edge": n} or {"height": n, "width": n}
        size = size.get("shortest_edge", size.get("height"))
    return PreprocessConfig(
        size=int(size),
        mean=tuple(float(x) for x in preprocessor.get("mean", _CLIP_MEAN)),
        std=tuple(float(x) for x in preprocessor.get("std", _CLIP_STD)),
        interpolation=str(preprocessor.get("interpolation", "bicubic")),
    )


def parse_config(
    config: Mapping[str, Any],
    *,
    base_text_config: Mapping[str, Any] | None = None,
    preprocessor: Mapping[str, Any] | None = None,
) -> JinaCLIPConfig:
    """Parse a published jina-clip ``config.json`` (plus its preprocessor config)."""
    if config.get("model_type") != "jina_clip":
        raise CheckpointError(f"config.json has model_type {config.get('model_type')!r}, expected 'jina_clip'")
    if config.get("add_projections"):
        raise _unsupported("config", "add_projections", config["add_projections"])
    text = parse_text_config(_require(config, "text_config", "config.json"), base_text_config)
    vision = parse_vision_config(_require(config, "vision_config", "config.json"))
    if text.embed_dim != vision.embed_dim:
        raise CheckpointError(f"text embed_dim {text.embed_dim} and vision embed_dim {vision.embed_dim} differ")
    dims = tuple(int(d) for d in config.get("matryoshka_dimensions") or ())
    bad = [d for d in dims if not 0 < d <= text.embed_dim]
    if bad:
        raise CheckpointError(f"matryoshka_dimensions {bad} are outside 1..{text.embed_dim}")
    truncate_dim = config.get("truncate_dim")
    return JinaCLIPConfig(
        text=text,
        vision=vision,
        preprocess=parse_preprocess_config(preprocessor, vision.image_size),
        matryoshka_dims=dims,
        truncate_dim=None if truncate_dim is None else int(truncate_dim),
    )
