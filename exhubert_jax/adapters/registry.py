"""Adapter methods: the registry each method enters (`register`), and its 'method:key=value,...' spec strings.

A method is a `Method`: its options, which parameter leaves it adds (`owns`), which backbone leaves it trains
besides (`trains`), how to initialise its leaves (`init_leaf`, which also gets `base`: the leaves of the model being
adapted by path, so a method may start from the weights it adapts, as DoRA's magnitude from ‖W‖), how to fold them into the base (`merge`) and, if it
changes the computation, the flax method interceptor that does so (`intercept`, exhubert_jax.adapters.interceptors). A
config records the adapters applied to it as canonical spec strings (all options spelled out), e.g.
"lora:r=8,alpha=16,targets=q+v"; the model's interceptors and the label rules read their options from there.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable

from exhubert_jax.errors import ExhubertError
from exhubert_jax.model.config import ConfigError, HubertConfig, split_spec

# Adaptable projections of an encoder layer: short name -> (module, Dense) inside the layer's parameter subtree.
TARGETS = {
    "q": ("attention", "q_proj"),
    "k": ("attention", "k_proj"),
    "v": ("attention", "v_proj"),
    "out": ("attention", "out_proj"),
    "ff1": ("feed_forward", "intermediate_dense"),
    "ff2": ("feed_forward", "output_dense"),
}


class AdapterSpecError(ExhubertError, ValueError):
    """An adapter specification that cannot be honoured."""


@dataclasses.dataclass(frozen=True)
class Option:
    """One option of a method: kind ('int', 'float', 'choice', 'targets'), default, allowed choices."""

    kind: str
    default: Any
    choices: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class Method:
    """One adapter method (see the module docstring). `order` nests interceptors and merges (lower: nearer the
    module); `add`, if given, replaces adapters.core.add (bbe's expansion)."""

    name: str
    owns: Callable[[str], bool] = lambda name: False
    init_leaf: Callable[[str, tuple[int, ...], Any, Any, dict], Any] | None = None
    trains: Callable[[str], bool] = lambda name: False
    merge: Callable[[dict, dict], dict] | None = None
    options: dict[str, Option] = dataclasses.field(default_factory=dict)
    intercept: Callable[[dict], Callable] | None = None
    order: int = 0
    add: Callable | None = None

    @property
    def structural(self) -> bool:
        """Whether the method changes the computation (then a model holding it is not plain HuBERT until merged)."""
        return self.intercept is not None


REGISTRY: dict[str, Method] = {}


def register(method: Method) -> Method:
    """Make `method` known to specs, configs, the model, labels(), merge() and export."""
    REGISTRY[method.name] = method
    return method


def lookup(name: str) -> Method:
    """The registered method `name`; an unknown name is an AdapterSpecError listing the known ones."""
    if name not in REGISTRY:
        raise AdapterSpecError(f"unknown adapter method {name!r}; choose one of {', '.join(REGISTRY)}")
    return REGISTRY[name]


def owner(leaf: str) -> str | None:
    """The registered method whose parameters include the leaf path `leaf`, if any."""
    return next((m.name for m in REGISTRY.values() if m.owns(leaf)), None)


ALIASES = {"rank": "r"}


def _number(value: Any, kind: type) -> int | float | None:
    """int/float from a string or number (an int must be integral), None if it is not one."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    if kind is int:
        return int(number) if number.is_integer() and not isinstance(value, bool) else None
    return number


def _convert(method: str, key: str, option: Option, value: Any) -> Any:
    """A checked option value from a string (spec) or a Python value (keyword argument)."""
    where = f"adapter {method!r} option {key!r}"
    if option.kind in ("int", "float"):
        number = _number(value, int if option.kind == "int" else float)
        if number is None or not math.isfinite(number):
            raise AdapterSpecError(f"{where} must be a finite number ({option.kind}), got {value!r}")
        if not number > 0:
            raise AdapterSpecError(f"{where} must be positive, got {value!r}")
        return number
    if option.kind == "choice":
        if value not in option.choices:
            raise AdapterSpecError(f"{where} must be one of {', '.join(option.choices)}, got {value!r}")
        return value
    names = value.split("+") if isinstance(value, str) else list(value)
    unknown = [n for n in names if n not in TARGETS]
    if unknown or not names:
        raise AdapterSpecError(f"{where}: unknown target(s) {', '.join(unknown) or '(none given)'}; "
                               f"choose among {', '.join(TARGETS)} joined by '+'")
    return tuple(n for n in TARGETS if n in names)


def normalise(method: str, options: dict[str, Any]) -> dict[str, Any]:
    """Every option of `method` with defaults filled in and values checked; unknown names are an error."""
    schema = lookup(method).options
    given = {ALIASES.get(k, k): v for k, v in options.items()}
    both = sorted(k for k in options if k in ALIASES and ALIASES[k] in options)
    if both:
        raise AdapterSpecError(f"adapter {method!r}: {', '.join(f'{k} and {ALIASES[k]}' for k in both)} name the same "
                               "option; give it once")
    unknown = sorted(set(given) - set(schema))
    if unknown:
        allowed = ", ".join(schema) or "none"
        raise AdapterSpecError(f"adapter {method!r} has no option(s) {', '.join(unknown)} (options: {allowed})")
    return {k: _convert(method, k, opt, given[k]) if k in given else opt.default for k, opt in schema.items()}


def parse_spec(text: str) -> tuple[str, dict[str, Any]]:
    """'lora:r=8,alpha=16,targets=q+v' -> ('lora', {'r': 8, 'alpha': 16.0, 'targets': ('q', 'v')})."""
    try:
        method, options = split_spec(text)
        return method, normalise(method, options)
    except (AdapterSpecError, ConfigError) as e:
        message = str(e)
        raise AdapterSpecError(message if message.startswith("adapter spec") else f"adapter spec {text!r}: {e}") from None


def _format_value(value: Any) -> str:
    """One option value as it appears in a spec string."""
    if isinstance(value, tuple):
        return "+".join(value)
    if isinstance(value, float):
        text = repr(value)
        return text[:-2] if text.endswith(".0") else text
    return str(value)


def format_spec(method: str, options: dict[str, Any]) -> str:
    """The canonical spec string (every option, in declaration order) of normalised options."""
    options = normalise(method, options)
    body = ",".join(f"{k}={_format_value(v)}" for k, v in options.items())
    return f"{method}:{body}" if body else method


def canonical(text: str) -> str:
    """The canonical form of a spec string."""
    return format_spec(*parse_spec(text))


def options_of(config: HubertConfig, method: str) -> dict[str, Any] | None:
    """The options of adapter `method` if it was applied to `config`, else None."""
    for spec in config.adapters:
        name, options = parse_spec(spec)
        if name == method:
            return options
    return None


def check_specs(config: HubertConfig) -> None:
    """Every adapter the config records is registered, valid and in canonical form (as adapters.add writes it)."""
    for spec in config.adapters:
        try:
            if canonical(spec) != spec:
                raise AdapterSpecError(f"not in canonical form (expected {canonical(spec)!r})")
        except AdapterSpecError as e:
            raise ConfigError(f"adapters entry {spec!r}: {e}") from None
