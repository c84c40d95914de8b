"""Results per group of utterances (the speaker's gender, the language, the corpus, the speaker): each group's
registered metrics (metrics.METRICS) with bootstrap intervals, and the UAR gap between the groups with a permutation
test. Pure functions over evaluate_corpus results (their per-utterance label, pred, speaker, gender, language).

The gap is max - min UAR over the groups (for two groups, their difference). Its p-value comes from permuting group
membership (Good 2005, "Permutation, parametric and bootstrap tests of hypotheses"): when every speaker lies in one
group, whole speakers are permuted between the groups, since utterances of one speaker are dependent and permuting
them one by one would find gaps that are only speaker effects; otherwise utterances are permuted. Unknown values form
an 'unknown' group that is shown but left out of the gap.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from exhubert_jax.errors import ExhubertError
from exhubert_jax.evaluation import bootstrap as bs, metrics
from exhubert_jax.evaluation.split_caveats import MIN_PER_CLASS

GROUPINGS = ("gender", "language", "corpus", "speaker")
UNKNOWN = "unknown"
POOLED = "pooled"
# Below MIN_UTTERANCES utterances (5 per class of the 6 emotion classes: split_caveats.MIN_PER_CLASS) and below
# bootstrap.MIN_CLUSTERS speakers, a group gets no interval: one utterance moves a class's recall by more than 20
# points, so an utterance resample takes few distinct values and its percentiles say little; with at least
# MIN_CLUSTERS speakers its speakers are resampled instead.
MIN_UTTERANCES = 6 * MIN_PER_CLASS
_CHUNK = 2_000_000  # permuted group labels held at once (rows x utterances), to bound memory on large test sets


class GroupingError(ExhubertError, ValueError):
    """An unknown --by grouping."""


def parse_by(text: str | None) -> list[str]:
    """The groupings of a comma-separated --by ('gender,language'), in GROUPINGS order, each once; GroupingError
    naming the unknown ones and the choices."""
    asked = [w.strip().lower() for w in (text or "").split(",") if w.strip()]
    unknown = [w for w in asked if w not in GROUPINGS]
    if unknown or not asked:
        raise GroupingError(f"--by {text!r}: {'unknown ' + ', '.join(unknown) if unknown else 'no grouping'}; "
                            f"choose from {', '.join(GROUPINGS)} (comma-separated)")
    return [g for g in GROUPINGS if g in asked]


def group_of(utterance: dict, corpus: str, by: str) -> str:
    """The group of one utterance under a grouping: its corpus, or its gender, language or speaker (UNKNOWN when
    it has none)."""
    if by == "corpus":
        return corpus
    value = utterance.get(by)
    return UNKNOWN if value is None or str(value).strip() == "" else str(value)


def scopes(results: Sequence[dict], by: str) -> list[tuple[str, list[dict]]]:
    """(scope, results) to group: each corpus alone, and all of them pooled (POOLED) when there are several scored on
    the same classes. A grouping by corpus is pooled only (a corpus alone is one group, unless it is the only one);
    one by speaker is per corpus only (pooling adds no group)."""
    alone = [(r["corpus"], [r]) for r in results]
    if by == "speaker" or len(results) <= 1:
        return alone
    pooled = [(POOLED, list(results))] if len({tuple(r["class_names"]) for r in results}) == 1 else []
    return pooled if by == "corpus" else alone + pooled


def _arrays(results: Sequence[dict], by: str) -> tuple[np.ndarray, np.ndarray, list, list[str]]:
    """(labels, predictions, speakers, groups) of the results' utterances; speakers are qualified by their corpus
    when several corpora are pooled (two corpora's speakers '01' are two people)."""
    pooled = len(results) > 1
    y, pred, speakers, groups = [], [], [], []
    for r in results:
        for u in r["utterances"]:
            y.append(u["label"])
            pred.append(u["pred"])
            s = u.get("speaker")
            speakers.append(None if s is None else f"{r['corpus']}/{s}" if pooled else s)
            groups.append(group_of(u, r["corpus"], by))
    return np.asarray(y, np.int64), np.asarray(pred, np.int64), speakers, groups


def no_interval(n: int, n_speakers: int | None) -> str | None:
    """Why a group of n utterances and n_speakers known speakers gets no interval (None: it gets one)."""
    if (n_speakers or 0) >= bs.MIN_CLUSTERS or n >= MIN_UTTERANCES:
        return None
    return (f"too small for an interval: {n} utterance{'s' * (n != 1)} (fewer than {MIN_UTTERANCES}) of "
            f"{n_speakers or 0} known speaker{'s' * (n_speakers != 1)} (fewer than {bs.MIN_CLUSTERS})")


def group_row(name: str, y: np.ndarray, pred: np.ndarray, speakers: list, num_classes: int, n_resamples: int,
              seed: int, label: str) -> dict:
    """One group's n, known speakers, every registered metric and its intervals (bootstrap.resampled, seeded by
    seed and `label`), or the reason it has none."""
    known = {s for s in speakers if s is not None}
    row: dict[str, Any] = {"group": name, "n": len(y), "n_speakers": len(known) or None,
                           **metrics.all_of(metrics.confusion_matrix(y, pred, num_classes))}
    row["no_interval"] = no_interval(row["n"], row["n_speakers"])
    row["intervals"] = (bs.resampled(y, pred, num_classes, speakers, n_resamples, seed, label)[0]
                        if n_resamples > 0 and row["no_interval"] is None else None)
    return row


def permutation_unit(groups: np.ndarray, speakers: list) -> tuple[str, str]:
    """('speaker' or 'utterance', why) for a permutation test of these group indices: whole speakers when every
    utterance's speaker is known, every speaker lies in one group and some group has more than one speaker."""
    if any(s is None for s in speakers):
        return "utterance", "speakers unknown"
    owners: dict[str, set] = {}
    for s, g in zip(speakers, groups):
        owners.setdefault(str(s), set()).add(int(g))
    if any(len(v) > 1 for v in owners.values()):
        return "utterance", "some speakers lie in more than one group"
    if len(owners) <= len({int(g) for g in groups}):
        return "utterance", "one speaker per group: permuting speakers would only rename the groups"
    return "speaker", f"{len(owners)} speakers, each in one group; utterances of one speaker are dependent"


def _gaps(y: np.ndarray, pred: np.ndarray, labels: np.ndarray, n_groups: int, num_classes: int) -> np.ndarray:
    """(B,) max - min UAR over the groups of each row of group labels (B, n)."""
    b, k = labels.shape[0], num_classes
    index = ((np.arange(b)[:, None] * n_groups + labels) * k + y[None]) * k + pred[None]
    cms = np.bincount(index.ravel(), minlength=b * n_groups * k * k).reshape(b, n_groups, k, k)
    uars = metrics.uar_of_confusions(cms)
    return np.nanmax(uars, axis=1) - np.nanmin(uars, axis=1)


def permutation_gap(y, pred, groups, speakers: list, num_classes: int, n_permutations: int,
                    rng: np.random.Generator) -> dict:
    """{uar_gap, p, unit, method, permutations} of the groups (indices 0..G-1, one per utterance): the observed
    max - min UAR and its permutation p-value (1 + #{gap* >= gap}) / (1 + B), which is never 0 and is uniform when
    group membership is exchangeable; whole speakers are permuted where permutation_unit says so."""
    y, pred, groups = (np.asarray(a, np.int64) for a in (y, pred, groups))
    n_groups = int(groups.max()) + 1
    observed = float(_gaps(y, pred, groups[None], n_groups, num_classes)[0])
    unit, why = permutation_unit(groups, speakers)
    if unit == "speaker":
        names, owner = np.unique(np.asarray([str(s) for s in speakers]), return_inverse=True)
        base = np.zeros(len(names), np.int64)
        base[owner] = groups
    else:
        base, owner = groups, np.arange(len(groups))
    extreme, rows = 0, max(1, _CHUNK // max(len(y), 1))
    for start in range(0, n_permutations, rows):
        shuffled = rng.permuted(np.tile(base, (min(rows, n_permutations - start), 1)), axis=1)
        extreme += int(np.sum(_gaps(y, pred, shuffled[:, owner], n_groups, num_classes) >= observed - 1e-12))
    what = "whole speakers" if unit == "speaker" else "utterances"
    return {"uar_gap": observed, "p": (1 + extreme) / (1 + n_permutations), "unit": unit,
            "method": f"permutation of {what} between the groups ({why}), {n_permutations} permutations",
            "permutations": int(n_permutations)}


def gap(rows: list[dict], y, pred, groups: list[str], speakers: list, num_classes: int, n_resamples: int,
        rng: np.random.Generator) -> dict:
    """The gap between the groups other than UNKNOWN: their names, the UAR gap (max - min; for two groups also the
    difference first - second), highest and lowest, and its permutation test (none without resamples); a note
    instead when fewer than two groups are known."""
    tested = [r["group"] for r in rows if r["group"] != UNKNOWN]
    out: dict[str, Any] = {"groups": tested, "left_out": [r["group"] for r in rows if r["group"] == UNKNOWN]}
    if len(tested) < 2:
        return {**out, "uar_gap": None, "p": None, "note": f"{len(tested)} known group{'s' * (len(tested) != 1)}: "
                "no gap to test"}
    uar = {r["group"]: r["uar"] for r in rows}
    out.update(uar_gap=max(uar[g] for g in tested) - min(uar[g] for g in tested),
               highest=max(tested, key=uar.get), lowest=min(tested, key=uar.get),
               difference=uar[tested[0]] - uar[tested[1]] if len(tested) == 2 else None)
    if n_resamples <= 0:
        return {**out, "p": None, "note": "no permutation test (--bootstrap 0)"}
    keep = [i for i, g in enumerate(groups) if g != UNKNOWN]
    index = {g: i for i, g in enumerate(tested)}
    test = permutation_gap(np.asarray(y)[keep], np.asarray(pred)[keep], [index[groups[i]] for i in keep],
                           [speakers[i] for i in keep], num_classes, n_resamples, rng)
    return {**out, **{k: v for k, v in test.items() if k != "uar_gap"}}


def _order(names) -> list[str]:
    """Group names sorted, UNKNOWN last."""
    return sorted(set(names), key=lambda g: (g == UNKNOWN, g))


def grouped(results: Sequence[dict], by: str, n_resamples: int, seed: int) -> list[dict]:
    """One entry per scope (each corpus, then the pooled corpora; see scopes) of one grouping: {scope, corpora, by,
    split, groups: [group_row, ...], gap}."""
    out = []
    for scope, members in scopes(results, by):
        y, pred, speakers, groups = _arrays(members, by)
        k = len(members[0]["class_names"])
        members_of: dict[str, list[int]] = {}
        for i, g in enumerate(groups):
            members_of.setdefault(g, []).append(i)
        rows = []
        for name in _order(groups):
            pick = members_of[name]
            rows.append(group_row(name, y[pick], pred[pick], [speakers[i] for i in pick], k, n_resamples, seed,
                                  f"{scope}/{by}/{name}"))
        rng = bs.rng_for(seed, scope, by, "permutation")
        out.append({"scope": scope, "corpora": [r["corpus"] for r in members], "by": by,
                    "split": members[0].get("split"), "groups": rows,
                    "gap": gap(rows, y, pred, groups, speakers, k, n_resamples, rng)})
    return out


def gender_warnings(results: Sequence[dict], by: Sequence[str]) -> list[str]:
    """One line per corpus prepared before genders were recorded (when grouping by gender): its utterances count
    as unknown, and preparing it again records them."""
    if "gender" not in by:
        return []
    return [f"{r['corpus']} was prepared before genders were recorded, so its utterances count as gender unknown; "
            f"prepare it again: {r['prepared_without_genders']}" for r in results if r.get("prepared_without_genders")]


def by_groups(results: Sequence[dict], by: Sequence[str], n_resamples: int, seed: int) -> dict:
    """The per-group results of evaluated corpora: {by, min_utterances, min_speakers, resamples, seed, tables (one
    grouped entry per scope and grouping), warnings}; results scored on different classes are not pooled (noted)."""
    tables = [entry for b in by for entry in grouped(results, b, n_resamples, seed)]
    notes = (["the corpora are scored on different classes, so they are not pooled"]
             if len({tuple(r["class_names"]) for r in results}) > 1 else [])
    return {"by": list(by), "min_utterances": MIN_UTTERANCES, "min_speakers": bs.MIN_CLUSTERS,
            "resamples": int(n_resamples), "seed": int(seed), "tables": tables, "notes": notes,
            "warnings": gender_warnings(results, by)}
