"""Classification metrics (pure functions over numpy).

Macro-F1 is the headline metric; UA is unweighted average recall (balanced
accuracy), WA is accuracy. A class of the label set that is absent from a split
still counts in the macro averages of precision and F1 (its F1 is 0, as
scikit-learn with ``labels=`` the full list and ``zero_division=0``); UA averages
recall over the classes present in ``y_true``, as
``sklearn.metrics.balanced_accuracy_score``.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np


def confusion_matrix(y_true: Sequence[int], y_pred: Sequence[int], num_classes: int) -> np.ndarray:
    """Counts ``(C, C)`` int64: rows are true classes, columns predicted classes.

    ``y_true``/``y_pred`` are integer class indices in ``[0, num_classes)``.
    """
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    true = np.asarray(y_true)
    pred = np.asarray(y_pred)
    if true.ndim != 1 or pred.ndim != 1:
        raise ValueError("y_true and y_pred must be 1-D sequences of class indices")
    if true.shape != pred.shape:
        raise ValueError(f"y_true has {true.size} entries but y_pred has {pred.size}")
    if true.size == 0:
        return np.zeros((num_classes, num_classes), dtype=np.int64)
    for name, values in (("y_true", true), ("y_pred", pred)):
        if not np.issubdtype(values.dtype, np.integer):
            raise ValueError(f"{name} must hold integer class indices, got dtype {values.dtype}")
        bad = values[(values < 0) | (values >= num_classes)]
        if bad.size:
            raise ValueError(f"{name} holds class index {bad[0]} outside [0, {num_classes})")
    flat = true.astype(np.int64) * num_classes + pred.astype(np.int64)
    return np.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def _encode(names: Iterable[str], index: dict[str, int], what: str) -> np.ndarray:
    codes = []
    for name in names:
        try:
            codes.append(index[name])
        except (KeyError, TypeError):
            raise ValueError(f"{what} holds label {name!r}, which is not in the label set {list(index)}") from None
    return np.asarray(codes, dtype=np.int64)


def _safe_divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    out = np.zeros(numerator.shape, dtype=np.float64)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def concordance_correlation(x: Sequence[float], y: Sequence[float]) -> float:
    """Lin's concordance correlation coefficient of predictions ``x`` and ratings ``y`` (population statistics):
    ``2 cov / (var x + var y + (mean x - mean y)^2)``; 1 is perfect agreement, 0 none. NaN for fewer than 2 pairs."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"x {x.shape} and y {y.shape} must be two equal vectors")
    if len(x) < 2:
        return float("nan")
    mx, my = x.mean(), y.mean()
    cov = ((x - mx) * (y - my)).mean()
    denominator = x.var() + y.var() + (mx - my) ** 2
    return float(2 * cov / denominator) if denominator > 0 else float("nan")


def classification_report(y_true: Sequence[str], y_pred: Sequence[str], labels: Sequence[str]) -> dict:
    """Metrics of predicted class names against true class names.

    ``labels`` is the full ordered label set (e.g. a ``LabelSet``). Returns a
    JSON-ready dict with ``macro_f1``, ``ua``, ``wa``, ``weighted_f1``,
    ``per_class`` (``{label: {precision, recall, f1, support}}``),
    ``confusion_matrix`` (rows true, columns predicted, label order),
    ``labels`` and ``num_utterances``. Values are fractions in ``[0, 1]``.
    """
    labels = [str(label) for label in labels]
    if not labels:
        raise ValueError("the label set is empty")
    if len(set(labels)) != len(labels):
        duplicates = sorted({label for label in labels if labels.count(label) > 1})
        raise ValueError(f"duplicate labels in the label set: {duplicates}")
    y_true = list(y_true)
    y_pred = list(y_pred)
    if len(y_true) != len(y_pred):
        raise ValueError(f"y_true has {len(y_true)} entries but y_pred has {len(y_pred)}")
    if not y_true:
        raise ValueError("no utterances to evaluate (empty y_true and y_pred)")
    index = {label: i for i, label in enumerate(labels)}
    true = _encode(y_true, index, "y_true")
    pred = _encode(y_pred, index, "y_pred")

    matrix = confusion_matrix(true, pred, len(labels))
    tp = np.diag(matrix).astype(np.float64)
    support = matrix.sum(axis=1)
    predicted = matrix.sum(axis=0)
    precision = _safe_divide(tp, predicted.astype(np.float64))
    recall = _safe_divide(tp, support.astype(np.float64))
    # F1 = 2 TP / (2 TP + FP + FN); 0 when the class has neither true nor predicted samples.
    f1 = _safe_divide(2 * tp, (support + predicted).astype(np.float64))
    total = int(support.sum())

    return {
        "macro_f1": float(f1.mean()),
        "ua": float(recall[support > 0].mean()),
        "wa": float(tp.sum() / total),
        "weighted_f1": float((f1 * support).sum() / total),
        "per_class": {
            label: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, label in enumerate(labels)
        },
        "confusion_matrix": matrix.tolist(),
        "labels": labels,
        "num_utterances": total,
    }


_TABLE_COLUMNS = (("macro-F1", "macro_f1"), ("UA", "ua"), ("WA", "wa"), ("weighted-F1", "weighted_f1"))


def format_metrics_table(reports: dict[str, dict], *, percent: bool = True, digits: int = 2) -> str:
    """Plain-text table, one row per named report (e.g. per member).

    Columns: macro-F1, UA, WA, weighted-F1 (in percent unless ``percent=False``)
    and N (``num_utterances``).
    """
    header = ["name"] + [title for title, _ in _TABLE_COLUMNS] + ["N"]
    rows = []
    for name, report in reports.items():
        row = [str(name)]
        for _, key in _TABLE_COLUMNS:
            value = float(report[key]) * (100.0 if percent else 1.0)
            row.append(f"{value:.{digits}f}")
        row.append(str(int(report["num_utterances"])))
        rows.append(row)
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows)]

    def line(cells: list[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = [cell.rjust(width) for cell, width in zip(cells[1:], widths[1:])]
        return "  ".join([first, *rest]).rstrip()

    out = [line(header), line(["-" * width for width in widths])]
    out.extend(line(row) for row in rows)
    if percent:
        out.append("(scores in percent; N = utterances)")
    return "\n".join(out)
