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
    finally:
        fig.clf()
    return path
