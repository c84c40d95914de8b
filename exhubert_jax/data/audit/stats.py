"""Per corpus and split: class counts, durations, silence and clipping ratios, the source files' sample rates; and
their plots (PNG, matplotlib's Agg backend)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from exhubert_jax.data.audit.scan import SplitScan
from exhubert_jax.data.sources.labels import CLASSES

CLIPPED_FILE = 0.001  # a file with more clipped samples than this fraction counts as clipped


def split_stats(scan: SplitScan) -> dict[str, Any]:
    """The statistics of one split."""
    secs = scan.seconds
    counts = Counter(int(x) for x in scan.labels)
    rates = Counter("unknown" if r is None else str(r) for r in scan.source_rates)
    n = len(scan)
    return {"n": n, "classes": {c: counts.get(i, 0) for i, c in enumerate(CLASSES)},
            **({"no_hard_label": counts[-1]} if counts.get(-1) else {}),
            "hours": round(float(secs.sum()) / 3600, 4),
            "seconds": {k: round(float(f(secs)), 3) if n else None
                        for k, f in (("mean", np.mean), ("min", np.min), ("median", np.median), ("max", np.max))},
            "silence_ratio_mean": round(float(scan.silence.mean()), 4) if n else None,
            "clipping_ratio_mean": round(float(scan.clipping.mean()), 6) if n else None,
            "clipped_files": int(np.sum(scan.clipping > CLIPPED_FILE)),
            "source_rates": dict(sorted(rates.items()))}


def plot_stats(scans: Sequence[SplitScan], folder: Path) -> list[str]:
    """durations.png, classes.png and quality.png (silence and clipping ratios) of every split; the file names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [f"{s.corpus}/{s.split}" for s in scans]
    height = max(3.0, 0.35 * len(scans) + 1.5)
    fig, ax = plt.subplots(figsize=(8, height))
    ax.boxplot([s.seconds if len(s) else [0.0] for s in scans], vert=False, tick_labels=names)
    ax.set_xlabel("duration (s)")
    ax.set_title("utterance durations")
    fig.tight_layout()
    fig.savefig(folder / "durations.png", dpi=100)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(8, height))
    left = np.zeros(len(scans))
    for i, c in enumerate(CLASSES):
        counts = np.asarray([np.sum(s.labels == i) for s in scans], float)
        ax.barh(names, counts, left=left, label=c)
        left += counts
    ax.set_xlabel("utterances")
    ax.set_title("class counts")
    ax.legend(fontsize="small", loc="lower right")
    fig.tight_layout()
    fig.savefig(folder / "classes.png", dpi=100)
    plt.close(fig)

    fig, axes = plt.subplots(1, 2, figsize=(10, height), sharey=True)
    for ax, what, label in ((axes[0], "silence", "silence ratio (20 ms frames below -40 dBFS)"),
                            (axes[1], "clipping", "clipping ratio (samples at full scale)")):
        ax.boxplot([getattr(s, what) if len(s) else [0.0] for s in scans], vert=False, tick_labels=names)
        ax.set_xlabel(label)
    fig.suptitle("silence and clipping per utterance")
    fig.tight_layout()
    fig.savefig(folder / "quality.png", dpi=100)
    plt.close(fig)
    return ["durations.png", "classes.png", "quality.png"]
