"""Figures for evaluation reports."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np


def plot_confusion_matrix(
    matrix: Sequence[Sequence[int]] | np.ndarray,
    labels: Sequence[str],
    path: str | Path,
    *,
    normalize: bool = True,
    title: str | None = None,
) -> Path:
    """Save a confusion matrix ``(C, C)`` (rows true, columns predicted) as a PNG.

    Every cell shows its count; with ``normalize`` the colours are row-normalised
    (share of each true class) and each cell also shows its row percentage,
    otherwise the colours follow the raw counts. The file is written atomically.
    Returns the path written.
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
        ax.set_xticks(range(size), labels=labels, rotation=45, ha="right")
        ax.set_yticks(range(size), labels=labels)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        if title:
            ax.set_title(title)
        font_size = 9 if size <= 8 else 7
        for i in range(size):
            for j in range(size):
                text = f"{counts[i, j]:.0f}"
                if normalize:
                    text += f"\n{100.0 * shares[i, j]:.0f}%"
                dark = colours[i, j] / vmax > 0.55
                ax.text(j, i, text, ha="center", va="center", fontsize=font_size, color="white" if dark else "black")
        fig.tight_layout()
        return _save_png(fig, path)
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


def _save_png(fig, path: str | Path) -> Path:
    """Write ``fig`` to ``path`` atomically (temporary file in the same folder, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            fig.savefig(stream, format="png", dpi=120)
        os.replace(temp_name, path)
    except BaseException:
        if os.path.exists(temp_name):
            os.unlink(temp_name)
        raise
    return path
