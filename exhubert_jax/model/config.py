"""HuBERT configuration: a frozen dataclass with presets and HF config conversion."""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import re
from exhubert_jax.data.sources.labels import EMOTION_CLASSES, LABEL_SPACES, label_field  # noqa: F401 - the model's
from exhubert_jax.errors import ExhubertError
from exhubert_jax.model.expansion_layout import LAYOUTS, STYLES

# The 6 ExHuBERT classes (arousal x valence), in the model's output order.
SUPPORTED_ACTIVATIONS = ("gelu", "gelu_new", "gelu_pytorch_tanh", "relu", "silu", "swish")
EXPANSION_STYLES = STYLES  # the layouts of exhubert_jax.model.expansion_layout
# How audio reaches the model: whole utterances with an attention mask (ours), or the model card's protocol of every
# clip padded or cropped to exactly 3 s with no attention mask (so pooling also averages the padding).
INPUT_MODES = ("masked", "card")


# HF config keys that carry no meaning for the encoder + classification head (metadata, CTC, tokens, legacy names).
IGNORED_HF_KEYS = frozenset(
    """
    _name_or_path architectures model_type transformers_version torch_dtype dtype return_dict output_hidden_states
    output_attentions use_return_dict chunk_size_feed_forward is_encoder_decoder is_decoder add_cross_attention
    problem_type vocab_size pad_token_id bos_token_id eos_token_id ctc_loss_reduction ctc_zero_infinity
    num_feat_extract_layers initializer_range gradient_checkpointing feat_extract_dropout hidden_dropout_prob
    mask_time_selection mask_time_other mask_time_no_overlap mask_time_min_space mask_channel_prob
    mask_channel_length mask_channel_selection mask_channel_other mask_channel_no_overlap mask_channel_min_space
    tie_word_embeddings tokenizer_class prefix task_specific_params finetuning_task decoder_start_token_id
    sep_token_id torchscript pruned_heads tie_encoder_decoder cross_attention_hidden_size label2id
    tf_legacy_loss use_bfloat16 _attn_implementation_autoset _attn_implementation attn_implementation
    conv_pos_batch_norm add_adapter adapter_attn_dim output_hidden_size adapter_kernel_size adapter_stride
    num_adapter_layers tdnn_dim tdnn_kernel tdnn_dilation xvector_output_dim proj_codevector_dim
    num_codevectors_per_group num_codevector_groups contrastive_logits_temperature num_negatives codevector_dim
    diversity_loss_weight feat_quantizer_dropout do_sample temperature max_length min_length
    """.split()
)

# Keys that change the computation in ways we do not implement whenever they are set (not None/False).
UNSUPPORTED_IF_SET = ("conv_pos_batch_norm", "add_adapter", "adapter_attn_dim")


class ConfigError(ExhubertError, ValueError):
    """A configuration we cannot honour exactly."""


@dataclasses.dataclass(frozen=True)
class HubertConfig:
    """HuBERT encoder + sequence-classification head, mirroring transformers' HubertConfig fields."""

    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout: float = 0.1
    activation_dropout: float = 0.1
    attention_dropout: float = 0.1
    feat_proj_layer_norm: bool = True
    feat_proj_dropout: float = 0.0
    final_dropout: float = 0.1
    layerdrop: float = 0.1
    layer_norm_eps: float = 1e-5
    feat_extract_norm: str = "group"
    feat_extract_activation: str = "gelu"
    conv_dim: tuple[int, ...] = (512,) * 7
    conv_stride: tuple[int, ...] = (5, 2, 2, 2, 2, 2, 2)
    conv_kernel: tuple[int, ...] = (10, 3, 3, 3, 3, 2, 2)
    conv_bias: bool = False
    num_conv_pos_embeddings: int = 128
    num_conv_pos_embedding_groups: int = 16
    do_stable_layer_norm: bool = False
    apply_spec_augment: bool = True
    mask_time_prob: float = 0.05
    mask_time_length: int = 10
    mask_time_min_masks: int = 2
    mask_feature_prob: float = 0.0
    mask_feature_length: int = 10
    mask_feature_min_masks: int = 0
    use_weighted_layer_sum: bool = False
    classifier_proj_size: int = 256
    num_labels: int = 6  # 0: no classifier (a dimensional-only model)
    label_names: tuple[str, ...] | None = None
    dimensions: tuple[str, ...] = ()  # regression outputs (e.g. arousal, valence, dominance), each on [0, 1]
    expansion_copies: int = 0
    expansion_style: str | None = None
    adapters: tuple[str, ...] = ()  # canonical adapter specs in the order applied (exhubert_jax.adapters)

    def __post_init__(self):
        for name in ("conv_dim", "conv_stride", "conv_kernel"):
            object.__setattr__(self, name, tuple(int(v) for v in getattr(self, name)))
        if self.label_names is not None:
            object.__setattr__(self, "label_names", tuple(self.label_names))
        object.__setattr__(self, "adapters", tuple(self.adapters))
        object.__setattr__(self, "dimensions", tuple(self.dimensions))
        self.validate()

    def validate(self) -> None:
        """Raise ConfigError for any field we cannot compute exactly."""
        if not len(self.conv_dim) == len(self.conv_stride) == len(self.conv_kernel):
            raise ConfigError(
                f"conv_dim, conv_stride and conv_kernel must have equal lengths, got "
                f"{len(self.conv_dim)}, {len(self.conv_stride)}, {len(self.conv_kernel)}"
            )
        if self.feat_extract_norm not in ("group", "layer"):
            raise ConfigError(f"feat_extract_norm must be 'group' or 'layer', got {self.feat_extract_norm!r}")
        for name in ("hidden_act", "feat_extract_activation"):
            if getattr(self, name) not in SUPPORTED_ACTIVATIONS:
                raise ConfigError(f"{name}={getattr(self, name)!r} is not supported; use one of {SUPPORTED_ACTIVATIONS}")
        if self.hidden_size % self.num_attention_heads:
            raise ConfigError(f"hidden_size {self.hidden_size} is not divisible by num_attention_heads "
                              f"{self.num_attention_heads}")
        if self.hidden_size % self.num_conv_pos_embedding_groups:
            raise ConfigError(f"hidden_size {self.hidden_size} is not divisible by num_conv_pos_embedding_groups "
                              f"{self.num_conv_pos_embedding_groups}")
        if self.num_labels < 0 or (self.num_labels == 0 and not self.dimensions):
            raise ConfigError(f"num_labels must be at least 1 (or 0 with dimensions), got {self.num_labels}")
        if len(set(self.dimensions)) != len(self.dimensions) or not all(self.dimensions):
            raise ConfigError(f"dimensions must be distinct non-empty names, got {list(self.dimensions)}")
        if self.label_names is not None and len(self.label_names) != self.num_labels:
            raise ConfigError(f"label_names has {len(self.label_names)} entries but num_labels is {self.num_labels}")
        if self.expansion_copies < 0:
            raise ConfigError(f"expansion_copies must be >= 0, got {self.expansion_copies}")
        if self.expansion_copies and self.expansion_style not in LAYOUTS:
            raise ConfigError(f"expansion_style must be one of {tuple(LAYOUTS)}, got {self.expansion_style!r}")
        if not self.expansion_copies and self.expansion_style is not None:
            raise ConfigError("expansion_style is set but expansion_copies is 0")
        check_adapters(self)

    @property
    def head_dim(self) -> int:
        """Size of one attention head."""
        return self.hidden_size // self.num_attention_heads

    @property
    def total_layers(self) -> int:
        """Encoder layers actually run: originals plus expansion copies."""
        return self.num_hidden_layers * (1 + self.expansion_copies)

    def replace(self, **changes: Any) -> "HubertConfig":
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable dict of all fields."""
        out = dataclasses.asdict(self)
        for k, v in out.items():
            if isinstance(v, tuple):
                out[k] = list(v)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "HubertConfig":
        """Inverse of to_dict; unknown keys are an error naming them."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(f"unknown exhubert-jax config field(s): {', '.join(unknown)}")
        return cls(**data)

    def save(self, path: str | os.PathLike) -> None:
        """Write this config as JSON."""
        with open(path, "w") as f:
            json.dump({"format": "exhubert-jax", **self.to_dict()}, f, indent=2)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "HubertConfig":
        """Read a config written by save(), or an HF HuBERT config.json."""
        with open(path) as f:
            data = json.load(f)
        if data.pop("format", None) == "exhubert-jax":
            return cls.from_dict(data)
        return from_hf_config(data)


SPEC_METHOD = re.compile(r"^[a-z][a-z0-9_]*$")


def split_spec(text: str, what: str = "adapter spec", name: str = "method name") -> tuple[str, dict[str, str]]:
    """'lora:r=8,targets=q+v' -> ('lora', {'r': '8', 'targets': 'q+v'}): the syntax alone; what a method and its
    options mean is the adapter registry's (exhubert_jax.adapters.registry); training's augmentation specs share
    the syntax (`what` and `name` word its messages)."""
    method, _, rest = text.strip().partition(":")
    if not SPEC_METHOD.match(method):
        raise ConfigError(f"{what} {text!r}: {method!r} is not a {name} (lower-case letters, digits, _)")
    options: dict[str, str] = {}
    for item in filter(None, (s.strip() for s in rest.split(","))):
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise ConfigError(f"{what} {text!r}: expected key=value, got {item!r}")
        if key.strip() in options:
            raise ConfigError(f"{what} {text!r}: option {key.strip()!r} given twice")
        options[key.strip()] = value.strip()
    return method, options


def check_adapters(config: "HubertConfig") -> None:
    """Adapters, by syntax alone: well-formed specs, each method at most once, bbe first and matching the expansion
    fields. Whether a method exists and its options are valid is checked when the adapters are installed."""
    methods = []
    for spec in config.adapters:
        try:
            method, options = split_spec(spec)
        except ConfigError as e:
            raise ConfigError(f"adapters entry {spec!r}: {e}") from None
        if method in methods:
            raise ConfigError(f"adapters: method {method!r} appears twice in {list(config.adapters)}")
        if method == "bbe" and (methods or (options.get("copies"), options.get("style")) !=
                                (str(config.expansion_copies), config.expansion_style)):
            raise ConfigError(f"adapters entry {spec!r} must come first and match expansion_copies="
                              f"{config.expansion_copies}, expansion_style={config.expansion_style!r}")
        methods.append(method)


PRESETS: dict[str, dict[str, Any]] = {
    "tiny": dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                 conv_dim=(32, 32, 32), conv_stride=(5, 4, 4), conv_kernel=(10, 4, 4), num_conv_pos_embeddings=16,
                 num_conv_pos_embedding_groups=4, classifier_proj_size=16, feat_extract_norm="layer",
                 conv_bias=True, do_stable_layer_norm=True),
    "base": dict(),
    "large": dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
                  feat_extract_norm="layer", conv_bias=True, do_stable_layer_norm=True),
    "xlarge": dict(hidden_size=1280, num_hidden_layers=48, num_attention_heads=16, intermediate_size=5120,
                   feat_extract_norm="layer", conv_bias=True, do_stable_layer_norm=True),
}


def preset(name: str, **overrides: Any) -> HubertConfig:
    """A named configuration (tiny, base, large, xlarge) with optional overrides."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    return HubertConfig(**{**PRESETS[name], **overrides})


def from_hf_config(source: dict[str, Any] | str | os.PathLike) -> HubertConfig:
    """Build a HubertConfig from a transformers HuBERT config (dict, config.json, or a directory)."""
    if not isinstance(source, dict):
        path = os.fspath(source)
        if os.path.isdir(path):
            path = os.path.join(path, "config.json")
        if not os.path.exists(path):
            raise ConfigError(f"no HuBERT config at {path}")
        with open(path) as f:
            source = json.load(f)
    data = dict(source)
    if data.get("model_type", "hubert") != "hubert":
        raise ConfigError(f"model_type is {data['model_type']!r}, expected 'hubert'")
    for key in UNSUPPORTED_IF_SET:
        if data.get(key) not in (None, False):
            raise ConfigError(f"HF config field {key}={data[key]!r} is not implemented by exhubert-jax")
    fields = {f.name for f in dataclasses.fields(HubertConfig)} - {"label_names", "expansion_copies",
                                                                   "expansion_style", "adapters", "dimensions"}
    kwargs = {k: v for k, v in data.items() if k in fields}
    id2label = data.get("id2label")
    if id2label:
        names = [id2label[k] for k in sorted(id2label, key=int)]
        kwargs.setdefault("num_labels", len(names))
        if not all(n == f"LABEL_{i}" for i, n in enumerate(names)):
            kwargs["label_names"] = tuple(names)
    kwargs.update(_hf_dimensions(data, kwargs))
    expansion = data.get("exhubert_expansion")
    if expansion:
        kwargs["expansion_copies"] = int(expansion["copies"])
        kwargs["expansion_style"] = expansion["style"]
        kwargs["num_hidden_layers"] = int(expansion["original_layers"])
    unknown = sorted(set(data) - fields - IGNORED_HF_KEYS - {"id2label", "num_labels", "exhubert_expansion",
                                                             "exhubert_dimensions"})
    if unknown:
        raise ConfigError(
            f"HF config field(s) not known to exhubert-jax: {', '.join(unknown)}. They may change the model; "
            "refusing to guess"
        )
    return HubertConfig(**kwargs)


def _hf_dimensions(data: dict[str, Any], kwargs: dict[str, Any]) -> dict[str, Any]:
    """The classes / dimensions split of an HF classifier: `exhubert_dimensions` names its last outputs; a stock
    `problem_type="regression"` model is all dimensions (named by id2label)."""
    n = int(kwargs.get("num_labels", data.get("num_labels", 0)) or 0)
    names = list(kwargs.get("label_names") or [f"LABEL_{i}" for i in range(n)])
    dims = data.get("exhubert_dimensions")
    if dims is None and data.get("problem_type") == "regression":
        dims = names
    if not dims:
        return {}
    dims = tuple(str(d) for d in dims)
    if len(dims) > n or tuple(names[n - len(dims):]) not in (dims, tuple(f"LABEL_{i}" for i in range(n - len(dims), n))):
        raise ConfigError(f"exhubert_dimensions {list(dims)} are not the last outputs of id2label {names}")
    classes = names[:n - len(dims)]
    named = classes and not all(c == f"LABEL_{i}" for i, c in enumerate(classes))
    return dict(num_labels=n - len(dims), dimensions=dims, label_names=tuple(classes) if named else None)


def to_hf_config(config: HubertConfig, *, flatten_expansion: bool = True) -> dict[str, Any]:
    """A transformers HubertConfig dict for this config (expanded zero_out models become plain 2L/3L HuBERTs); the
    adapters a config records are left out (exporters refuse unmerged ones: exhubert_jax.adapters.check_plain)."""
    out = {k: v for k, v in config.to_dict().items()
           if k not in ("label_names", "expansion_copies", "expansion_style", "adapters", "dimensions")}
    out.update(model_type="hubert", num_feat_extract_layers=len(config.conv_dim))
    names = (config.label_names or tuple(f"LABEL_{i}" for i in range(config.num_labels))) + config.dimensions
    out["num_labels"] = len(names)  # a regression head follows the classes in the one classifier Linear
    out["id2label"] = {str(i): n for i, n in enumerate(names)}
    out["label2id"] = {n: i for i, n in enumerate(names)}
    if config.dimensions:
        out["exhubert_dimensions"] = list(config.dimensions)
        if not config.num_labels:
            out["problem_type"] = "regression"
    if config.expansion_copies:
        if flatten_expansion:
            out["num_hidden_layers"] = config.total_layers
        out["exhubert_expansion"] = {"copies": config.expansion_copies, "style": config.expansion_style,
                                     "original_layers": config.num_hidden_layers}
    return out
