"""Speaker overlap between the splits of one corpus, against the speaker independence its prepare record claims
(info.json's summary: speaker_independent, test_speakers_disjoint)."""

from __future__ import annotations

from itertools import combinations
from typing import Any, Mapping

from exhubert_jax.data.audit.scan import SplitScan


def speaker_overlap(splits: Mapping[str, SplitScan], claim: Mapping[str, Any]) -> dict[str, Any]:
    """Speakers per split, those shared by each pair of splits, what the record claims and what was found: verdict
    'confirmed', 'contradicted' (a claim of independence with shared speakers), 'no claim' or 'speakers unknown'."""
    speakers = {s: sorted({p for p in scan.speakers if p is not None}) for s, scan in splits.items()}
    shared = {f"{a}-{b}": sorted(set(speakers[a]) & set(speakers[b])) for a, b in combinations(splits, 2)}
    found_independent = not any(shared.values())
    found_disjoint = not any(v for k, v in shared.items() if "test" in k.split("-"))
    claimed = {k: claim.get(k) for k in ("speaker_independent", "test_speakers_disjoint")}
    if not any(speakers.values()):
        verdict = "speakers unknown"
    elif all(v is None for v in claimed.values()):
        verdict = "no claim"
    elif (claimed["speaker_independent"] and not found_independent) or \
            (claimed["test_speakers_disjoint"] and not found_disjoint):
        verdict = "contradicted"
    else:
        verdict = "confirmed"
    return {"speakers": {s: len(v) for s, v in speakers.items()},
            "unknown_speaker": {s: sum(p is None for p in scan.speakers) for s, scan in splits.items()},
            "shared": {k: v for k, v in shared.items() if v}, "claimed": claimed,
            "found": {"speaker_independent": found_independent, "test_speakers_disjoint": found_disjoint},
            "verdict": verdict}
