"""Prediction tables (CSV): ``FileName,EmoClass`` then one ``prob_<label>`` per
class of the model's label set.

``FileName`` is the manifest id and ``EmoClass`` the canonical label. The
``msp`` format is the challenge submission: ``FileName,EmoClass`` with
MSP-Podcast letter codes, one row per file, sorted by file name.
"""

from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from abhinaya.labels import MSP_PODCAST_CODES, LabelSet

PROB_PREFIX = "prob_"
MSP_LETTERS: dict[str, str] = {label: letter for letter, label in MSP_PODCAST_CODES.items()}


class PredictionError(ValueError):
    """A prediction table that cannot be read or written."""


@dataclass
class PredictionTable:
    """Predictions of one model (or ensemble) for a list of utterances.

    ``probs`` is ``(N, C)`` with columns in ``label_set`` order, or ``None`` when
    the table carries labels only (e.g. a hard vote or a challenge file).
    """

    ids: list[str]
    labels: list[str]
    probs: np.ndarray | None = None
    label_set: LabelSet | None = None
    source: str | None = None

    def __post_init__(self):
        where = self.source or "prediction table"
        if len(self.ids) != len(self.labels):
            raise PredictionError(f"{where}: {len(self.ids)} ids but {len(self.labels)} labels")
        if len(set(self.ids)) != len(self.ids):
            seen: set[str] = set()
            repeated = sorted({i for i in self.ids if i in seen or seen.add(i)})
            raise PredictionError(f"{where}: repeated id(s) {', '.join(repeated[:5])}")
        if self.probs is not None:
            self.probs = np.asarray(self.probs, dtype=np.float64)
            if self.label_set is None:
                raise PredictionError(f"{where}: a table with probabilities needs its label set")
            if self.probs.shape != (len(self.ids), len(self.label_set)):
                raise PredictionError(
                    f"{where}: probabilities have shape {self.probs.shape}, expected {(len(self.ids), len(self.label_set))}"
                )

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def name(self) -> str:
        return Path(self.source).stem if self.source else "predictions"

    def by_id(self) -> dict[str, int]:
        return {utt_id: i for i, utt_id in enumerate(self.ids)}

    def reorder(self, ids: Sequence[str]) -> "PredictionTable":
        """The same predictions in the order of ``ids``; an id the table lacks is
        a ``PredictionError`` naming it and the table."""
        index = self.by_id()
        missing = [utt_id for utt_id in ids if utt_id not in index]
        if missing:
            shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
            raise PredictionError(f"{self.source or 'prediction table'}: no prediction for id(s) {shown}")
        rows = [index[utt_id] for utt_id in ids]
        return PredictionTable(
            ids=list(ids),
            labels=[self.labels[r] for r in rows],
            probs=None if self.probs is None else self.probs[rows],
            label_set=self.label_set,
            source=self.source,
        )


def table_from_probs(ids: Sequence[str], probs: np.ndarray, label_set: LabelSet, source: str | None = None) -> PredictionTable:
    """Build a table from an ``(N, C)`` probability matrix: the label is the argmax."""
    probs = np.asarray(probs, dtype=np.float64)
    labels = label_set.decode_many(probs.argmax(axis=1)) if len(ids) else []
    return PredictionTable(list(ids), labels, probs, label_set, source)


def chosen_classes(label_set: LabelSet, classes: Sequence[str], where: str) -> list[str]:
    """``classes`` as the model's class names, in the model's order: common synonyms (``anger``, ``joy``) mapped, a
    class ``label_set`` lacks, an unknown name or fewer than two classes a ``PredictionError`` naming ``where``."""
    from abhinaya.labels import canonical_label

    wanted: list[str] = []
    for name in classes:
        try:
            label = name if name in label_set.labels else canonical_label(name)
        except ValueError as err:
            raise PredictionError(f"{where}: {err}") from None
        if label not in label_set.labels:
            raise PredictionError(f"{where}: the model has no class {name!r}; its classes: "
                                  f"{', '.join(label_set.labels)}")
        if label not in wanted:
            wanted.append(label)
    if len(wanted) < 2:
        raise PredictionError(f"{where}: choose among at least two classes, got {', '.join(wanted) or 'none'}")
    return [label for label in label_set.labels if label in wanted]


def restrict_classes(table: PredictionTable, classes: Sequence[str]) -> PredictionTable:
    """The same predictions decided among ``classes`` only (``chosen_classes``): their probabilities renormalised to
    sum to one, the label their argmax. For a corpus with fewer classes than the model (four classes scored by a
    nine-class model), where a class the corpus does not use would otherwise count as an error. A table without
    probabilities is a ``PredictionError``."""
    where = table.source or "prediction table"
    if table.probs is None or table.label_set is None:
        raise PredictionError(f"{where}: choosing among some classes needs probabilities; this table has labels only")
    order = chosen_classes(table.label_set, classes, where)
    probs = table.probs[:, table.label_set.encode_many(order)]
    totals = probs.sum(axis=1, keepdims=True)
    # a row whose probability mass lies wholly outside the chosen classes (rounded to 0) gets them uniformly
    probs = np.where(totals > 0, probs / np.where(totals > 0, totals, 1.0), 1.0 / len(order))
    return table_from_probs(table.ids, probs, LabelSet(order), table.source)


def read_predictions(path: str | Path) -> PredictionTable:
    """Read a prediction table (our CSV, or an ``msp``-format file with letters)."""
    path = Path(path)
    if not path.is_file():
        raise PredictionError(f"{path}: prediction table not found")
    try:
        return _read_predictions(path)
    except UnicodeDecodeError as err:
        raise PredictionError(f"{path}: not UTF-8 text (byte {err.start + 1})") from None
    except csv.Error as err:
        raise PredictionError(f"{path}: malformed csv ({err})") from None


def _read_predictions(path: Path) -> PredictionTable:
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle, strict=True)
        try:
            header = next(reader)
        except StopIteration:
            raise PredictionError(f"{path}: empty file (expected a header FileName,EmoClass,...)") from None
        header = [h.strip() for h in header]
        if header[:2] != ["FileName", "EmoClass"]:
            raise PredictionError(f"{path}: header must start with FileName,EmoClass, got {','.join(header[:2])}")
        prob_columns = header[2:]
        bad = [c for c in prob_columns if not c.startswith(PROB_PREFIX)]
        if bad:
            raise PredictionError(f"{path}: unexpected column(s) {bad}; extra columns must be named prob_<label>")
        repeated = sorted({c for c in prob_columns if prob_columns.count(c) > 1})
        if repeated:
            raise PredictionError(f"{path}: column(s) {repeated} appear more than once in the header")
        label_set = LabelSet(c[len(PROB_PREFIX):] for c in prob_columns) if prob_columns else None
        ids: list[str] = []
        labels: list[str] = []
        probs: list[list[float]] = []
        seen: set[str] = set()
        for lineno, row in enumerate(reader, start=2):
            if not row or all(not cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                raise PredictionError(f"{path}:{lineno}: {len(row)} fields, expected {len(header)}")
            utt_id, label = row[0].strip(), row[1].strip()
            if not utt_id or not label:
                raise PredictionError(f"{path}:{lineno}: empty {'FileName' if not utt_id else 'EmoClass'}")
            if utt_id in seen:
                raise PredictionError(f"{path}:{lineno}: duplicate FileName {utt_id!r}")
            seen.add(utt_id)
            if len(label) == 1 and label.upper() in MSP_PODCAST_CODES:
                label = MSP_PODCAST_CODES[label.upper()]
            if label_set is not None and label not in label_set:
                raise PredictionError(f"{path}:{lineno}: EmoClass {label!r} is not one of the table's classes")
            ids.append(utt_id)
            labels.append(label)
            if prob_columns:
                try:
                    values = [float(x) for x in row[2:]]
                except ValueError:
                    raise PredictionError(f"{path}:{lineno}: probabilities must be numbers") from None
                if not all(math.isfinite(v) and v >= 0 for v in values):
                    raise PredictionError(f"{path}:{lineno}: probabilities must be finite and non-negative")
                probs.append(values)
    array = np.asarray(probs, dtype=np.float64).reshape(len(ids), len(prob_columns)) if prob_columns else None
    return PredictionTable(ids, labels, array, label_set, str(path))


def write_predictions(path: str | Path, table: PredictionTable, format: str = "csv") -> Path:
    """Write ``table`` atomically. ``format``: ``csv`` (ours) or ``msp`` (challenge)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    if format == "csv":
        header = ["FileName", "EmoClass"]
        if table.probs is not None:
            header += [PROB_PREFIX + label for label in table.label_set]
        rows = []
        for i, (utt_id, label) in enumerate(zip(table.ids, table.labels)):
            row = [utt_id, label]
            if table.probs is not None:
                row += [f"{p:.6f}" for p in table.probs[i]]
            rows.append(row)
    elif format == "msp":
        header = ["FileName", "EmoClass"]
        rows = []
        for utt_id, label in sorted(zip(table.ids, table.labels)):
            if label not in MSP_LETTERS:
                raise PredictionError(
                    f"{path}: label {label!r} of {utt_id!r} has no MSP-Podcast letter "
                    f"(the challenge classes are {', '.join(MSP_LETTERS)})"
                )
            rows.append([utt_id, MSP_LETTERS[label]])
    else:
        raise PredictionError(f"unknown prediction format {format!r}; use 'csv' or 'msp'")
    with tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    os.replace(tmp, path)
    return path


# ----------------------------------------------------------------------------- emotion dimensions
@dataclass
class DimensionTable:
    """Predicted emotion dimensions (a model with a dimension head, ``model.dimensions``): ``values`` ``(N, K)`` for
    ``ids`` and the K ``names`` (arousal, valence, dominance). Written beside a prediction table as
    ``OUT.dimensions.csv`` (``FileName,<name>...``), since the prediction table's columns are fixed."""

    ids: list[str]
    names: list[str]
    values: np.ndarray

    def __post_init__(self):
        self.values = np.asarray(self.values, dtype=np.float64).reshape(len(self.ids), len(self.names))


def dimensions_path(predictions: str | Path) -> Path:
    """``OUT.dimensions.csv`` for the prediction table ``OUT.csv``."""
    path = Path(predictions)
    return path.with_name(path.stem + ".dimensions.csv")


def write_dimensions(path: str | Path, table: DimensionTable) -> Path:
    """Write ``table`` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["FileName", *table.names])
        for utt_id, row in zip(table.ids, table.values):
            writer.writerow([utt_id, *(f"{v:.6f}" for v in row)])
    os.replace(tmp, path)
    return path


def read_dimensions(path: str | Path) -> DimensionTable:
    """Read ``OUT.dimensions.csv`` (a ``PredictionError`` naming the file when it is not one)."""
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.reader(handle, strict=True))
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise PredictionError(f"{path}: cannot be read as a dimensions table ({err})") from None
    if not rows or rows[0][:1] != ["FileName"] or len(rows[0]) < 2:
        raise PredictionError(f"{path}: header must be FileName,<dimension>...")
    names, ids, values = rows[0][1:], [], []
    for lineno, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        try:
            numbers = [float(v) for v in row[1:]]
        except ValueError:
            raise PredictionError(f"{path}:{lineno}: a dimension that is not a number") from None
        if len(numbers) != len(names) or not all(np.isfinite(numbers)):
            raise PredictionError(f"{path}:{lineno}: expected {len(names)} finite numbers")
        ids.append(row[0])
        values.append(numbers)
    return DimensionTable(ids, names, np.array(values).reshape(len(ids), len(names)))
