"""A recording's timeline on disk: CSV and JSON with one row per window, and a PNG of the probabilities over time,
written as one set (write_timeline)."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Sequence

import numpy as np

from exhubert_jax.process.atomic_files import atomic_files

# Arousal x valence: hue for valence (negative blue/red, neutral grey/violet, positive green/amber), low arousal
# cool and light, high arousal warm and saturated.
CLASS_COLOURS = {"low_negative": "#4575b4", "low_neutral": "#bababa", "low_positive": "#66bd63",
                 "high_negative": "#d73027", "high_neutral": "#8073ac", "high_positive": "#fdae61"}
OTHER_COLOURS = ("#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d", "#666666")


def colours(class_names: Sequence[str]) -> list[str]:
    """A colour per class: the arousal x valence ones for the 6 emotion classes, a qualitative palette otherwise."""
    return [CLASS_COLOURS.get(n, OTHER_COLOURS[i % len(OTHER_COLOURS)]) for i, n in enumerate(class_names)]


SUFFIXES = (".csv", ".json", ".png")


def output_files(stem: Path) -> list[Path]:
    """STEM.csv, STEM.json and STEM.png (the suffix added to STEM's name, which may hold dots of its own)."""
    return [stem.with_name(stem.name + suffix) for suffix in SUFFIXES]


def write_timeline(rows: Sequence[dict], class_names: Sequence[str], stem: Path, meta: dict,
                   title: str = "") -> list[Path]:
    """STEM.csv, STEM.json and STEM.png as one set: written beside them, then renamed in together, so an error, Ctrl-C
    or a full disk (one DiskFullError naming STEM.csv) leaves an earlier set as it was and no partial file."""
    files = output_files(stem)
    with atomic_files(*files) as tmp:
        write_tables(rows, class_names, tmp / stem.name, meta)
        plot_timeline(rows, class_names, tmp / files[2].name, title=title)
    return files


def write_tables(rows: Sequence[dict], class_names: Sequence[str], stem: Path, meta: dict) -> list[Path]:
    """STEM.csv (start, end, a probability per class, top; silence rows have empty probabilities) and STEM.json."""
    table, doc, _ = output_files(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    with open(table, "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["start_s", "end_s", *class_names, "top"])
        for r in rows:
            probs = r["probabilities"]
            cells = [f"{probs[n]:.6f}" for n in class_names] if probs else [""] * len(class_names)
            out.writerow([f"{r['start']:.3f}", f"{r['end']:.3f}", *cells, r["top"]])
    doc.write_text(json.dumps({**meta, "class_names": list(class_names), "windows": rows}))
    return [table, doc]


def intervals(rows: Sequence[dict]) -> tuple[np.ndarray, np.ndarray]:
    """(left, width) to draw each row: overlapping windows get the hop around their centre, spans their own extent."""
    starts, ends = np.array([r["start"] for r in rows]), np.array([r["end"] for r in rows])
    if len(rows) > 1 and np.any(starts[1:] < ends[:-1]):
        centres = (starts + ends) / 2
        hop = float(np.diff(centres).min())
        return centres - hop / 2, np.full(len(rows), hop)
    return starts, ends - starts


def plot_timeline(rows: Sequence[dict], class_names: Sequence[str], path: Path, title: str = "") -> Path:
    """Probabilities stacked over time (silence and non-speech left blank) above a band of the top class."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    palette = colours(class_names)
    left, width = intervals(rows)
    probs = np.array([[r["probabilities"][n] if r["probabilities"] else 0.0 for n in class_names] for r in rows])
    fig = Figure(figsize=(11, 4), dpi=100)
    FigureCanvasAgg(fig)
    top, band = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [5, 1]})
    edges = np.append(left, left[-1] + width[-1])  # rows are contiguous: a step per row, no gaps between bars
    onehot = np.array([[float(r["top"] == n) for n in class_names] for r in rows])
    for ax, values in ((top, probs), (band, onehot)):
        ax.stackplot(edges, np.vstack([values, values[-1:]]).T, colors=palette, step="post", linewidth=0)
        ax.set_ylim(0, 1)
    top.set_ylabel("probability")
    top.set_title(title)
    markers = sorted({r["top"] for r in rows} - set(class_names))
    band.set_yticks([])
    band.set_ylabel("top", rotation=0, ha="right", va="center")
    band.set_xlabel("time (s)")
    band.set_xlim(rows[0]["start"], rows[-1]["end"])
    handles = [Patch(color=c, label=n) for n, c in zip(class_names, palette)]
    handles += [Patch(facecolor="white", edgecolor="black", label=m) for m in markers]
    fig.legend(handles=handles, loc="center right", fontsize=8, frameon=False)
    fig.subplots_adjust(right=0.84, hspace=0.08)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path
