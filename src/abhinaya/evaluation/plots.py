"""Figures for evaluation reports."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Collection, Mapping, Sequence

import numpy as np


def plot_confusion_matrix(
    matrix: Sequence[Sequence[int]] | np.ndarray,
    labels: Sequence[str],
    path: str | Path,
    *,
    normalize: bool = True,
    title: str | None = None,
    dpi: int = 120,
) -> Path:
    """Save a confusion matrix ``(C, C)`` (rows true, columns predicted) as a PNG.

    Every cell shows its count; with ``normalize`` the colours are row-normalised
    (share of each true class) and each cell also shows its row percentage,
    otherwise the colours follow the raw counts. The file is written atomically
    at ``dpi`` dots per inch. Returns the path written.
    """
    counts = np.asarray(matrix)
    labels = [str(label) for label in labels]
    if counts.ndim != 2 or counts.shape[0] != counts.shape[1]:
        raise ValueError(f"a confusion matrix must be square (C, C), got shape {counts.shape}")
    if counts.shape[0] != len(labels):
        raise ValueError(f"confusion matrix is {counts.shape[0]}x{counts.shape[1]} but {len(labels)} labels were given")
    if counts.shape[0] == 0:
        raise ValueError("empty confusion matrix")
    counts = counts.astype(np.float64)

    # A bare Figure with the Agg canvas: no pyplot, so the caller's backend is untouched.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    row_totals = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, row_totals, out=np.zeros_like(counts), where=row_totals > 0)
    colours = shares if normalize else counts
    vmax = 1.0 if normalize else max(float(counts.max()), 1.0)

    size = len(labels)
    side = max(4.0, 0.75 * size + 2.0)
    fig = Figure(figsize=(side + 1.0, side))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    try:
        image = ax.imshow(colours, cmap="Blues", vmin=0.0, vmax=vmax, interpolation="nearest")
        colourbar = fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
        colourbar.set_label("share of true class" if normalize else "count")
        ax.set_xticks(range(size), labels=[_literal(label) for label in labels], rotation=45, ha="right")
        ax.set_yticks(range(size), labels=[_literal(label) for label in labels])
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        if title:
            ax.set_title(_literal(title))
        font_size = 9 if size <= 8 else 7
        for i in range(size):
            for j in range(size):
                text = f"{counts[i, j]:.0f}"
                if normalize:
                    text += f"\n{100.0 * shares[i, j]:.0f}%"
                dark = colours[i, j] / vmax > 0.55
                ax.text(j, i, text, ha="center", va="center", fontsize=font_size, color="white" if dark else "black")
        fig.tight_layout()
        return _save_png(fig, path, dpi=dpi)
    finally:
        fig.clf()


DEV_METRICS = ("macro_f1", "ua", "wa", "weighted_f1")


def plot_training_curves(history: Sequence[dict], path: str | Path, *, metric: str = "macro_f1") -> Path:
    """Save a run's learning curves as a PNG: training loss per epoch (left) and the dev metrics per epoch (right),
    ``metric`` (the selection metric) drawn bold and the kept epoch (or the averaged ones) marked.

    ``history`` holds the rows of ``metrics.jsonl``: ``epoch``, ``train_loss`` and, where the run has a dev split,
    the dev metrics and ``kept``. Rows without a value are skipped. The file is written atomically; returns the path.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    trained = [row for row in history if row.get("train_loss") is not None]
    scored = [row for row in history if row.get(metric) is not None]
    if not trained and not scored:
        raise ValueError("no epoch with a training loss or a dev score to plot")
    fig = Figure(figsize=(10.0, 4.0))
    FigureCanvasAgg(fig)
    try:
        loss_ax, dev_ax = fig.subplots(1, 2)
        loss_ax.plot([r["epoch"] for r in trained], [r["train_loss"] for r in trained], marker="o", color="tab:red")
        loss_ax.set_xlabel("epoch")
        loss_ax.set_ylabel("training loss")
        if trained and min(r["train_loss"] for r in trained) > 0:
            loss_ax.set_yscale("log")
        loss_ax.grid(alpha=0.3)
        for name in DEV_METRICS:
            rows = [r for r in scored if r.get(name) is not None]
            if rows:
                bold = name == metric
                dev_ax.plot(
                    [r["epoch"] for r in rows], [r[name] for r in rows], marker="o" if bold else ".",
                    linewidth=2.2 if bold else 1.0, alpha=1.0 if bold else 0.6, label=name,
                )
        kept = [r for r in scored if r.get("kept")]
        averaged = [r["epoch"] for r in history if r.get("averaged")]
        if averaged:  # train.keep: average
            dev_ax.axvspan(min(averaged) - 0.2, max(averaged) + 0.2, color="grey", alpha=0.15)
            dev_ax.set_title(f"kept: the average of epochs {min(averaged)}-{max(averaged)}", fontsize=10)
        elif kept:
            last = kept[-1]
            dev_ax.axvline(last["epoch"], color="grey", linestyle="--", linewidth=1.0)
            dev_ax.set_title(f"kept: epoch {last['epoch']}, dev {metric} {last[metric]:.3f}", fontsize=10)
        dev_ax.set_xlabel("epoch")
        dev_ax.set_ylabel("dev score")
        if scored:
            dev_ax.legend(loc="lower right", fontsize=8)
        else:
            dev_ax.text(0.5, 0.5, "no dev split", ha="center", va="center", transform=dev_ax.transAxes)
        dev_ax.grid(alpha=0.3)
        fig.tight_layout()
        return _save_png(fig, path)
    finally:
        fig.clf()


def plot_fold_scores(
    scores: dict[str, Sequence[float]], folds: Sequence[str], path: str | Path, *, metric: str = "macro-F1",
    title: str | None = None,
) -> Path:
    """Save a grouped bar chart of cross-validation scores as a PNG: one group per fold and one for the mean, one bar
    per setting (``scores``: setting -> one score per fold), each bar labelled with its value. Written atomically;
    returns the path written."""
    folds = [str(f) for f in folds]
    if not scores or not folds:
        raise ValueError("nothing to plot: give at least one setting and one fold")
    for name, values in scores.items():
        if len(values) != len(folds):
            raise ValueError(f"setting {name!r} has {len(values)} scores for {len(folds)} folds")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    groups = folds + ["mean"]
    width = 0.8 / len(scores)
    fig = Figure(figsize=(max(6.0, 1.1 * len(groups) * max(1, len(scores)) / 2 + 2), 4.0))
    FigureCanvasAgg(fig)
    try:
        ax = fig.add_subplot(1, 1, 1)
        x = np.arange(len(groups))
        for i, (name, values) in enumerate(scores.items()):
            heights = list(values) + [float(np.mean(values))]
            bars = ax.bar(x + (i - (len(scores) - 1) / 2) * width, heights, width, label=name)
            for bar, height in zip(bars, heights):
                ax.text(bar.get_x() + bar.get_width() / 2, height + 0.01, f"{height:.2f}", ha="center",
                        va="bottom", fontsize=7)
        ax.set_xticks(x)
        ax.set_xticklabels(groups)
        ax.set_ylabel(metric)
        ax.set_ylim(0, 1.15)
        ax.axvline(len(folds) - 0.5, color="grey", lw=0.8, ls=":")
        ax.legend(fontsize=8, loc="upper left", ncol=len(scores), frameon=False)
        ax.grid(axis="y", alpha=0.3)
        if title:
            ax.set_title(title)
        fig.tight_layout()
        return _save_png(fig, path)
    finally:
        fig.clf()

SCORE_METRICS: tuple[tuple[str, str], ...] = (("macro_f1", "macro-F1"), ("ua", "UA"), ("wa", "WA"))
_METRIC_COLOURS = ("tab:blue", "tab:orange", "tab:green")
_ENSEMBLE_HATCH = "///"


def _literal(text: object) -> str:
    """``text`` as matplotlib shows it literally (a ``$`` would otherwise start mathtext)."""
    return str(text).replace("$", r"\$")


def _system_colours(count: int) -> list:
    """``count`` distinct colours: tab10 first, then the light tab20 shades, then cycling."""
    from matplotlib import colormaps

    tab20 = colormaps["tab20"]
    order = list(range(0, 20, 2)) + list(range(1, 20, 2))
    return [tab20(order[i % len(order)]) for i in range(count)]


def _mark_chosen(ax, bars) -> None:
    """Outline ``bars`` in black (an unfilled bar on top, so hatching keeps its colour)."""
    for bar in bars:
        ax.add_patch(
            type(bar)(bar.get_xy(), bar.get_width(), bar.get_height(), fill=False, edgecolor="black",
                      linewidth=1.4, zorder=bar.get_zorder() + 0.1)
        )


def plot_system_scores(
    scores: Mapping[str, Mapping[str, float]],
    path: str | Path,
    *,
    ensembles: Collection[str] = (),
    chosen: str | None = None,
    metrics: Sequence[tuple[str, str]] = SCORE_METRICS,
    title: str | None = None,
    dpi: int = 100,
) -> Path:
    """Save a grouped bar chart of overall scores as a PNG: one group per system (in ``scores`` order), one bar per
    metric (``metrics``: key -> axis name, default macro-F1, UA, WA; ``scores``: system -> key -> value in [0, 1]).

    Systems named in ``ensembles`` get a shaded background and hatched bars (the others are members); the ``chosen``
    system's bars are outlined and its name is bold with "(chosen)". Written atomically; returns the path written.
    """
    names = [str(name) for name in scores]
    if not names:
        raise ValueError("nothing to plot: give at least one system")
    if not metrics:
        raise ValueError("nothing to plot: give at least one metric")
    for name, values in scores.items():
        missing = [key for key, _ in metrics if key not in values]
        if missing:
            raise ValueError(f"system {name!r} has no score for {', '.join(missing)}")
    ensembles = {str(name) for name in ensembles}
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    width = 0.8 / len(metrics)
    fig = Figure(figsize=(max(6.0, 0.7 * len(names) + 2.5), 4.2), layout="constrained")
    FigureCanvasAgg(fig)
    try:
        ax = fig.add_subplot(1, 1, 1)
        x = np.arange(len(names))
        for i, name in enumerate(names):
            if name in ensembles:
                ax.axvspan(i - 0.5, i + 0.5, color="0.92", zorder=0, linewidth=0)
        colours = [_METRIC_COLOURS[k % len(_METRIC_COLOURS)] for k in range(len(metrics))]
        for k, (key, _) in enumerate(metrics):
            offsets = x + (k - (len(metrics) - 1) / 2) * width
            heights = [float(scores[name][key]) for name in names]
            for i, (name, offset, height) in enumerate(zip(names, offsets, heights)):
                bars = ax.bar(
                    offset, height, width, color=colours[k], zorder=2,
                    hatch=_ENSEMBLE_HATCH if name in ensembles else None, edgecolor="white", linewidth=0,
                )
                if name == chosen:
                    _mark_chosen(ax, bars)
        ticks = [f"{_literal(name)}\n(chosen)" if name == chosen else _literal(name) for name in names]
        ax.set_xticks(x, labels=ticks, rotation=30 if len(names) > 8 else 0, ha="right" if len(names) > 8 else "center")
        for tick, name in zip(ax.get_xticklabels(), names):
            if name == chosen:
                tick.set_fontweight("bold")
        ax.set_xlim(-0.5, len(names) - 0.5)
        ax.set_ylim(0.0, 1.0)
        ax.set_ylabel("score")
        ax.grid(axis="y", alpha=0.3, zorder=1)
        handles = [Patch(color=colours[k], label=label) for k, (_, label) in enumerate(metrics)]
        if ensembles & set(names):
            handles.append(Patch(facecolor="0.92", edgecolor="0.5", hatch=_ENSEMBLE_HATCH, label="ensemble method"))
        fig.legend(handles=handles, loc="outside upper center", ncol=len(handles), fontsize=8, frameon=False)
        if title:
            ax.set_title(_literal(title), fontsize=10)
        return _save_png(fig, path, dpi=dpi)
    finally:
        fig.clf()


def plot_per_class_f1(
    f1: Mapping[str, Mapping[str, float]],
    labels: Sequence[str],
    path: str | Path,
    *,
    ensembles: Collection[str] = (),
    chosen: str | None = None,
    support: Mapping[str, int] | None = None,
    title: str | None = None,
    dpi: int = 100,
) -> Path:
    """Save per-class F1 as a PNG: one group of bars per class (``labels`` order), one bar per system (``f1``:
    system -> label -> F1 in [0, 1]). Systems named in ``ensembles`` get hatched bars, the ``chosen`` one is outlined;
    the legend sits outside the axes. With many bars the classes are spread over several rows. ``support`` (label ->
    count) is shown under each class name. Written atomically; returns the path written.
    """
    names = [str(name) for name in f1]
    labels = [str(label) for label in labels]
    if not names or not labels:
        raise ValueError("nothing to plot: give at least one system and one class")
    for name, values in f1.items():
        missing = [label for label in labels if label not in values]
        if missing:
            raise ValueError(f"system {name!r} has no F1 for class(es) {', '.join(missing)}")
    ensembles = {str(name) for name in ensembles}
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = max(1, min(len(labels), int(np.ceil(len(labels) * len(names) / 64))))
    per_row = int(np.ceil(len(labels) / rows))
    group = max(0.9, 0.11 * len(names))  # inches per class
    width = 0.85 / len(names)
    colours = _system_colours(len(names))
    fig = Figure(figsize=(max(6.0, group * per_row + 2.8), 0.6 + 2.9 * rows), layout="constrained")
    FigureCanvasAgg(fig)
    try:
        axes = np.atleast_1d(fig.subplots(rows, 1, squeeze=False)[:, 0])
        handles = {}
        for r, ax in enumerate(axes):
            row_labels = labels[r * per_row:(r + 1) * per_row]
            x = np.arange(len(row_labels))
            for i, name in enumerate(names):
                heights = [float(f1[name][label]) for label in row_labels]
                legend_name = f"{_literal(name)} (chosen)" if name == chosen else _literal(name)
                bars = ax.bar(
                    x + (i - (len(names) - 1) / 2) * width, heights, width, color=colours[i], zorder=2,
                    hatch=_ENSEMBLE_HATCH if name in ensembles else None, edgecolor="white", linewidth=0,
                    label=legend_name,
                )
                handles.setdefault(legend_name, bars)
                if name == chosen:
                    _mark_chosen(ax, bars)
            ticks = [
                f"{_literal(label)}\n(n={int(support[label])})" if support and label in support else _literal(label)
                for label in row_labels
            ]
            ax.set_xticks(x, labels=ticks)
            ax.set_xlim(-0.5, per_row - 0.5)
            ax.set_ylim(0.0, 1.0)
            ax.set_ylabel("F1")
            ax.grid(axis="y", alpha=0.3, zorder=1)
            for boundary in x[:-1]:
                ax.axvline(boundary + 0.5, color="0.85", linewidth=0.8, zorder=1)
        if title:
            axes[0].set_title(_literal(title), fontsize=10)
        fig.legend(
            list(handles.values()), list(handles.keys()), loc="outside right upper", fontsize=8, frameon=False,
            title="hatched: ensemble" if ensembles & set(names) else None, title_fontsize=8,
        )
        return _save_png(fig, path, dpi=dpi)
    finally:
        fig.clf()


def plot_pairwise_matrix(
    values: Sequence[Sequence[float]] | np.ndarray,
    names: Sequence[str],
    path: str | Path,
    *,
    title: str | None = None,
    vmin: float = 0.0,
    vmax: float = 1.0,
    cmap: str = "Greens",
    colour_label: str | None = None,
    dpi: int = 100,
) -> Path:
    """Save a symmetric ``(M, M)`` matrix between systems (e.g. agreement, error correlation) as an annotated
    heatmap PNG; NaN cells (undefined values) are grey and read "n/a". Written atomically; returns the path."""
    matrix = np.asarray(values, dtype=np.float64)
    names = [str(name) for name in names]
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"a pairwise matrix must be square (M, M), got shape {matrix.shape}")
    if matrix.shape[0] != len(names) or not names:
        raise ValueError(f"pairwise matrix is {matrix.shape[0]}x{matrix.shape[1]} but {len(names)} names were given")
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    size = len(names)
    side = max(3.5, 0.6 * size + 2.0)
    fig = Figure(figsize=(side + 1.0, side))
    FigureCanvasAgg(fig)
    try:
        ax = fig.add_subplot(1, 1, 1)
        colour_map = colormaps[cmap].with_extremes(bad="0.85")
        image = ax.imshow(np.ma.masked_invalid(matrix), cmap=colour_map, vmin=vmin, vmax=vmax, interpolation="nearest")
        colourbar = fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
        if colour_label:
            colourbar.set_label(_literal(colour_label))
        ax.set_xticks(range(size), labels=[_literal(n) for n in names], rotation=45, ha="right")
        ax.set_yticks(range(size), labels=[_literal(n) for n in names])
        font_size = 9 if size <= 8 else 7
        for i in range(size):
            for j in range(size):
                value = matrix[i, j]
                if np.isnan(value):
                    text, dark = "n/a", False
                else:
                    text = f"{value:.2f}".replace("-0.00", "0.00")
                    red, green, blue, _ = colour_map(image.norm(value))
                    dark = 0.299 * red + 0.587 * green + 0.114 * blue < 0.5
                ax.text(j, i, text, ha="center", va="center", fontsize=font_size, color="white" if dark else "black")
        if title:
            ax.set_title(_literal(title), fontsize=10)
        fig.tight_layout()
        return _save_png(fig, path, dpi=dpi, tight=True)
    finally:
        fig.clf()


def _save_png(fig, path: str | Path, *, dpi: int = 120, tight: bool = False) -> Path:
    """Write ``fig`` to ``path`` atomically (temporary file in the same folder, then rename); ``tight`` crops the
    canvas to the drawn artists (so no long tick label is cut off)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            fig.savefig(stream, format="png", dpi=dpi, **({"bbox_inches": "tight", "pad_inches": 0.1} if tight else {}))
        os.replace(temp_name, path)
    except BaseException:
        if os.path.exists(temp_name):
            os.unlink(temp_name)
        raise
    return path


def plot_emotion_timeline(
    tracks: Mapping[str, Sequence[tuple[float, float, str, float]]],
    labels: Sequence[str],
    path: str | Path,
    *,
    durations: Mapping[str, float] | None = None,
    title: str | None = None,
    dpi: int = 100,
) -> Path:
    """Save the emotion over time of one or more recordings as a PNG: one row per recording (``tracks``: recording
    -> its segments ``(start, end, label, confidence)``, seconds), each segment a bar coloured by its class whose
    height is the confidence (the probability of that class), so uncertain stretches look low. The time axis is in
    seconds, or minutes beyond 10 minutes; ``durations`` (recording -> seconds) sets each row's extent (grey: no
    speech). Written atomically; returns the path written."""
    names = [str(name) for name in tracks]
    labels = [str(label) for label in labels]
    if not names:
        raise ValueError("nothing to plot: give at least one recording")
    if not labels:
        raise ValueError("nothing to plot: give the class labels")
    for name, spans in tracks.items():
        unknown = sorted({str(s[2]) for s in spans} - set(labels))
        if unknown:
            raise ValueError(f"recording {name!r} has segments of class(es) {', '.join(unknown)} outside the labels")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    extent = {
        str(name): float((durations or {}).get(name) or max((float(s[1]) for s in spans), default=0.0))
        for name, spans in tracks.items()
    }
    longest = max(max(extent.values()), 1e-3)
    scale, unit = (60.0, "min") if longest > 600 else (1.0, "s")
    colours = dict(zip(labels, _system_colours(len(labels))))
    fig = Figure(figsize=(11.0, 0.9 + 1.1 * len(names)), layout="constrained")
    FigureCanvasAgg(fig)
    try:
        axes = np.atleast_1d(fig.subplots(len(names), 1, sharex=True, squeeze=False)[:, 0])
        for ax, (name, spans) in zip(axes, tracks.items()):
            ax.axvspan(0.0, extent[str(name)] / scale, color="0.93", zorder=0, linewidth=0)
            for start, end, label, confidence in spans:
                ax.bar(float(start) / scale, float(confidence), width=(float(end) - float(start)) / scale,
                       align="edge", color=colours[str(label)], edgecolor="none", zorder=2)
            ax.set_ylim(0.0, 1.0)
            ax.set_yticks([0.0, 0.5, 1.0])
            ax.set_ylabel(_literal(name), rotation=0, ha="right", va="center", fontsize=8)
            ax.grid(axis="x", alpha=0.3, zorder=1)
        axes[-1].set_xlim(0.0, longest / scale)
        axes[-1].set_xlabel(f"time ({unit}); bar height: probability of the predicted class")
        present = [label for label in labels if any(str(s[2]) == label for spans in tracks.values() for s in spans)]
        handles = [Patch(color=colours[label], label=_literal(label)) for label in (present or labels)]
        fig.legend(handles=handles, loc="outside upper center", ncol=min(len(handles), 10), fontsize=8, frameon=False)
        if title:
            fig.suptitle(_literal(title), fontsize=10)
        return _save_png(fig, path, dpi=dpi)
    finally:
        fig.clf()
