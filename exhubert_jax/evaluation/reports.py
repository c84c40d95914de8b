"""Run logs (metrics.jsonl + TensorBoard), Markdown tables shaped like the paper's Tables 1 and 2, and plots. The
per-corpus table, the Table-2 comparison and the paired tests show every registered metric (metrics.METRICS), in %
or, for metrics that are not fractions (kappa), with 3 decimals; an undefined value shows as '–'."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from exhubert_jax.evaluation.metrics import METRICS, Metric
from exhubert_jax.evaluation.split_caveats import MARK, caveat_lines
from exhubert_jax.process.atomic_files import atomic_file


class RunLog:
    """metrics.jsonl + TensorBoard (tensorboardX) in the workdir; active=False writes nothing (the processes of a
    multi-process run other than the first)."""

    def __init__(self, workdir: Path, active: bool = True):
        self.active = active
        if not active:
            return
        from tensorboardX import SummaryWriter

        self.jsonl = open(workdir / "metrics.jsonl", "a")
        self.tb = SummaryWriter(str(workdir / "tb"))

    def write(self, event: str, step: int, values: Mapping[str, Any]) -> None:
        """One JSON line and scalars under '{event}/{name}'."""
        if not self.active:
            return
        self.jsonl.write(json.dumps({"event": event, "step": int(step), "time": time.time(), **values}) + "\n")
        self.jsonl.flush()
        for k, v in values.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                self.tb.add_scalar(f"{event}/{k}", v, int(step))
        self.tb.flush()

    def close(self) -> None:
        """Flush and close both sinks."""
        if not self.active:
            return
        self.jsonl.close()
        self.tb.close()


def uar_table(uars: Mapping[str, float], title: str = "validation UAR",
              caveats: Mapping[str, str | None] | None = None, split: str = "validation") -> str:
    """A Markdown table: one row per corpus (marked when its split has a caveat), then the mean, then the caveats."""
    caveats = caveats or {}
    rows = [f"| corpus | {title} |", "|---|---|"]
    rows += [f"| {k}{f' {MARK}' if caveats.get(k) else ''} | {v:.4f} |" for k, v in sorted(uars.items())
             if k not in ("mean", "step")]
    if "mean" in uars:
        rows.append(f"| **mean** | **{uars['mean']:.4f}** |")
    notes = caveat_lines(caveats, split)
    return "\n".join(rows + ([""] + notes if notes else []))


def _save(fig, path: str | Path, **kwargs) -> Path:
    """Lay out, write as PNG (making the folder; beside it, then renamed in: never half a file) and close a figure."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path = Path(path)
    try:
        with atomic_file(path) as tmp:
            fig.savefig(tmp, format="png", **kwargs)
    finally:
        plt.close(fig)
    return path


def plot_uar_curve(history: list[dict], path: str | Path) -> Path:
    """Validation UAR over steps, one line per corpus (the paper's Figure 3), saved as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [h["step"] for h in history]
    fig, ax = plt.subplots(figsize=(6, 4))
    names = sorted(k for k in history[0] if k not in ("step", "mean"))
    for name in names:
        ax.plot(steps, [h[name] for h in history], marker="o", label=name)
    if len(names) > 1:
        ax.plot(steps, [h["mean"] for h in history], color="black", linestyle="--", label="mean")
    ax.set_xlabel("step")
    ax.set_ylabel("validation UAR")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(fig, path, dpi=120)


def _pct(v) -> str:
    """A fraction as a percentage with one decimal, '–' when undefined."""
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.1f}"


def _nanmean(values: Sequence[float]) -> float:
    """Unweighted mean of the defined values (NaN when none is), as the paper's "Average UAR over all datasets"."""
    defined = [v for v in values if not math.isnan(v)]
    return float(np.mean(defined)) if defined else float("nan")


def _ci(v, interval: Sequence[float] | None) -> str:
    """A percentage, with its interval as ' [low, high]' when there is one."""
    return _pct(v) + (f" [{_pct(interval[0])}, {_pct(interval[1])}]" if interval else "")


def _shown(metric: Metric, v, interval: Sequence[float] | None = None) -> str:
    """A metric's value as its tables show it: in % for a fraction, else 3 decimals; its interval when it has one."""
    return _ci(v, interval) if metric.percent else _num(v, interval)


def _value(result: Mapping[str, Any], name: str) -> float:
    """A result's value of a metric; NaN when it has none (results written before the metric was registered)."""
    v = result.get(name)
    return float("nan") if v is None else float(v)


def markdown_table(results: Sequence[dict], average_interval: Sequence[float] | None = None,
                   average_intervals: Mapping[str, Sequence[float] | None] | None = None) -> str:
    """Paper Table 1/2 shape: rows = corpora, columns n and every registered metric (UAR, WA, macro-F1 in %, kappa,
    ...), an average row; then class recalls. Results with 'intervals' (statistics.add_metric_intervals) show 95 %
    intervals and the unit resampled; the average row shows `average_intervals` (metric -> interval), or
    `average_interval` as UAR's."""
    cis = [r.get("intervals") for r in results]
    shown = any(cis)
    average_intervals = dict(average_intervals or {})
    if average_interval is not None:
        average_intervals.setdefault("uar", average_interval)
    lines = ["| Corpus | # utterances | " + " | ".join(m.heading for m in METRICS.values()) + " |"
             + (" Resampled unit |" if shown else ""),
             "|---|---:|" + "---:|" * len(METRICS) + ("---|" if shown else "")]
    for r, ci in zip(results, cis):
        cells = [_shown(m, _value(r, k), ci and ci.get(k)) for k, m in METRICS.items()]
        mark = f" {MARK}" if r.get("caveat") else ""
        lines.append(f"| {r['corpus']}{mark} | {r['n']} | " + " | ".join(cells) + " |"
                     + (f" {ci['short'] if ci else '–'} |" if shown else ""))
    if results:
        cells = [_shown(m, _nanmean([_value(r, k) for r in results]), average_intervals.get(k))
                 for k, m in METRICS.items()]
        total = sum(r["n"] for r in results)
        lines.append(f"| **Average over all datasets** | {total} | " + " | ".join(cells) + " |"
                     + (" corpora independently |" if shown else ""))
    if shown:
        first = next(ci for ci in cis if ci)
        lines += ["", f"95 % percentile intervals from {first['resamples']} bootstrap resamples (seed {first['seed']}) "
                  "of each test set: of its speakers where the split knows at least 5, else of its utterances."]
    undefined = [f"{m.label} {m.undefined}" for k, m in METRICS.items()
                 if m.undefined and any(math.isnan(_value(r, k)) and k in r for r in results)]
    if undefined:
        lines += ["", f"–: undefined ({'; '.join(undefined)})."]
    caveats = [line for r in results for line in caveat_lines({r["corpus"]: r.get("caveat")}, r.get("split", ""))]
    lines += ["", *caveats] if caveats else []
    lines += ["", *per_class_table(results)]
    return "\n".join(lines).rstrip() + "\n"


def per_class_table(results: Sequence[dict]) -> list[str]:
    """Markdown lines of per-class recall (%) per corpus, one table per distinct class-name list."""
    lines: list[str] = []
    groups: dict[tuple[str, ...], list[dict]] = {}
    for r in results:
        groups.setdefault(tuple(r["class_names"]), []).append(r)
    for names, rows in groups.items():
        lines += [f"| Recall (%) | {' | '.join(names)} |", "|---|" + "---:|" * len(names)]
        lines += [f"| {r['corpus']} | " + " | ".join(_pct(r["per_class_recall"][n]) for n in names) + " |"
                  for r in rows]
        lines.append("")
    return lines


def plot_confusion(cm, class_names: Sequence[str], path: str | Path, title: str | None = None) -> Path:
    """Write a row-normalised confusion-matrix heat map (counts annotated) as a PNG; returns the path."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    cm = np.asarray(cm, np.float64)
    support = cm.sum(axis=1, keepdims=True)
    frac = np.divide(cm, support, out=np.zeros_like(cm), where=support > 0)
    k = len(class_names)
    fig = Figure(figsize=(1.2 + 0.9 * k, 1.0 + 0.8 * k), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    im = ax.imshow(frac, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of true class")
    ax.set_xticks(range(k), class_names, rotation=45, ha="right")
    ax.set_yticks(range(k), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(k):
        for j in range(k):
            count = cm[i, j]
            text = f"{int(count)}" if float(count).is_integer() else f"{count:.1f}"
            ax.text(j, i, text, ha="center", va="center", fontsize=8, color="white" if frac[i, j] > 0.5 else "black")
    if title:
        ax.set_title(title)
    return _save(fig, path)


def audio_table(results: Sequence[dict], class_names: Sequence[str], dimensions: Sequence[str] = ()) -> str:
    """Markdown table of predict_audio results: file, top class, probability (%) per class (models with a
    classifier), then each dimension's value on [0, 1]; failed files marked."""
    names = list(class_names) if any("probabilities" in r for r in results) else []
    columns = names + list(dimensions)
    lines = [f"| File | Top class | {' | '.join(columns)} |", "|---|---|" + "---:|" * len(columns)]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['file']} | ERROR: {r['error']} |" + " |" * len(columns))
        else:
            cells = [f"{100 * r['probabilities'][n]:.1f}" for n in names]
            cells += [f"{r['dimensions'][d]:.3f}" for d in dimensions]
            lines.append(f"| {r['file']} | {r['top']} | {' | '.join(cells)} |")
    return "\n".join(lines) + "\n"


def comparison_table(uars: Mapping[str, Mapping[str, float]], trainable: Mapping[str, int],
                     intervals: Mapping[str, Mapping[str, Sequence[float] | None]] | None = None,
                     marks: Mapping[str, Mapping[str, str]] | None = None, metric: str = "uar") -> str:
    """The paper's Table 2 shape for one registered metric (UAR by default): rows are corpora, columns are models,
    then the average over all corpora and the number of trainable parameters (M). `uars` maps model -> corpus ->
    the metric's value; `intervals` model -> corpus (or 'average') -> [low, high]; `marks` model -> corpus -> a mark
    appended to the cell."""
    m = METRICS[metric]
    models = list(uars)
    corpora = list(dict.fromkeys(c for model in models for c in uars[model]))
    intervals, marks = intervals or {}, marks or {}

    def cell(model: str, c: str, value: float) -> str:
        """A value with its interval and mark, when it has them."""
        return _shown(m, value, intervals.get(model, {}).get(c)) + marks.get(model, {}).get(c, "")

    lines = ["| Dataset | " + " | ".join(models) + " |", "|---|" + "---:|" * len(models)]
    for c in corpora:
        lines.append(f"| {c} | " + " | ".join(cell(model, c, _nan(uars[model].get(c))) for model in models) + " |")
    lines.append(f"| **Average {m.label} over all datasets** | " + " | ".join(
        cell(model, "average", _nanmean([_nan(uars[model].get(c)) for c in corpora])) for model in models) + " |")
    lines.append("| Number of trainable parameters | "
                 + " | ".join(f"{trainable[model] / 1e6:.2f} M" for model in models) + " |")
    return "\n".join(lines) + "\n"


def comparison_tables(values: Mapping[str, Mapping[str, Mapping[str, float]]], trainable: Mapping[str, int],
                      intervals: Mapping[str, Mapping[str, Mapping[str, Sequence[float] | None]]] | None = None,
                      marks: Mapping[str, Mapping[str, Mapping[str, str]]] | None = None) -> str:
    """comparison_table of every registered metric, each under a line naming it ('UAR (%)'): `values`, `intervals`
    and `marks` map metric -> what comparison_table takes for it."""
    intervals, marks = intervals or {}, marks or {}
    return "\n".join(f"{m.heading}\n\n" + comparison_table(values[k], trainable, intervals.get(k), marks.get(k), k)
                     for k, m in METRICS.items() if k in values)


def _nan(v) -> float:
    """A value, NaN for None."""
    return float("nan") if v is None else float(v)


def paired_table(rows: Sequence[dict], baseline: str) -> str:
    """Markdown tables of statistics.compare_to_baseline rows, one per registered metric (UAR first): the
    difference (points for a metric in %, else as it is), its 95 % interval, p-values. Rows without 'metrics'
    (written before there were others) show under UAR only."""
    blocks = []
    for k, m in METRICS.items():
        unit = " (points)" if m.percent else ""
        lines = [f"| Dataset | run | Δ{m.label} vs {baseline}{unit} | 95 % CI | p | p (Holm) |",
                 "|---|---|---:|---:|---:|---:|"]
        for r in rows:
            e = r.get("metrics", {}).get(k) or (r if k == "uar" else None)
            if e is None:
                continue
            lines.append(f"| {r['corpus']} | {r['column']} | {_delta(m, e['diff'])} | {_delta_interval(m, e)} "
                         f"| {_p(e, 'p')} | {_p(e, 'p_holm')}{' *' if e.get('significant') else ''} |")
        blocks.append("\n".join(lines) + "\n")
    return "\n".join(blocks)


def _delta(m: Metric, d) -> str:
    """A signed difference: points (x100, one decimal) for a metric in %, else 3 decimals; '–' when undefined."""
    if d is None or math.isnan(d):
        return "–"
    return f"{100 * d:+.1f}" if m.percent else f"{d:+.3f}"


def _delta_interval(m: Metric, e: Mapping[str, Any]) -> str:
    """'[low, high]' of a difference, '–' when it has none."""
    iv = e.get("interval")
    return f"[{_delta(m, iv[0])}, {_delta(m, iv[1])}]" if iv else "–"


def _p(e: Mapping[str, Any], key: str) -> str:
    """A p-value with 3 decimals; '–' when absent or undefined."""
    v = e.get(key)
    return "–" if v is None or math.isnan(v) else f"{v:.3f}"


def cells_table(values: Mapping[str, Mapping[str, float]], paired: Mapping[str, dict], baseline: str) -> str:
    """One Markdown table of runs on the same test utterances (a sweep's cells): a row per run with every registered
    metric, then each metric's difference from the baseline run with its paired-bootstrap interval and its
    Holm-corrected p-value (paired_tests.compare_metrics rows, add_holm applied)."""
    metrics = list(METRICS.values())
    head = ["cell", *(m.heading for m in metrics), *(f"Δ {m.label} [95 % CI], p" for m in metrics)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, row_values in values.items():
        row = [name, *(_shown(m, row_values[m.name]) for m in metrics)]
        for m in metrics:
            d = paired[name]["metrics"][m.name] if name != baseline else None
            row.append("baseline" if d is None else f"{_delta(m, d['diff'])} {_delta_interval(m, d)}, "
                                                      f"p={_p(d, 'p_holm')}")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def plot_reliability(rel: Mapping[str, np.ndarray], path: str | Path, title: str | None = None) -> Path:
    """Reliability diagram (calibration.reliability): accuracy (bars) and mean confidence (dots) per confidence bin
    against the diagonal, and the share of predictions per bin underneath; saved as PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    edges, counts = np.asarray(rel["edges"]), np.asarray(rel["counts"])
    centers, width = (edges[:-1] + edges[1:]) / 2, np.diff(edges)
    acc, conf = np.nan_to_num(rel["accuracy"]), np.nan_to_num(rel["confidence"])
    fig = Figure(figsize=(4.5, 5.2), dpi=100)
    FigureCanvasAgg(fig)
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    used = counts > 0
    top.bar(centers[used], acc[used], width[used], edgecolor="black", color="tab:blue", label="accuracy")
    top.plot(centers[used], conf[used], "o", color="tab:red", label="mean confidence")
    top.plot([0, 1], [0, 1], linestyle="--", color="gray")
    top.set_ylim(0, 1)
    top.set_ylabel("accuracy")
    top.legend(loc="upper left", fontsize=8)
    bottom.bar(centers, counts / max(counts.sum(), 1.0), width, color="gray", edgecolor="black")
    bottom.set_xlim(0, 1)
    bottom.set_xlabel("confidence (top-class probability)")
    bottom.set_ylabel("share")
    if title:
        top.set_title(title, fontsize=9)
    return _save(fig, path)


def calibration_table(results: Sequence[dict]) -> str:
    """Markdown table of each result's 'calibration' (ECE and MCE in %, NLL, Brier); with 'calibration_before'
    (an uncalibrated copy) each figure shows before -> after."""
    keys = (("ece", "ECE (%)", 100, 1), ("mce", "MCE (%)", 100, 1), ("nll", "NLL", 1, 3), ("brier", "Brier", 1, 3))

    def fmt(r: dict, key: str, scale: float, digits: int) -> str:
        """One figure, as 'before → after' when the result has an uncalibrated copy."""
        after = f"{scale * r['calibration'][key]:.{digits}f}"
        before = r.get("calibration_before")
        return f"{scale * before[key]:.{digits}f} → {after}" if before else after

    first = "Corpus (T = 1 → fitted T)" if any(r.get("calibration_before") for r in results) else "Corpus"
    lines = [f"| {first} | " + " | ".join(k[1] for k in keys) + " |", "|---|" + "---:|" * len(keys)]
    lines += [f"| {r['corpus']} | " + " | ".join(fmt(r, key, scale, d) for key, _, scale, d in keys) + " |"
              for r in results]
    return "\n".join(lines) + "\n"


def _num(v, interval: Sequence[float] | None = None, digits: int = 3) -> str:
    """A figure with `digits` decimals and its interval as ' [low, high]', '–' when undefined."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return f"{v:.{digits}f}" + (f" [{interval[0]:.{digits}f}, {interval[1]:.{digits}f}]" if interval else "")


def dimensional_table(results: Sequence[dict]) -> str:
    """Markdown table of the regression metrics (result['dimensional']): per corpus and dimension CCC (with its 95 %
    interval when there is one), Pearson's r and MAE on [0, 1]; then the mean CCC over dimensions."""
    rows = [r for r in results if r.get("dimensional")]
    if not rows:
        return ""
    lines = ["| Corpus | Dimension | # rated | CCC | r | MAE |", "|---|---|---:|---:|---:|---:|"]
    for r in rows:
        d, ci = r["dimensional"], r["dimensional"].get("intervals") or {}
        for name, m in d["dims"].items():
            lines.append(f"| {r['corpus']} | {name} | {m['n']} | {_num(m['ccc'], ci.get(name))} | {_num(m['r'])} | "
                         f"{_num(m['mae'])} |")
        lines.append(f"| {r['corpus']} | **mean CCC** | | **{_num(d['mean_ccc'], ci.get('mean_ccc'))}** | | |")
    first = next((r["dimensional"]["intervals"] for r in rows if r["dimensional"].get("intervals")), None)
    if first:
        lines += ["", f"CCC intervals: 95 % percentile, {first['resamples']} bootstrap resamples (seed {first['seed']}) "
                      "of each test set, by speaker where the split knows at least 5, else by utterance."]
    return "\n".join(lines) + "\n"


def soft_label_table(results: Sequence[dict]) -> str:
    """Markdown table of the soft-label scores (result['soft_labels'], evaluation.soft_scores) of the results that
    have them: utterances with a label distribution, cross-entropy against it and agreement 1 - TV in %; '' when
    none has them."""
    rows = [r for r in results if r.get("soft_labels")]
    if not rows:
        return ""
    lines = ["| Corpus | # with a label distribution | Soft-label cross-entropy | Agreement 1 - TV (%) |",
             "|---|---:|---:|---:|"]
    lines += [f"| {r['corpus']} | {r['soft_labels']['n']} | {_num(r['soft_labels']['cross_entropy'])} | "
              f"{_pct(r['soft_labels']['agreement'])} |" for r in rows]
    return "\n".join(lines) + "\n"


def plot_scatter(y_true: np.ndarray, y_pred: np.ndarray, names: Sequence[str], path: str | Path,
                 title: str | None = None) -> Path:
    """Predicted against true value per dimension (one panel each, the identity line dashed) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    y_true, y_pred = np.asarray(y_true, np.float64), np.asarray(y_pred, np.float64)
    fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 3.4), squeeze=False)
    for k, (ax, name) in enumerate(zip(axes[0], names)):
        known = np.isfinite(y_true[:, k])
        ax.scatter(y_true[known, k], y_pred[known, k], s=10, alpha=0.7)
        ax.plot([0, 1], [0, 1], "k--", lw=0.8)
        ax.set(xlim=(-0.05, 1.05), ylim=(-0.05, 1.05), xlabel=f"true {name}", ylabel=f"predicted {name}")
        ax.set_aspect("equal")
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def group_tables(doc: Mapping[str, Any]) -> str:
    """Markdown of evaluation.groups.by_groups: per grouping and scope (a corpus, or the corpora pooled) a table of
    each group's utterances, known speakers and every registered metric with its 95 % interval (or why it has
    none), then the UAR gap between the known groups with its permutation p-value; notes and the rule under them."""
    blocks = []
    for t in doc["tables"]:
        scope = f"pooled over {', '.join(t['corpora'])}" if t["scope"] == "pooled" else t["scope"]
        left_out = set(t["gap"].get("left_out", ()))
        lines = [f"Per {t['by']}: {scope}, {t['split']} split", "",
                 f"| {t['by'].capitalize()} | # utterances | # speakers | "
                 + " | ".join(m.heading for m in METRICS.values()) + " | Resampled unit |",
                 "|---|---:|---:|" + "---:|" * len(METRICS) + "---|"]
        for r in t["groups"]:
            ci = r.get("intervals")
            cells = [_shown(m, _value(r, k), ci and ci.get(k)) for k, m in METRICS.items()]
            unit = ci["short"] if ci else "too small (below)" if r.get("no_interval") else "–"
            name = f"{r['group']} (not in the gap)" if r["group"] in left_out else r["group"]
            lines.append(f"| {name} | {r['n']} | {r['n_speakers'] or '–'} | " + " | ".join(cells) + f" | {unit} |")
        lines += ["", _gap_line(t["gap"], doc.get("seed"))]
        lines += [f"- {r['group']}: {r['no_interval']}" for r in t["groups"] if r.get("no_interval")]
        blocks.append("\n".join(lines) + "\n")
    notes = [f"warning: {w}" for w in doc.get("warnings", ())] + list(doc.get("notes", ()))
    rule = (f"Group intervals: 95 % percentile, {doc['resamples']} bootstrap resamples (seed {doc['seed']}) of a "
            f"group's speakers where it knows at least {doc['min_speakers']}, else of its utterances; a group with "
            f"fewer than {doc['min_speakers']} known speakers and fewer than {doc['min_utterances']} utterances "
            "gets none.") if doc.get("resamples") else "No intervals or permutation tests (--bootstrap 0)."
    return "\n".join(blocks + [line + "\n" for line in notes] + [rule + "\n"])


def _gap_line(gap: Mapping[str, Any], seed: int | None) -> str:
    """The UAR gap between a table's known groups, its permutation p-value and how it was computed."""
    uar = METRICS["uar"]
    if gap.get("uar_gap") is None:
        return f"UAR gap: {gap.get('note', 'none')}."
    if gap.get("difference") is not None:
        a, b = gap["groups"][:2]
        text = f"UAR gap {a} - {b}: {_delta(uar, gap['difference'])} points"
    else:
        text = f"UAR gap (highest {gap['highest']} - lowest {gap['lowest']}): {_delta(uar, gap['uar_gap'])} points"
    if gap.get("p") is None:
        return f"{text}; {gap.get('note', 'not tested')}."
    return f"{text}; p = {gap['p']:.3f}, {gap['method']}, seed {seed}."


def robustness_table(results: Sequence[dict]) -> str:
    """One corpus under each --degrade condition (evaluation.robustness): every registered metric with its interval,
    then UAR's difference from clean with its paired-bootstrap interval and Holm-corrected p-value."""
    uar = METRICS["uar"]
    lines = ["| Condition | # utterances | " + " | ".join(m.heading for m in METRICS.values())
             + " | ΔUAR vs clean (points) [95 % CI] | p (Holm) |",
             "|---|---:|" + "---:|" * len(METRICS) + "---:|---:|"]
    for r in results:
        ci = r.get("intervals") or {}
        e = r.get("paired")
        delta = "–" if e is None else f"{_delta(uar, e['diff'])} {_delta_interval(uar, e)}"
        p = "–" if e is None or r["kind"] == "clean" else _p(e, "p_holm") + (" *" if e.get("significant") else "")
        lines.append(f"| {r['condition']} | {r['n']} | "
                     + " | ".join(_shown(m, _value(r, k), ci.get(k)) for k, m in METRICS.items())
                     + f" | {delta} | {p} |")
    return "\n".join(lines) + "\n"


def plot_robustness(results: Sequence[dict], path: str | Path, title: str | None = None,
                    axes: Mapping[str, str] | None = None) -> Path:
    """UAR (with its interval) against each condition's strength, one panel and line per kind that has one (axes:
    kind -> x-axis label), one panel of points for the kinds without (codecs, telephone); clean as a dashed line
    with its interval in every panel. Saved as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    axes = dict(axes or {})
    clean = next(r for r in results if r["kind"] == "clean")
    kinds = list(dict.fromkeys(r["kind"] for r in results if r["kind"] in axes))
    points = [r for r in results if r["kind"] not in axes and r["kind"] != "clean"]
    panels = len(kinds) + bool(points) or 1
    fig, grid = plt.subplots(1, panels, figsize=(4 * panels, 3.6), sharey=True, squeeze=False)

    def uar_of(rs):
        """(UARs, (2, n) distances to the interval's ends) of results."""
        values = np.asarray([_value(r, "uar") for r in rs])
        ci = np.asarray([(r.get("intervals") or {}).get("uar") or (v, v) for r, v in zip(rs, values)], float)
        return values, np.abs(ci.T - values)

    def clean_line(ax):
        """Clean's UAR and interval across a panel."""
        ax.axhline(_value(clean, "uar"), color="black", linestyle="--", linewidth=1, label="clean")
        ci = (clean.get("intervals") or {}).get("uar")
        if ci:
            ax.axhspan(ci[0], ci[1], color="grey", alpha=0.15)

    for ax, kind in zip(grid[0], kinds):
        rs = sorted((r for r in results if r["kind"] == kind), key=lambda r: r["strength"])
        values, err = uar_of(rs)
        ax.errorbar([r["strength"] for r in rs], values, yerr=err, marker="o", capsize=3, label=kind)
        clean_line(ax)
        ax.set_xlabel(axes[kind])
        ax.legend(fontsize=8)
    if points:
        ax = grid[0][len(kinds)]
        values, err = uar_of(points)
        ax.errorbar(range(len(points)), values, yerr=err, marker="o", linestyle="none", capsize=3)
        ax.set_xticks(range(len(points)), [r["condition"] for r in points], rotation=30, ha="right", fontsize=8)
        ax.set_xlim(-0.5, len(points) - 0.5)
        clean_line(ax)
        ax.set_xlabel("condition")
    if not kinds and not points:
        clean_line(grid[0][0])
    grid[0][0].set_ylabel("UAR")
    for ax in grid[0]:
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, path, dpi=120)
