"""The audit's report: one JSON document, its Markdown rendering and the plots, written into one folder at once
(process.atomic_files), and the one-line summary."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

from exhubert_jax.data.audit.pairs import PLACES
from exhubert_jax.data.audit.scan import SplitScan
from exhubert_jax.data.audit.stats import plot_stats
from exhubert_jax.process.atomic_files import atomic_directory

LISTED = 100  # pairs listed per section of the Markdown (the JSON lists all)


def counts(pairs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Pairs per placement and per leak."""
    places = Counter(p["placement"] for p in pairs)
    leaks = Counter(p["leak"] for p in pairs if p["leak"])
    return {"pairs": len(pairs), **{k: places.get(k, 0) for k in PLACES},
            "test_into_train": leaks.get("test", 0), "validation_into_train": leaks.get("validation", 0)}


def summary(doc: dict[str, Any]) -> dict[str, Any]:
    """The headline numbers of a report."""
    exact, near = counts(doc["exact"]), counts(doc["near"])
    contradicted = [c for c, s in doc["speakers"].items() if s["verdict"] == "contradicted"]
    return {"corpora": len(doc["corpora"]), "utterances": doc["utterances"], "exact": exact, "near": near,
            "test_into_train": exact["test_into_train"] + near["test_into_train"],
            "validation_into_train": exact["validation_into_train"] + near["validation_into_train"],
            "speaker_claims_contradicted": contradicted}


def summary_line(doc: dict[str, Any], out: Path) -> str:
    """The one line printed on stdout."""
    s = doc["summary"]
    speakers = (f"speaker independence contradicted in {', '.join(s['speaker_claims_contradicted'])}"
                if s["speaker_claims_contradicted"] else "speaker claims hold")
    corpora = f"{s['corpora']} {'corpus' if s['corpora'] == 1 else 'corpora'}"
    return (f"audit of {corpora} ({s['utterances']} utterances): {s['exact']['pairs']} exact and "
            f"{s['near']['pairs']} near-duplicate pairs; {s['test_into_train']} test and {s['validation_into_train']} "
            f"validation file(s) in training data; {speakers} -> {out / 'report.md'}")


def _where(side: dict[str, Any]) -> str:
    return f"{side['corpus']}/{side['split']}: `{side['path']}`"


def _pair_rows(pairs: Sequence[dict[str, Any]], near: bool) -> list[str]:
    """A Markdown table of pairs (at most LISTED)."""
    if not pairs:
        return ["none", ""]
    head = "| file | duplicate | placement | leak |" + (" matching hashes | offset (s) |" if near else "")
    rows = [head, "|" + "---|" * (6 if near else 4)]
    for p in pairs[:LISTED]:
        extra = f" {p['matches']} ({p['fraction']:.0%}) | {p['offset_s']:+.2f} |" if near else ""
        rows.append(f"| {_where(p['a'])} | {_where(p['b'])} | {p['placement']} | {p['leak'] or ''} |{extra}")
    if len(pairs) > LISTED:
        rows.append(f"\n... and {len(pairs) - LISTED} more (audit.json lists all)")
    return rows + [""]


def _leaks(doc: dict[str, Any]) -> list[str]:
    """The leakage section: every test or validation file found in training data."""
    leaked = [p for kind in ("exact", "near") for p in doc[kind] if p["leak"]]
    lines = ["## Leakage: validation and test files in training data", "",
             ("A training file (first column) with identical or near-identical audio in a validation or test split, "
              "of its own corpus or of another one (cross-corpus leakage)."), ""]
    return lines + ["### exact", ""] + _pair_rows([p for p in leaked if p["kind"] == "exact"], False) + \
        ["### near", ""] + _pair_rows([p for p in leaked if p["kind"] == "near"], True)


def _speakers(doc: dict[str, Any]) -> list[str]:
    """The speaker section: speakers per split, shared ones, the record's claim and the verdict."""
    head = ("| corpus | speakers per split | shared between splits | claimed independent / test disjoint | found "
            "| verdict |")
    lines = ["## Speakers", "", head, "|---|---|---|---|---|---|"]
    for corpus, s in doc["speakers"].items():
        shared = "; ".join(f"{k}: {', '.join(v[:8])}{' ...' if len(v) > 8 else ''}" for k, v in s["shared"].items())
        claimed = " / ".join(str(s["claimed"][k]) for k in ("speaker_independent", "test_speakers_disjoint"))
        found = " / ".join(str(s["found"][k]) for k in ("speaker_independent", "test_speakers_disjoint"))
        per = ", ".join(f"{k} {v}" for k, v in s["speakers"].items())
        lines.append(f"| {corpus} | {per} | {shared or 'none'} | {claimed} | {found} | {s['verdict']} |")
    return lines + [""]


def _stats(doc: dict[str, Any]) -> list[str]:
    """The statistics section: one row per split, and the plots."""
    head = ("| corpus/split | n | classes | hours | seconds mean (min-max) | silence | clipping (files) "
            "| source rates |")
    lines = ["## Statistics", "", head, "|---|---|---|---|---|---|---|---|"]
    for name, s in doc["stats"].items():
        classes = ", ".join(f"{k} {v}" for k, v in s["classes"].items() if v)
        secs = s["seconds"]
        span = f"{secs['mean']:.2f} ({secs['min']:.2f}-{secs['max']:.2f})" if s["n"] else "-"
        silence = f"{s['silence_ratio_mean']:.1%}" if s["n"] else "-"
        clipping = f"{s['clipping_ratio_mean']:.3%} ({s['clipped_files']})" if s["n"] else "-"
        rates = ", ".join(f"{k} Hz: {v}" if k != "unknown" else f"unknown: {v}" for k, v in s["source_rates"].items())
        lines.append(f"| {name} | {s['n']} | {classes} | {s['hours']:.3f} | {span} | {silence} | {clipping} | "
                     f"{rates} |")
    return lines + [""] + [f"![{p}]({p})" for p in doc["plots"]] + [""]


def markdown(doc: dict[str, Any]) -> str:
    """The report as Markdown."""
    s = doc["summary"]
    table = [("| | pairs | within split | across splits | across corpora | test into train | validation into "
              "train |"), "|---|---|---|---|---|---|---|"]
    for kind in ("exact", "near"):
        c = s[kind]
        table.append(f"| {kind} | {c['pairs']} | {c['within split']} | {c['across splits']} | "
                     f"{c['across corpora']} | {c['test_into_train']} | {c['validation_into_train']} |")
    digests = ", ".join(f"{k}: {v}" for k, v in doc["digests"].items())
    settings = doc["settings"]
    lines = [f"# Leakage audit of {doc['data_dir']}", "",
             (f"{s['corpora']} corpora, {s['utterances']} utterances ({', '.join(doc['corpora'])}). PCM digests: "
              f"{digests}. Near-duplicates: at least {settings['min_matches']} landmark hashes and "
              f"{settings['min_fraction']:.0%} of the smaller file's agreeing on one time offset."), "", *table, ""]
    if doc["fold_pairs"]:
        lines += [(f"{doc['fold_pairs']} duplicate pairs between folds of one corpus are not listed (folds share "
                   "their files by design)."), ""]
    lines += _leaks(doc)
    for kind, title in (("exact", "Exact duplicates (identical 16 kHz PCM)"),
                        ("near", "Near-duplicates (landmark fingerprints; not identical)")):
        lines += [f"## {title}", ""]
        for place in PLACES:
            lines += [f"### {place}", ""] + _pair_rows([p for p in doc[kind] if p["placement"] == place],
                                                        kind == "near")
    return "\n".join(lines + _speakers(doc) + _stats(doc))


def write_report(doc: dict[str, Any], scans: Sequence[SplitScan], out: Path) -> Path:
    """report.md, audit.json and the plots, replacing `out` at once."""
    with atomic_directory(out) as tmp:
        doc["plots"] = plot_stats(scans, tmp)
        (tmp / "audit.json").write_text(json.dumps(doc, indent=1) + "\n")
        (tmp / "report.md").write_text(markdown(doc) + "\n")
    return out
