"""LoRA adapters to and from PyTorch peft: adapter_config.json + adapter_model.safetensors next to an HF base.

export_peft writes the LoRA matrices plus the head (peft's modules_to_save) as a peft LoRA adapter in OUT and the
base (other mergeable adapters folded in) as a transformers directory in OUT/base (apart: transformers would load an
adapter lying beside a model's config.json by itself), so
`PeftModel.from_pretrained(HubertForSequenceClassification.from_pretrained(OUT / "base"), OUT)` runs our model.
import_peft reads such an adapter directory into our parameters (LoRA recorded in the config).
"""

from __future__ import annotations

import json
from pathlib import Path

import jax
import numpy as np

from exhubert_jax import adapters
from exhubert_jax.adapters.registry import TARGETS, lookup, options_of
from exhubert_jax.errors import ExhubertError
from exhubert_jax.hub.mapping import fold_heads, split_heads
from exhubert_jax.hub.torch_io import read_weight_file, tensor_bytes, write_safetensors
from exhubert_jax.model import expansion_layout as spec
from exhubert_jax.model.config import HubertConfig
from exhubert_jax.process.atomic_files import atomic_directory

from . import model_card
from .export import export
from .zll_export import has_linears

ADAPTER_CONFIG, ADAPTER_WEIGHTS, BASE_DIR = "adapter_config.json", "adapter_model.safetensors", "base"
PREFIX = "base_model.model."
ENCODER = ("hubert", "encoder")
HEAD_MODULES = ("projector", "classifier")
# peft options whose non-default values change the computation in ways our LoRA does not implement.
UNSUPPORTED = {"use_dora": False, "use_rslora": False, "bias": "none", "layers_to_transform": None,
               "layers_pattern": None, "rank_pattern": {}, "alpha_pattern": {}, "fan_in_fan_out": False,
               "lora_bias": False, "layer_replication": None, "target_parameters": None, "exclude_modules": None}


class PeftError(ExhubertError, ValueError):
    """A model or adapter directory that cannot be carried between exhubert-jax and peft."""


def layer_slots(config: HubertConfig) -> list[tuple[tuple[str, ...], tuple[int, ...]]]:
    """For each torch encoder layer j (execution order): our stacked subtree under hubert/encoder and its index."""
    slots = spec.layer_slots(config.num_hidden_layers, config.expansion_copies, config.expansion_style)
    return [(slot.subtree[len(ENCODER):], slot.index) for slot in slots]


def split_lora(params: dict, config: HubertConfig) -> tuple[dict, HubertConfig, dict]:
    """(base params, base config, {target: (A, B)} stacked like the layers): LoRA taken out, the rest merged.

    An IA3 vector on the same projection scales B too, since the adapted Dense computes (x W + b + s x A B) * l.
    """
    if options_of(config, "lora") is None:
        raise PeftError("the model has no LoRA adapter to export (config adapters: "
                        f"{list(config.adapters) or 'none'})")
    if has_linears(config):
        raise PeftError(f"{config.expansion_style}-expanded models are not stock transformers HuBERTs, so peft cannot "
                        "load them; use style=zero_out, or export without --peft (that export ships its own PyTorch "
                        "code)")
    encoder, pairs = params["hubert"]["encoder"], {}
    for tree_path in {slot for slot, _ in layer_slots(config)}:
        for target in options_of(config, "lora")["targets"]:
            module, dense = TARGETS[target]
            node = spec.subtree(encoder, tree_path)[module][dense]
            b = np.asarray(node["lora_b"])
            pairs[(tree_path, target)] = (np.asarray(node["lora_a"]),
                                          b * np.asarray(node["ia3"])[..., None, :] if "ia3" in node else b)
    base = adapters.core.map_dense(params, lambda n: {k: v for k, v in n.items() if k not in ("lora_a", "lora_b")})
    base_config = config.replace(adapters=tuple(s for s in config.adapters if not s.startswith("lora:")))
    base, base_config = adapters.merge(base, base_config)
    return base, base_config, pairs


def adapter_config(config: HubertConfig, base_path: str | None) -> dict:
    """peft's LoraConfig fields for our LoRA options."""
    options = options_of(config, "lora")
    return {"peft_type": "LORA", "task_type": None, "base_model_name_or_path": base_path, "r": options["r"],
            "lora_alpha": options["alpha"], "lora_dropout": 0.0, "init_lora_weights": True, "inference_mode": True,
            "target_modules": [TARGETS[t][1] for t in options["targets"]],
            "modules_to_save": list(HEAD_MODULES), **UNSUPPORTED}


def lora_state_dict(config: HubertConfig, pairs: dict, params: dict) -> dict[str, np.ndarray]:
    """peft's adapter_model keys: per layer lora_A.weight (r, in) and lora_B.weight (out, r), then the head."""
    state = {}
    for j, (tree_path, index) in enumerate(layer_slots(config)):
        for target in options_of(config, "lora")["targets"]:
            module, dense = TARGETS[target]
            a, b = pairs[(tree_path, target)]
            key = f"{PREFIX}hubert.encoder.layers.{j}.{module}.{dense}"
            state[f"{key}.lora_A.weight"] = np.asarray(a[index]).T
            state[f"{key}.lora_B.weight"] = np.asarray(b[index]).T
    head = {}
    for name in HEAD_MODULES + ("regressor",):
        if name in params:
            head[f"{name}.weight"] = np.asarray(params[name]["kernel"]).T
            head[f"{name}.bias"] = np.asarray(params[name]["bias"])
    state.update({f"{PREFIX}{k}": v for k, v in fold_heads(head, config).items()})  # regressor rows after the classes
    return state


def export_peft(params: dict, config: HubertConfig, out: str | Path, *, source: str | Path | None = None,
                input_mode: str = "masked", license: str | None = None, where: str | None = None) -> Path:
    """Write the peft LoRA adapter and its model card (README.md: `license`, loaded from `where`, default `out`) into
    `out` and the HF base (config.json, model.safetensors, the feature extractor of `input_mode`) into `out`/base;
    the folder appears whole or not at all (a full disk is one DiskFullError naming `out`), and `source` is never
    overwritten."""
    base, base_config, pairs = split_lora(params, config)
    leftover = [s for s in base_config.adapters if lookup(s.partition(":")[0]).structural]
    if leftover:
        raise PeftError(f"adapters {leftover} have no peft LoRA form and cannot be merged; export only LoRA "
                        "(with optional ia3/bitfit) models with --peft")
    final, lora = Path(out).absolute(), lora_state_dict(config, pairs, params)
    with atomic_directory(final, *([source] if source else []), needed=tensor_bytes(base, lora)) as tmp:
        export(base, base_config, tmp / BASE_DIR, input_mode=input_mode, license=license,
               where=f"{where or out}/{BASE_DIR}")
        write_safetensors(lora, tmp / ADAPTER_WEIGHTS)
        with open(tmp / ADAPTER_CONFIG, "w") as f:
            json.dump(adapter_config(config, str(final / BASE_DIR)), f, indent=2)
        model_card.write(tmp, model_card.Card("peft", config, input_mode, where or str(out),
                                              Path(source) if source else None, license))
    return Path(out)


def read_adapter(directory: str | Path) -> tuple[dict, dict[str, np.ndarray]]:
    """(adapter_config.json, adapter weights) of a peft LoRA directory, checked for what we implement."""
    directory = Path(directory)
    cfg_path = directory / ADAPTER_CONFIG
    if not cfg_path.is_file():
        raise PeftError(f"{cfg_path} not found: not a peft adapter directory")
    with open(cfg_path) as f:
        cfg = json.load(f)
    if cfg.get("peft_type") != "LORA":
        raise PeftError(f"{cfg_path}: peft_type is {cfg.get('peft_type')!r}; only LORA adapters are supported")
    for key, default in UNSUPPORTED.items():
        if cfg.get(key) and cfg[key] != default:
            raise PeftError(f"{cfg_path}: {key}={cfg[key]!r} is not supported (our LoRA needs {key}={default!r})")
    if not isinstance(cfg.get("target_modules"), list):
        raise PeftError(f"{cfg_path}: target_modules must be a list of module names, got {cfg.get('target_modules')!r}")
    weights = directory / ADAPTER_WEIGHTS
    if not weights.is_file():
        weights = directory / "adapter_model.bin"
    return cfg, read_weight_file(weights)


def import_peft(params: dict, config: HubertConfig, directory: str | Path) -> tuple[dict, HubertConfig]:
    """Our (params, config) with the LoRA (and head, if saved) of a peft adapter directory on top."""
    cfg, state = read_adapter(directory)
    by_module = {dense: t for t, (_, dense) in TARGETS.items()}
    unknown = [m for m in cfg["target_modules"] if m.split(".")[-1] not in by_module]
    if unknown:
        raise PeftError(f"{directory}: target module(s) {unknown} are not adaptable; "
                        f"choose among {sorted(by_module)}")
    targets = tuple(by_module[m.split(".")[-1]] for m in cfg["target_modules"])
    params, config, _ = adapters.add(params, config, "lora", r=cfg["r"], alpha=cfg["lora_alpha"], targets=targets)
    params = jax.tree.map(np.array, params)  # writable host copies
    state = {k.removeprefix(PREFIX): v for k, v in state.items()}
    encoder = params["hubert"]["encoder"]
    for j, (tree_path, index) in enumerate(layer_slots(config)):
        for target in options_of(config, "lora")["targets"]:
            module, dense = TARGETS[target]
            node = spec.subtree(encoder, tree_path)[module][dense]
            for ours, theirs in (("lora_a", "lora_A"), ("lora_b", "lora_B")):
                key = f"hubert.encoder.layers.{j}.{module}.{dense}.{theirs}.weight"
                if key not in state:
                    raise PeftError(f"{directory}: {ADAPTER_WEIGHTS} lacks {PREFIX}{key}")
                value = state.pop(key).T
                if value.shape != node[ours][index].shape:
                    raise PeftError(f"{directory}: {PREFIX}{key} has shape {value.T.shape}, the model expects "
                                    f"{node[ours][index].T.shape}")
                node[ours][index] = value
    state = split_heads(state, config)
    for name in [m for m in HEAD_MODULES + ("regressor",) if m in params]:
        for leaf, torch_leaf in (("kernel", "weight"), ("bias", "bias")):
            key = f"{name}.{torch_leaf}"
            if key in state:
                value = state.pop(key)
                params[name][leaf] = value.T if leaf == "kernel" else value
    if state:
        raise PeftError(f"{directory}: adapter tensor(s) {sorted(state)[:4]} have no place in this model")
    return params, config
