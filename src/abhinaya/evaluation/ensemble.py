"""Voting over prediction tables: majority, weighted and soft votes.

Every function takes a sequence of ``PredictionTable``s for the same utterances
(in any row order) and returns a new ``PredictionTable`` in the first table's id
order. The ensemble's label set is the union of the members' label sets: the
first table's classes in its order, then each class that a later member adds,
in the order that member lists it. A member's classes are its label set, then
any label it predicts outside that set; a label-only table (no label set)
contributes the labels it predicts, in canonical order.

Tie-breaking in the hard votes (``majority_vote``, ``weighted_vote``), applied
to the labels sharing the highest vote total of an utterance, in this order:

1. the tie-break member's label, when it is among the tied labels (ABHINAYA
   gives ties to S2, its best member on validation);
2. when every member carries probabilities, the tied label with the highest
   summed probability (each member's probabilities scaled by its vote weight;
   a class a member lacks counts 0 from it);
3. the vote of the earliest member (in ``tables`` order, non-zero weight only)
   whose label is among the labels still tied.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Sequence

import numpy as np

from abhinaya.labels import LabelSet
from abhinaya.predictions import PredictionError, PredictionTable

__all__ = [
    "ENSEMBLE_METHODS",
    "align_tables",
    "combine",
    "ensemble_label_set",
    "majority_vote",
    "soft_vote",
    "weighted_vote",
]

ENSEMBLE_METHODS: tuple[str, ...] = ("majority", "weighted", "soft")

# Relative tolerance under which two vote totals (or probability sums) are a tie.
_TIE_RTOL = 1e-9


def _table_name(table: PredictionTable, position: int) -> str:
    return table.source if table.source else f"table {position}"


def _shown(ids: Sequence[str]) -> str:
    ids = list(ids)
    return ", ".join(ids[:5]) + (f" and {len(ids) - 5} more" if len(ids) > 5 else "")


def _check_tables(tables: Sequence[PredictionTable]) -> list[PredictionTable]:
    tables = list(tables)
    if not tables:
        raise ValueError("no prediction tables to combine")
    for position, table in enumerate(tables):
        if not isinstance(table, PredictionTable):
            raise TypeError(f"member {position} is a {type(table).__name__}, not a PredictionTable")
    return tables


def align_tables(tables: Sequence[PredictionTable]) -> tuple[list[str], list[PredictionTable]]:
    """Put every table in the first table's id order.

    Returns ``(ids, aligned_tables)``. The tables must predict exactly the same
    ids: an id that one table lacks (or a repeated id) is a ``PredictionError``
    naming the id(s) and the table.
    """
    tables = _check_tables(tables)
    for position, table in enumerate(tables):
        repeated = [utt_id for utt_id, count in Counter(table.ids).items() if count > 1]
        if repeated:
            raise PredictionError(f"{_table_name(table, position)}: repeated id(s) {_shown(repeated)}")
    first = tables[0]
    ids = list(first.ids)
    known = set(ids)
    aligned = [first]
    for position, table in enumerate(tables[1:], start=1):
        extra = [utt_id for utt_id in table.ids if utt_id not in known]
        if extra:
            raise PredictionError(
                f"{_table_name(first, 0)}: no prediction for id(s) {_shown(extra)} "
                f"(present in {_table_name(table, position)})"
            )
        present = set(table.ids)
        missing = [utt_id for utt_id in ids if utt_id not in present]
        if missing:
            raise PredictionError(
                f"{_table_name(table, position)}: no prediction for id(s) {_shown(missing)} "
                f"(present in {_table_name(first, 0)})"
            )
        aligned.append(table.reorder(ids))
    return ids, aligned


def _member_classes(table: PredictionTable) -> list[str]:
    """The table's classes: its label set, then any label outside it."""
    order = list(table.label_set) if table.label_set is not None else []
    if not table.labels and not order:
        return []
    return list(LabelSet.from_labels(table.labels, order=order))


def ensemble_label_set(tables: Sequence[PredictionTable]) -> LabelSet | None:
    """Union of the members' classes: the first table's order first, then new ones.

    ``None`` when no member has any class (empty label-only tables).
    """
    classes: dict[str, None] = {}
    for table in _check_tables(tables):
        classes.update(dict.fromkeys(_member_classes(table)))
    return LabelSet(classes) if classes else None


def _probs_on(table: PredictionTable, label_set: LabelSet) -> np.ndarray:
    """The table's ``(N, C_table)`` probabilities as ``(N, C)`` columns of ``label_set``."""
    index = label_set.index
    out = np.zeros((len(table), len(label_set)), dtype=np.float64)
    out[:, [index[label] for label in table.label_set]] = table.probs
    return out


def _check_weights(weights: Sequence[float] | np.ndarray | None, count: int) -> np.ndarray:
    if weights is None:
        return np.ones(count, dtype=np.float64)
    try:
        array = np.asarray(weights, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"weights must be numbers, got {weights!r}") from None
    if array.ndim != 1 or len(array) != count:
        raise ValueError(f"got {array.size} weight(s) for {count} table(s); give one weight per table")
    if not np.all(np.isfinite(array)) or np.any(array < 0):
        raise ValueError(f"weights must be finite and non-negative, got {array.tolist()}")
    if array.sum() <= 0:
        raise ValueError("weights must not all be zero")
    return array


def _member_names(tables: Sequence[PredictionTable]) -> str:
    return ", ".join(f"{i}: {table.name if table.source else '(unnamed)'}" for i, table in enumerate(tables))


def _resolve_member(tables: Sequence[PredictionTable], member: int | str | os.PathLike) -> int:
    """Index of the member named by ``member``: an index (an int, or a string of digits as the command line gives
    it), a source path (as given or resolved) or a file stem."""
    if isinstance(member, (bool, np.bool_)):
        raise TypeError("tiebreak must be a member index or name, not a bool")
    if isinstance(member, str) and member.isdigit():
        member = int(member)
    if isinstance(member, (int, np.integer)):
        if not 0 <= int(member) < len(tables):
            raise ValueError(f"tiebreak index {member} out of range for {len(tables)} tables ({_member_names(tables)})")
        return int(member)
    if not isinstance(member, (str, os.PathLike)):
        raise TypeError(f"tiebreak must be a member index or name, got {type(member).__name__}")
    wanted = os.fspath(member)
    sources = [table.source for table in tables]

    def resolved(path: str) -> Path:
        return Path(path).expanduser().resolve()

    rules = (
        lambda source: source == wanted,
        lambda source: resolved(source) == resolved(wanted),
        lambda source: Path(source).stem == wanted,
    )
    for rule in rules:
        matches = [i for i, source in enumerate(sources) if source is not None and rule(source)]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise ValueError(
                f"tiebreak {wanted!r} matches several members ({', '.join(str(i) for i in matches)}); "
                f"give its index or full path. Members: {_member_names(tables)}"
            )
    raise ValueError(f"tiebreak {wanted!r} is not a member. Members: {_member_names(tables)}")


def _break_tie(
    row: int,
    tied: np.ndarray,
    votes: np.ndarray,
    weights: np.ndarray,
    tiebreak: int | None,
    prob_sums: np.ndarray | None,
) -> int:
    """Class index that wins the tie of one utterance (``tied``: boolean ``(C,)``)."""
    if tiebreak is not None and tied[votes[tiebreak, row]]:
        return int(votes[tiebreak, row])
    if prob_sums is not None:
        candidates = np.flatnonzero(tied)
        sums = prob_sums[row, candidates]
        top = candidates[np.isclose(sums, sums.max(), rtol=_TIE_RTOL, atol=0.0)]
        if len(top) == 1:
            return int(top[0])
        tied = np.zeros_like(tied)
        tied[top] = True
    for member in range(votes.shape[0]):
        if weights[member] > 0 and tied[votes[member, row]]:
            return int(votes[member, row])
    raise AssertionError("a tied label always has a voter")


def _hard_vote(
    tables: Sequence[PredictionTable],
    weights: Sequence[float] | np.ndarray | None,
    tiebreak: int | str | os.PathLike | None,
    source: str,
) -> PredictionTable:
    tables = _check_tables(tables)
    weights = _check_weights(weights, len(tables))
    member = None if tiebreak is None else _resolve_member(tables, tiebreak)
    ids, aligned = align_tables(tables)
    label_set = ensemble_label_set(aligned)
    if label_set is None:
        return PredictionTable([], [], None, None, source)
    index = label_set.index
    n_members, n_rows, n_classes = len(aligned), len(ids), len(label_set)
    votes = np.array([[index[label] for label in table.labels] for table in aligned], dtype=np.int64)
    votes = votes.reshape(n_members, n_rows)
    rows = np.arange(n_rows)
    scores = np.zeros((n_rows, n_classes), dtype=np.float64)
    for m in range(n_members):
        scores[rows, votes[m]] += weights[m]
    winners = scores.argmax(axis=1) if n_rows else np.zeros(0, dtype=np.int64)
    tied = np.isclose(scores, scores.max(axis=1, keepdims=True), rtol=_TIE_RTOL, atol=0.0)
    tied_rows = np.flatnonzero(tied.sum(axis=1) > 1)
    if len(tied_rows):
        prob_sums = None
        if all(table.probs is not None for table in aligned):
            prob_sums = sum(w * _probs_on(t, label_set) for w, t in zip(weights, aligned))
        for row in tied_rows:
            winners[row] = _break_tie(row, tied[row], votes, weights, member, prob_sums)
    shares = scores / weights.sum()
    return PredictionTable(ids, label_set.decode_many(winners), shares, label_set, source)


def majority_vote(
    tables: Sequence[PredictionTable], tiebreak: int | str | os.PathLike | None = None
) -> PredictionTable:
    """Plurality vote of the members' labels (one vote each).

    ``tiebreak``: the member that wins ties it takes part in (an index into
    ``tables``, a source path or a file stem); other ties follow the module's
    rules. ``probs`` of the result are the vote shares ``(N, C)`` over the
    ensemble label set; ``source`` is ``"majority"``.
    """
    return _hard_vote(tables, None, tiebreak, "majority")


def weighted_vote(
    tables: Sequence[PredictionTable],
    weights: Sequence[float] | np.ndarray,
    tiebreak: int | str | os.PathLike | None = None,
) -> PredictionTable:
    """Plurality vote where member ``m`` casts ``weights[m]`` votes.

    Weights are non-negative, not all zero, one per table. ``probs`` are the
    weighted vote shares; ties as in ``majority_vote``; ``source`` is ``"weighted"``.
    """
    if weights is None:
        raise ValueError("weighted_vote needs one weight per table")
    return _hard_vote(tables, weights, tiebreak, "weighted")


def soft_vote(
    tables: Sequence[PredictionTable], weights: Sequence[float] | np.ndarray | None = None
) -> PredictionTable:
    """(Weighted) mean of the members' probabilities over the ensemble label set.

    A class a member lacks gets probability 0 from it. Every table must carry
    probabilities. The label is the argmax (the earlier class in the ensemble
    label set on an exact tie); ``source`` is ``"soft"``.
    """
    tables = _check_tables(tables)
    weights = _check_weights(weights, len(tables))
    for position, table in enumerate(tables):
        if table.probs is None:
            raise PredictionError(
                f"{_table_name(table, position)}: soft voting needs class probabilities, "
                "but this table has labels only (use majority or weighted voting)"
            )
        if not np.all(np.isfinite(table.probs)):
            raise PredictionError(f"{_table_name(table, position)}: probabilities contain NaN or infinity")
    ids, aligned = align_tables(tables)
    label_set = ensemble_label_set(aligned)
    mean = sum(w * _probs_on(t, label_set) for w, t in zip(weights, aligned)) / weights.sum()
    labels = label_set.decode_many(mean.argmax(axis=1)) if ids else []
    return PredictionTable(ids, labels, mean, label_set, "soft")


def combine(
    tables: Sequence[PredictionTable],
    method: str,
    *,
    weights: Sequence[float] | np.ndarray | None = None,
    tiebreak: int | str | os.PathLike | None = None,
) -> PredictionTable:
    """Combine ``tables`` with one of ``ENSEMBLE_METHODS``."""
    if method == "majority":
        if weights is not None:
            raise ValueError("majority voting takes no weights; use method 'weighted'")
        return majority_vote(tables, tiebreak=tiebreak)
    if method == "weighted":
        if weights is None:
            raise ValueError("method 'weighted' needs weights, one per table")
        return weighted_vote(tables, weights, tiebreak=tiebreak)
    if method == "soft":
        if tiebreak is not None:
            raise ValueError("soft voting has no ties to break; drop tiebreak or use a hard vote")
        return soft_vote(tables, weights=weights)
    raise ValueError(f"unknown ensemble method {method!r}; choose one of {', '.join(ENSEMBLE_METHODS)}")
