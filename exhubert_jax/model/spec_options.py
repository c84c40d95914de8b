"""Typed options of 'kind:key=value,...' spec strings (the syntax of adapter specs, model.config.split_spec): each
kind declares its options, and a spec parses into the kind's name and every option's checked value, defaults filled
in. Training's --augment kinds and evaluation's --degrade conditions declare theirs with it."""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from typing import Any

from exhubert_jax.model.config import ConfigError, split_spec

NUMBER = r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?"
RANGE = re.compile(rf"^({NUMBER})(?:-({NUMBER}))?$")


@dataclasses.dataclass(frozen=True)
class Option:
    """One option of a kind: its value ('range' LO-HI, 'number', 'probability', 'factors', 'choice' one of
    `choices` or 'choices' several joined by '+'), its default, whether its numbers must be positive, and the
    closed bounds a 'number' must lie within."""

    kind: str
    default: Any
    positive: bool = False
    choices: tuple[str, ...] = ()
    bounds: tuple[float, float] = (-math.inf, math.inf)


def number_text(value: float) -> str:
    """A number as a spec writes it (5, 0.5, 1e-05)."""
    return repr(float(value)).removesuffix(".0")


def _number(option: Option, text: str) -> float | None:
    """A checked 'number' from its text; None when it is not one."""
    if not re.fullmatch(NUMBER, text):
        return None
    v = float(text)
    ok = math.isfinite(v) and option.bounds[0] <= v <= option.bounds[1] and (v > 0 or not option.positive)
    return v if ok else None


def convert(option: Option, text: str) -> Any:
    """A checked option value from its spec text; None when the text is not one."""
    if option.kind == "choice":
        return text if text in option.choices else None
    if option.kind == "choices":
        names = text.split("+")
        return tuple(c for c in option.choices if c in names) if set(names) <= set(option.choices) else None
    if option.kind == "number":
        return _number(option, text)
    if option.kind == "factors":
        numbers = [float(t) for t in text.split("+") if re.fullmatch(NUMBER, t)]
        ok = len(numbers) == len(text.split("+")) and all(math.isfinite(v) and v > 0 for v in numbers)
        return tuple(dict.fromkeys(numbers)) if ok else None
    match = RANGE.match(text)
    if match is None:
        return None
    lo, hi = float(match[1]), float(match[2] if match[2] is not None else match[1])
    if not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi) or (option.positive and lo <= 0):
        return None
    if option.kind == "probability":
        return lo if match[2] is None and 0 <= lo <= 1 else None
    return lo, hi


def expected(key: str, option: Option) -> str:
    """What an option's value must be, for a message ('a probability from 0 to 1')."""
    if option.kind in ("choice", "choices"):
        return (f"one of {', '.join(option.choices)}" if option.kind == "choice"
                else f"{key} joined by '+' among {', '.join(option.choices)}")
    if option.kind == "number":
        lo, hi = option.bounds
        within = (f" from {number_text(lo)} to {number_text(hi)}" if math.isfinite(lo) and math.isfinite(hi) else
                  f" of at least {number_text(lo)}" if math.isfinite(lo) else
                  f" of at most {number_text(hi)}" if math.isfinite(hi) else "")
        return f"a {'positive ' if option.positive else ''}number{within}"
    text = {"range": "a number or a range LO-HI (LO <= HI)", "probability": "a probability from 0 to 1",
            "factors": "positive numbers joined by '+'"}[option.kind]
    return text + (" of positive numbers" if option.positive and option.kind == "range" else "")


def format_value(option: Option, value: Any) -> str:
    """An option value as its canonical spec text."""
    if option.kind == "choices":
        return "+".join(value)
    if option.kind == "factors":
        return "+".join(map(number_text, value))
    if option.kind == "range":
        return f"{number_text(value[0])}-{number_text(value[1])}"
    return value if option.kind == "choice" else number_text(value)


def parse_spec(text: str, schemas: Mapping[str, Mapping[str, Option]], what: str,
               error: type[Exception]) -> tuple[str, dict[str, Any]]:
    """'noise:snr=5-20' -> ('noise', {'snr': (5.0, 20.0), ...}): the kind and every option of its schema, defaults
    filled in; `error` (its message starting "WHAT 'TEXT': ") names the spec and the problem."""
    try:
        name, given = split_spec(text, what=what, name="kind")
    except ConfigError as e:
        raise error(str(e)) from None
    where = f"{what} {text!r}"
    if name not in schemas:
        raise error(f"{where}: unknown kind {name!r}; choose one of {', '.join(schemas)}")
    schema = schemas[name]
    unknown = sorted(set(given) - set(schema))
    if unknown:
        raise error(f"{where}: {name} has no option(s) {', '.join(unknown)} (options: {', '.join(schema) or 'none'})")
    options = {}
    for key, option in schema.items():
        value = convert(option, given[key]) if key in given else option.default
        if value is None and key in given:
            raise error(f"{where}: {key} must be {expected(key, option)}, got {given[key]!r}")
        options[key] = value
    return name, options


def spec_text(name: str, options: Mapping[str, Any], schema: Mapping[str, Option]) -> str:
    """The canonical spec of parsed options: every option that has a value spelled out, in declaration order."""
    shown = [f"{k}={format_value(schema[k], v)}" for k, v in options.items() if v is not None]
    return f"{name}:" + ",".join(shown) if shown else name
