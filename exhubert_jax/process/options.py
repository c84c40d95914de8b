"""Command-line options declared once, as dataclass fields (`option(...)`): the argparse flags, the checks and the
config files of every command come from the declarations.

Every command takes `--config FILE` (YAML or JSON): its keys are option names (the field, or the flag without its
dashes: `batch_size`, `batch-size`), its values what the flag would give; flags given on the command line win. An
unknown key is refused in one line naming the nearest known keys.

    @dataclasses.dataclass
    class Options:
        corpus: str = option("demo", help="prepared corpus name(s)")
        batch_size: int = option(8, type=int, check=AT_LEAST_1)

    parser = command_parser(__doc__, Options)
    args = parse(parser, argv, Options)
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import math
from pathlib import Path
from typing import Any, Callable, Collection, Mapping

from exhubert_jax.errors import ExhubertError

# Training's kinds of run whose defaults an option may set (training.options.stage_defaults).
KINDS = ("paper", "demo", "transfer")
CONFIG_HELP = "YAML or JSON file of option values, keyed by option name (flags given on the command line win)"


class OptionsError(ExhubertError, ValueError):
    """A config file or option value that cannot be used."""


@dataclasses.dataclass(frozen=True)
class Check:
    """A condition on an option's value, and what a message says when it fails."""

    ok: Callable[[Any], bool]
    why: str


AT_LEAST_1 = Check(lambda v: v >= 1, "must be at least 1")
POSITIVE = Check(lambda v: v > 0, "must be positive")
NON_NEGATIVE = Check(lambda v: v >= 0, "must not be negative")


@dataclasses.dataclass(frozen=True)
class Spec:
    """One option's declaration beyond its default (the metadata of its dataclass field)."""

    flag: str | bool | None  # None: --the-field-name; False: not on the command line (set through the API)
    help: str | None
    choices: Collection | None  # a tuple, or a mapping whose keys are the choices (read when parsing)
    type: Callable | None
    check: Check | None
    stages: tuple[str, ...]  # train.py's stages that use it (training.options); () for other commands
    defaults: dict  # {kind: value}: training's paper/demo/transfer defaults where they differ from the field's
    resumable: bool
    cli: Any  # the flag's argparse default where it is not the field's (--labels: native), else MISSING
    parse: Callable | None  # the flag's text -> the field's value (--task-weights)
    action: str | None
    metavar: str | None


def option(default: Any, *, flag: str | bool | None = None, help: str | None = None, choices: Collection | None = None,
           type: Callable | None = None, check: Check | None = None, stages: tuple[str, ...] = (),
           paper: Any = dataclasses.MISSING, demo: Any = dataclasses.MISSING, transfer: Any = dataclasses.MISSING,
           resumable: bool = False, cli: Any = dataclasses.MISSING, parse: Callable | None = None,
           action: str | None = None, metavar: str | None = None) -> Any:
    """A dataclass field declaring one option (see Spec); help may name {paper}, {demo} and {transfer}, the
    defaults of training's kinds of run (training.options.stage_defaults)."""
    given = dict(paper=paper, demo=demo, transfer=transfer)
    defaults = {k: v for k, v in given.items() if v is not dataclasses.MISSING}
    if defaults and help:
        help = help.format(**{k: defaults.get(k, defaults.get("paper")) for k in KINDS})
    spec = Spec(flag, help, choices, type, check, tuple(stages), defaults, resumable, cli, parse, action, metavar)
    return dataclasses.field(default=default, metadata={"option": spec})


def specs(cls: Any) -> list[tuple[dataclasses.Field, Spec]]:
    """(field, Spec) of every declared option of a dataclass (or instance), in declaration order."""
    return [(f, f.metadata["option"]) for f in dataclasses.fields(cls) if "option" in f.metadata]


def flag_of(f: dataclasses.Field) -> str | None:
    """The field's command-line flag (--labels for label_space), or None when it has none."""
    flag = f.metadata["option"].flag
    return None if flag is False else flag or f"--{f.name.replace('_', '-')}"


def dest_of(f: dataclasses.Field) -> str | None:
    """The argparse attribute the field's flag parses into (args.labels for label_space)."""
    flag = flag_of(f)
    return flag[2:].replace("-", "_") if flag else None


def add_flags(parser: Any, cls: Any) -> None:
    """Add every declared flag of a dataclass to an argparse parser (or argument group)."""
    for f, spec in specs(cls):
        flag = flag_of(f)
        if flag is None:
            continue
        default = (None if spec.defaults else f.default) if spec.cli is dataclasses.MISSING else spec.cli
        kwargs = dict(action=spec.action, help=spec.help, default=default, metavar=spec.metavar)
        if spec.action in (None, "store"):
            kwargs.update(type=spec.type, choices=spec.choices)
        parser.add_argument(flag, dest=dest_of(f), **{k: v for k, v in kwargs.items() if v is not None})


def problem(f: dataclasses.Field, spec: Spec, value: Any) -> str | None:
    """Why the value cannot work for this option (naming its flag and the value), or None."""
    if value is None and f.default is None:
        return None
    why = None
    if spec.choices is not None and value not in spec.choices:
        why = f"must be one of {', '.join(map(str, spec.choices))}"
    elif isinstance(value, float) and not math.isfinite(value):  # every number option: nan and inf never work
        why = "must be a finite number"
    elif spec.check is not None and not spec.check.ok(value):
        why = spec.check.why
    return why and f"{flag_of(f) or f.name} {why}, got {value!r}"


def flags(cls: Any) -> dict[str, str]:
    """{field: how a message names it}: its flag, or its name when it has none."""
    return {f.name: flag_of(f) or f.name for f, _ in specs(cls)}


# ------------------------------------------------------------------------------------------------- config files


def command_parser(description: str | None, *classes: Any, prog: str | None = None,
                   groups: Mapping[str, Any] | None = None) -> argparse.ArgumentParser:
    """An argparse parser (no abbreviations) with --config and the declared flags of each class; `groups` adds
    more classes under their own --help heading."""
    parser = argparse.ArgumentParser(prog=prog, description=description, allow_abbrev=False,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_options(parser, *classes, groups=groups)
    return parser


def add_options(parser: argparse.ArgumentParser, *classes: Any, groups: Mapping[str, Any] | None = None) -> None:
    """--config FILE and the declared flags of each class (and of `groups`, each under its heading)."""
    parser.add_argument("--config", metavar="FILE", help=CONFIG_HELP)
    for cls in classes:
        add_flags(parser, cls)
    for title, cls in (groups or {}).items():
        add_flags(parser.add_argument_group(title), cls)


def read_config(path: str | Path) -> dict:
    """The mapping a YAML (.yaml, .yml) or JSON file holds; anything else is an OptionsError naming the file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise OptionsError(f"--config {path}: cannot read it ({e.__class__.__name__}: {e})") from None
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except Exception as e:  # noqa: BLE001 - json.JSONDecodeError, yaml.YAMLError
        kind = "YAML" if path.suffix.lower() in (".yaml", ".yml") else "JSON"
        raise OptionsError(f"--config {path}: not valid {kind} ({str(e).splitlines()[0]})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise OptionsError(f"--config {path}: holds a {type(data).__name__}, not a mapping of option names to values")
    return data


def known_keys(*classes: Any) -> dict[str, dataclasses.Field]:
    """Every name a config key may use for an option -> its field: the field name, and its flag's name with - or _."""
    keys = {}
    for cls in classes:
        for f, _ in specs(cls):
            keys[f.name] = f
            flag = flag_of(f)
            if flag:
                keys[flag[2:]] = keys[flag[2:].replace("-", "_")] = f
    return keys


def config_values(data: Mapping[str, Any], path: str | Path, *classes: Any) -> dict[str, Any]:
    """{argparse dest: value} of a config file's keys, each checked; an unknown key names the nearest known ones."""
    keys = known_keys(*classes)
    values = {}
    for key, value in data.items():
        f = keys.get(str(key))
        if f is None:
            near = dict.fromkeys(keys[k].name for k in difflib.get_close_matches(str(key), sorted(keys), n=6,
                                                                                 cutoff=0.5))
            names = sorted({f.name for f in keys.values()})
            hint = f"; did you mean {', '.join(list(near)[:3])}?" if near else f"; the keys are {', '.join(names)}"
            raise OptionsError(f"--config {path}: unknown key {key!r}{hint}")
        dest = dest_of(f)
        if dest is None:
            raise OptionsError(f"--config {path}: {key!r} is set through the library only, not by a command")
        spec = f.metadata["option"]
        if isinstance(value, str) and spec.type is not None and spec.action in (None, "store"):
            try:
                value = spec.type(value)
            except ValueError:
                raise OptionsError(f"--config {path}: {key} must be {spec.type.__name__}, got {value!r}") from None
        if spec.action == "append" and isinstance(value, str):
            value = [value]
        why = problem(f, spec, value) if value is not None and spec.parse is None else None
        if why:
            raise OptionsError(f"--config {path}: {why}")
        values[dest] = value
    return values


def parse(parser: argparse.ArgumentParser, argv: list[str] | None, *classes: Any,
          translate: Callable[[dict], dict] | None = None) -> argparse.Namespace:
    """Parse argv over the values of its --config file (if any; `translate` maps a file's document to option keys
    first, e.g. a run.json): flags win over the file, the file over the declared defaults, and a required flag (or
    one-of group) the file sets need not be on the command line. The dests the file set are in
    args.config_keys."""
    pre = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    pre.add_argument("--config")
    known, _ = pre.parse_known_args(argv)
    values = {}
    if known.config:
        data = read_config(known.config)
        values = config_values(translate(data) if translate else data, known.config, *classes)
        parser.set_defaults(**values)
        relax_required(parser, {dest for dest, v in values.items() if v not in (None, [], ())})
    args = parser.parse_args(argv)
    args.config_keys = frozenset(values)
    check_values(args, *classes)
    return args


def check_values(args: argparse.Namespace, *classes: Any) -> None:
    """An OptionsError naming the first declared option whose parsed value cannot work (its flag and the value),
    read through the option's `parse` where it has one, so a command refuses it before it builds or reads anything;
    an option left unset (None) is skipped."""
    for cls in classes:
        for f, spec in specs(cls):
            dest = dest_of(f)
            value = getattr(args, dest, None) if dest else None
            if value is None:
                continue
            why = problem(f, spec, spec.parse(value) if spec.parse is not None else value)
            if why:
                raise OptionsError(why)


def relax_required(parser: argparse.ArgumentParser, given: set[str]) -> None:
    """Required flags and one-of groups among `given` (dests a config file sets) stop being required."""
    for action in parser._actions:
        action.required = action.required and action.dest not in given
    for group in parser._mutually_exclusive_groups:
        group.required = group.required and not any(a.dest in given for a in group._group_actions)


def add_positionals(parser: argparse.ArgumentParser, cls: Any) -> None:
    """Each declared field of cls as a positional argument that a --config file may give instead (SRC OUT); flags
    may stand between them (SRC --flag OUT), as with plain positionals."""
    for f, spec in specs(cls):
        parser.add_argument(f.name, nargs="?", help=spec.help)
    parser.parse_args = parser.parse_intermixed_args


def require_positionals(parser: argparse.ArgumentParser, args: argparse.Namespace, cls: Any) -> None:
    """argparse's own error for the positionals of cls that neither the command line nor the config file gave."""
    missing = [f.name for f, _ in specs(cls) if getattr(args, f.name) is None]
    if missing:
        parser.error(f"the following arguments are required: {', '.join(missing)}")
