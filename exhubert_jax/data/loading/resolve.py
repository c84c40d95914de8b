"""One grammar for naming prepared corpora on every command line: names, and the groups all, emoset, unseen, demo."""

from __future__ import annotations

from pathlib import Path

from exhubert_jax.data.errors import DataError
from exhubert_jax.data.loading.dataset import RECORD, default_data_dir, prepared_names
from exhubert_jax.data.sources.corpora import CORPORA, base_name

GROUPS = {"emoset": "emoset++", "unseen": "unseen", "demo": "demo"}


class CorpusSpecError(DataError):
    """A --corpus/--corpora value that names nothing prepared."""


def data_root(data_dir: str | Path | None) -> Path:
    """data_dir, else $EXHUBERT_DATA, else data/prepared."""
    return Path(data_dir) if data_dir is not None else default_data_dir()


def group_of(name: str) -> str:
    """Registry group of a corpus or of one of its folds ('emoset++', 'unseen', 'demo'), or 'user' for a corpus
    outside the registry."""
    corpus = CORPORA.get(base_name(name))
    return corpus.group if corpus is not None else "user"


def registry_group(group: str) -> list[str]:
    """Registry names of one group ('emoset', 'unseen' or 'demo'), sorted."""
    return sorted(n for n, c in CORPORA.items() if c.group == GROUPS[group])


def _fold_command(name: str, base: str) -> str:
    """The prepare arguments that write fold dataset `name` of corpus `base`."""
    if "-emobox-fold" in name:
        return f"--emobox /path/to/EmoBox/data/{base} --emobox-root /path/to/corpora"
    source = f"--manifest data/demo_sources/{base}/manifest.csv" if group_of(base) == "demo" else \
        f"--source /path/to/{base}"
    return f"--corpus {base} {source} --folds {name.rsplit('of', 1)[-1]}"


def prepare_command(name: str, data_dir: str | Path | None = None) -> str:
    """The shell command that prepares corpus `name` (or the folds `name` is one of) into data_dir."""
    if base_name(name) != name:
        out = f" --out {data_dir}" if data_dir is not None else ""
        return f"python -m exhubert_jax.data.prepare {_fold_command(name, base_name(name))}{out}"
    if group_of(name) == "demo":
        return f"python -m exhubert_jax.data.demo.synthetic --out data/demo_sources --prepare {data_dir or 'data/prepared'}"
    out = f" --out {data_dir}" if data_dir is not None else ""
    return f"python -m exhubert_jax.data.prepare --corpus {name} --source /path/to/{name}{out}"


def resolve_corpora(spec: str, data_dir: str | Path | None = None) -> list[str]:
    """Comma-separated names and groups -> prepared corpus names, in the order given, duplicates dropped.

    'all' is every prepared corpus; 'emoset', 'unseen' and 'demo' are the prepared members of that registry group
    (for 'demo', all of them: they can always be generated). A name may also be a prepared corpus folder path.
    """
    root = data_root(data_dir)
    prepared = prepared_names(root)
    where = f"{root}" if data_dir is not None else f"{root} ($EXHUBERT_DATA or data/prepared)"
    listing = f"prepared there: {', '.join(prepared) or 'none'}"
    names: list[str] = []
    for item in (s.strip() for s in spec.split(",")):
        if not item:
            continue
        if item == "all":
            if not prepared:
                raise CorpusSpecError(f"no prepared corpora under {where}; prepare one with "
                                      f"`{prepare_command('NAME', data_dir)}`")
            names += prepared
        elif item == "demo":
            names += registry_group("demo")
        elif item in GROUPS:
            members = registry_group(item)
            have = [n for n in members if n in prepared]
            if not have:
                raise CorpusSpecError(f"none of the {item} corpora ({', '.join(members)}) is prepared under {where} "
                                      f"({listing}); prepare them with `{prepare_command('NAME', data_dir)}`")
            names += have
        else:
            names.append(item)
    if not names:
        raise CorpusSpecError(f"no corpus named in {spec!r}")
    for n in names:
        if n not in prepared and not (Path(n) / RECORD).is_file():
            raise CorpusSpecError(f"corpus {n} is not prepared under {where} ({listing}); prepare it with "
                                  f"`{prepare_command(n, data_dir)}`")
    return list(dict.fromkeys(names))
