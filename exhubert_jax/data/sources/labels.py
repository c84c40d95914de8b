"""The 6-class arousal x valence label space (Russell's circumplex, as in the ExHuBERT paper) and the reviewed
native-label mapping table."""

from __future__ import annotations

import csv
import functools
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from exhubert_jax.data.errors import DataError, UnknownLabelError

# The 6 classes in the order the paper and the released model's head use (arousal low/high x valence).
EMOTION_CLASSES = ("low_negative", "low_neutral", "low_positive", "high_negative", "high_neutral", "high_positive")
CLASSES: tuple[str, ...] = EMOTION_CLASSES
# What a head is scored and trained against: the 6 emotion classes, or a corpus's own (native) classes.
LABEL_SPACES = ("emotion", "native")
DROP = "drop"
GENERIC = "*"
TABLE_PATH = Path(__file__).with_name("label_map.csv")
_COLUMNS = ("corpus", "label", "meaning", "class", "reason")


def label_field(label_space: str) -> str:
    """The batch field holding the targets of a label space ('labels' or 'native_labels')."""
    if label_space not in LABEL_SPACES:
        raise DataError(f"label space must be one of {LABEL_SPACES}, got {label_space!r}")
    return "labels" if label_space == "emotion" else "native_labels"


def class_index(name: str) -> int:
    """Index of a class name in CLASSES."""
    try:
        return CLASSES.index(name)
    except ValueError:
        raise DataError(f"unknown class {name!r}; the classes are {', '.join(CLASSES)}") from None


def normalize_label(label: str) -> str:
    """Case-, space-, '_' and '-'-insensitive key of a label."""
    return " ".join(re.split(r"[\s_\-]+", str(label).strip().lower())).strip()


@dataclass(frozen=True)
class LabelRule:
    """One row of the mapping table: a corpus's native label, its meaning, its class (or drop) and why."""

    corpus: str
    label: str
    meaning: str
    target: str
    reason: str

    @property
    def index(self) -> int | None:
        """Class index, or None when the table drops this label."""
        return None if self.target == DROP else class_index(self.target)


class LabelTable:
    """Mapping from (corpus, native label) to a class: the corpus's own section first, then the generic one
    (corpora without a section, and labels spelled out in words, e.g. 'anger' in an EmoNet list for EMO-DB)."""

    def __init__(self, rules: Iterable[LabelRule]):
        self._sections: dict[str, dict[str, LabelRule]] = {}
        for rule in rules:
            self._sections.setdefault(rule.corpus, {})[normalize_label(rule.label)] = rule

    def section(self, corpus: str) -> str:
        """Name of the section that maps this corpus's labels."""
        return corpus if corpus in self._sections else GENERIC

    def rules(self, corpus: str) -> list[LabelRule]:
        """The rows that apply to a corpus, sorted by label."""
        return sorted(self._sections.get(self.section(corpus), {}).values(), key=lambda r: r.label)

    def sections(self) -> list[str]:
        """All section names."""
        return sorted(self._sections)

    def known(self, corpus: str) -> list[str]:
        """The labels an error message lists for a corpus: its section's, then a pointer to the generic words."""
        own = [r.label for r in self.rules(corpus)]
        return own + (["or a generic word (the '*' rows of the table)"] if self.section(corpus) != GENERIC else [])

    def lookup(self, corpus: str, label: str, path: str = "?") -> LabelRule:
        """The rule for one native label; an unknown label raises UnknownLabelError naming corpus, file, label."""
        key = normalize_label(label)
        rule = self._sections.get(self.section(corpus), {}).get(key) or self._sections.get(GENERIC, {}).get(key)
        if rule is None:
            raise UnknownLabelError(corpus, str(path), label, self.known(corpus))
        return rule

    def display_names(self, corpus: str, labels: Iterable[str]) -> list[str]:
        """A corpus's native labels as plots show them (display_name); a label the table lacks stays as it is."""
        out = []
        for label in labels:
            try:
                out.append(display_name(self.lookup(corpus, label)))
            except UnknownLabelError:
                out.append(label)
        return out

    def fingerprint(self, corpus: str) -> str:
        """Hash of the rows that apply to a corpus, its section's and the generic ones (changes with the mapping)."""
        rows = self.rules(corpus) + (self.rules(GENERIC) if self.section(corpus) != GENERIC else [])
        text = "\n".join("\t".join((r.corpus, r.label, r.target)) for r in rows)
        return hashlib.sha256(f"{self.section(corpus)}\n{text}".encode()).hexdigest()[:16]

    def merged(self, rules: Iterable[LabelRule]) -> "LabelTable":
        """A new table with these rows added (a row for an existing (corpus, label) replaces it)."""
        return LabelTable([r for s in self._sections.values() for r in s.values()] + list(rules))


def display_name(rule: LabelRule) -> str:
    """A native label by its meaning, with the label in brackets where it differs: 'anger (W)' for EMO-DB's W
    ('Ärger (anger)': a one-phrase gloss in brackets translates a word that is not the label), 'angry' for
    JL-Corpus's angry ('angry (primary)': the word before the brackets), 'boredom, sigh (01)' otherwise."""
    m = re.fullmatch(r"(.+?)\s*\((.+)\)", rule.meaning)
    if m is None:
        name = rule.meaning
    elif "," not in m[2] and normalize_label(m[1]) != normalize_label(rule.label):
        name = m[2]
    else:
        name = m[1]
    return rule.label if normalize_label(name) == normalize_label(rule.label) else f"{name} ({rule.label})"


def read_label_rows(path: str | Path) -> list[LabelRule]:
    """Read and validate a mapping-table CSV (columns corpus,label,meaning,class,reason)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"label map not found: {path}")
    rules, seen = [], set()
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = [c for c in _COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise DataError(f"{path}: missing column(s) {', '.join(missing)}; expected {','.join(_COLUMNS)}")
        for line, row in enumerate(reader, start=2):
            corpus, label, target = (row[k].strip() for k in ("corpus", "label", "class"))
            reason = (row["reason"] or "").strip()
            if not corpus or not label:
                raise DataError(f"{path}:{line}: empty corpus or label")
            if target != DROP and target not in CLASSES:
                raise DataError(f"{path}:{line}: class {target!r} is neither one of {', '.join(CLASSES)} nor {DROP!r}")
            if not reason:
                raise DataError(f"{path}:{line}: every row needs a reason ({corpus} {label!r})")
            key = (corpus, normalize_label(label))
            if key in seen:
                raise DataError(f"{path}:{line}: duplicate row for {corpus} {label!r}")
            seen.add(key)
            rules.append(LabelRule(corpus, label, (row["meaning"] or label).strip(), target, reason))
    return rules


@functools.lru_cache(maxsize=None)
def _table_at(path: Path) -> LabelTable:
    return LabelTable(read_label_rows(path))


def load_label_table(extra: str | Path | None = None) -> LabelTable:
    """The reviewed table at TABLE_PATH (the one shipped with the package), optionally extended by a user CSV of
    the same columns."""
    table = _table_at(Path(TABLE_PATH))
    return table.merged(read_label_rows(extra)) if extra is not None else table
