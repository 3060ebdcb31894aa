"""Ensembles fitted on dev predictions, cross-fitted, and a rule chosen on dev.

Members are named prediction tables (``{"s1": table, "s2": table, ...}``). A
``FittedEnsemble`` is what was learned from the members' dev predictions (vote
weights, a stacked logistic regression, the best member); it is plain JSON and
applies to any tables of the same members, e.g. their test predictions.

``cross_fit`` scores a combiner on dev without letting it see the rows it
scores: dev is split into folds (by speaker when speakers are given), each fold
is predicted by a combiner fitted on the other folds. ``choose_ensemble`` picks
the method with the best cross-fitted dev score and refits it on all of dev.

The ensemble label set is the members' classes (``ensemble_label_set``, first
member first) followed by any reference class that no member predicts.
"""

from __future__ import annotations

import copy
from collections import Counter
from dataclasses import dataclass, field, fields, replace
from typing import Mapping, Sequence

import numpy as np

from abhinaya.evaluation.ensemble import align_tables, ensemble_label_set, majority_vote, soft_vote, weighted_vote
from abhinaya.evaluation.metrics import classification_report
from abhinaya.labels import LabelSet
from abhinaya.predictions import PredictionTable

__all__ = [
    "COMBINER_METHODS",
    "EnsembleChoice",
    "FittedEnsemble",
    "choose_ensemble",
    "cross_fit",
    "fit_ensemble",
]

COMBINER_METHODS: tuple[str, ...] = ("majority", "soft", "weighted", "stacking", "best_member")
# Methods that learn nothing from the references: cross-fitting just applies them.
_UNFITTED_METHODS = ("majority", "soft")
# Methods with hard votes, the only ones with ties for a tie-break member.
_VOTING_METHODS = ("majority", "weighted")
# Stacking features are log-probabilities, with probabilities clipped from below at this value.
STACKING_MIN_PROB = 1e-6
_METRIC_TITLES = {"macro_f1": "macro-F1", "ua": "UA", "wa": "WA", "weighted_f1": "weighted-F1"}
_SCORE_TOLERANCE = 1e-12


def _check_method(method: str) -> None:
    if method not in COMBINER_METHODS:
        raise ValueError(f"unknown ensemble method {method!r}; choose one of {', '.join(COMBINER_METHODS)}")


def _align(tables: Mapping[str, PredictionTable], members: Sequence[str]) -> tuple[list[str], list[PredictionTable]]:
    """The members' tables in ``members`` order, rows in the first member's id order."""
    missing = [name for name in members if name not in tables]
    if missing:
        given = ", ".join(map(str, tables)) or "none"
        raise ValueError(f"no prediction table for ensemble member(s) {', '.join(missing)} (tables given: {given})")
    # a table without a source is named by its member in errors
    named = []
    for name in members:
        table = tables[name]
        named.append(replace(table, source=name) if isinstance(table, PredictionTable) and not table.source else table)
    return align_tables(named)


def _labelled_rows(ids: Sequence[str], references: Mapping[str, str | None]) -> tuple[list[int], list[str]]:
    """Row indices of ``ids`` with a reference label, and those labels; none is a ``ValueError``."""
    rows = [row for row, utt_id in enumerate(ids) if references.get(utt_id) is not None]
    if not rows:
        raise ValueError(f"none of the {len(ids)} predicted ids has a reference label to fit the ensemble on")
    return rows, [references[ids[row]] for row in rows]


def _fit_label_set(aligned: Sequence[PredictionTable], targets: Sequence[str]) -> LabelSet:
    """The members' classes, then reference classes that no member has (canonical order)."""
    members = ensemble_label_set(aligned)
    return LabelSet.from_labels(targets, order=list(members) if members is not None else None)


def _table_classes(table: PredictionTable) -> list[str]:
    """The table's label set, then any label it predicts outside it."""
    classes = list(table.label_set) if table.label_set is not None else []
    return classes + sorted(set(table.labels) - set(classes))


def _probs_over(table: PredictionTable, label_set: LabelSet) -> np.ndarray:
    """``(N, C)`` probabilities of ``table`` on ``label_set`` columns: its own columns
    by name (a class it lacks is 0, one outside ``label_set`` is dropped), or one-hot
    of its labels when it has none."""
    index = label_set.index
    out = np.zeros((len(table), len(label_set)), dtype=np.float64)
    if table.probs is None:
        for row, label in enumerate(table.labels):
            if label in index:
                out[row, index[label]] = 1.0
        return out
    for column, label in enumerate(table.label_set):
        if label in index:
            out[:, index[label]] = table.probs[:, column]
    return out


def _relabel(table: PredictionTable, label_set: LabelSet, source: str) -> PredictionTable:
    """``table`` over ``label_set`` followed by any class of the table outside it."""
    extra = [label for label in _table_classes(table) if label not in label_set]
    full = LabelSet([*label_set, *extra])
    probs = None if table.probs is None else _probs_over(table, full)
    return PredictionTable(list(table.ids), list(table.labels), probs, full, source)


def _macro_f1(labels: Sequence[str], targets: Sequence[str], label_set: LabelSet) -> float:
    return classification_report(targets, labels, list(label_set))["macro_f1"]


def _stacking_features(aligned: Sequence[PredictionTable], label_set: LabelSet, min_prob: float) -> np.ndarray:
    """``(N, M*C)``: each member's log-probabilities on ``label_set`` (clipped from below
    at ``min_prob``), member-major."""
    columns = [np.log(np.clip(_probs_over(table, label_set), min_prob, None)) for table in aligned]
    return np.concatenate(columns, axis=1)


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


@dataclass
class FittedEnsemble:
    """A combiner of named members, learned on dev and stored as plain JSON.

    ``method``: one of ``COMBINER_METHODS``. ``members``: member names in order.
    ``label_set``: the ensemble's classes. ``tiebreak``: the member that wins ties of
    the hard votes (majority, weighted). ``weights``: one vote weight per member
    (weighted). ``stacker``: the meta-classifier (stacking; see ``_fit_stacker``).
    ``member``: the chosen member (best_member).
    """

    method: str
    members: list[str]
    label_set: list[str]
    tiebreak: str | None = None
    weights: list[float] | None = None
    stacker: dict | None = None
    member: str | None = None

    def __post_init__(self):
        _check_method(self.method)
        self.members = [str(name) for name in self.members]
        if not self.members or len(set(self.members)) != len(self.members):
            raise ValueError(f"{self.method} ensemble: members must be distinct names, got {self.members}")
        self.label_set = list(LabelSet(self.label_set))
        for role, name in (("tiebreak", self.tiebreak), ("member", self.member)):
            if name is not None and name not in self.members:
                members = ", ".join(self.members)
                raise ValueError(f"{self.method} ensemble: {role} {name!r} is not a member ({members})")
        if self.tiebreak is not None and self.method not in _VOTING_METHODS:
            voting = ", ".join(_VOTING_METHODS)
            raise ValueError(f"{self.method} ensemble has no ties to break; tiebreak is for {voting}")
        if (self.weights is not None) != (self.method == "weighted"):
            raise ValueError(f"{self.method} ensemble: weights are for the weighted method and required by it")
        if self.weights is not None:
            self.weights = [float(w) for w in self.weights]
            if len(self.weights) != len(self.members):
                raise ValueError(f"weighted ensemble: {len(self.weights)} weight(s) for {len(self.members)} members")
            if not all(np.isfinite(self.weights)) or min(self.weights) < 0 or sum(self.weights) <= 0:
                raise ValueError(f"weighted ensemble: weights must be finite, non-negative, not all 0: {self.weights}")
        if (self.stacker is not None) != (self.method == "stacking"):
            raise ValueError(f"{self.method} ensemble: a stacker is for the stacking method and required by it")
        if self.stacker is not None:
            self._check_stacker()
        if (self.member is not None) != (self.method == "best_member"):
            raise ValueError(f"{self.method} ensemble: member is for the best_member method and required by it")

    def _check_stacker(self) -> None:
        keys = {"classes", "features", "coef", "intercept", "min_prob", "C"}
        if set(self.stacker) != keys:
            raise ValueError(f"stacking ensemble: stacker needs the keys {sorted(keys)}, got {sorted(self.stacker)}")
        features = [[str(member), str(label)] for member, label in self.stacker["features"]]
        expected = [[member, label] for member in self.members for label in self.label_set]
        if features != expected:
            raise ValueError("stacking ensemble: stacker features must be every (member, class) pair, member-major")
        classes = [str(label) for label in self.stacker["classes"]]
        unknown = [label for label in classes if label not in self.label_set]
        if unknown:
            raise ValueError(f"stacking ensemble: stacker classes {unknown} are not in the label set {self.label_set}")
        coef = np.asarray(self.stacker["coef"], dtype=np.float64)
        intercept = np.asarray(self.stacker["intercept"], dtype=np.float64)
        if coef.shape != (len(classes), len(features)) or intercept.shape != (len(classes),):
            raise ValueError(
                f"stacking ensemble: coef {coef.shape} / intercept {intercept.shape} do not match "
                f"{len(classes)} classes x {len(features)} features"
            )
        self.stacker = {
            "classes": classes,
            "features": features,
            "coef": coef.tolist(),
            "intercept": intercept.tolist(),
            "min_prob": float(self.stacker["min_prob"]),
            "C": float(self.stacker["C"]),
        }

    def to_dict(self) -> dict:
        """JSON-ready dict (lists of floats, no pickled objects)."""
        return {
            "method": self.method,
            "members": list(self.members),
            "label_set": list(self.label_set),
            "tiebreak": self.tiebreak,
            "weights": None if self.weights is None else list(self.weights),
            "stacker": copy.deepcopy(self.stacker),
            "member": self.member,
        }

    @classmethod
    def from_dict(cls, data: Mapping) -> "FittedEnsemble":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown fitted-ensemble key(s) {unknown}; expected {sorted(known)}")
        missing = [key for key in ("method", "members", "label_set") if key not in data]
        if missing:
            raise ValueError(f"fitted ensemble lacks {', '.join(missing)}")
        return cls(**data)

    def apply(self, tables: Mapping[str, PredictionTable]) -> PredictionTable:
        """Combine the members' tables (keyed by member name; other keys ignored).

        Returns a table in the first member's id order, over ``label_set`` (then
        any class the members add that the ensemble never saw, except for
        stacking, which predicts only its label set); ``source`` is the method.
        """
        ids, aligned = _align(tables, self.members)
        label_set = LabelSet(self.label_set)
        if self.method == "majority":
            tiebreak = None if self.tiebreak is None else self.members.index(self.tiebreak)
            return _relabel(majority_vote(aligned, tiebreak=tiebreak), label_set, self.method)
        if self.method == "weighted":
            # A member with weight 0 (at chance on dev) breaks no ties either.
            tiebreak = None
            if self.tiebreak is not None and self.weights[self.members.index(self.tiebreak)] > 0:
                tiebreak = self.members.index(self.tiebreak)
            return _relabel(weighted_vote(aligned, self.weights, tiebreak=tiebreak), label_set, self.method)
        if self.method == "soft":
            return _relabel(soft_vote(aligned), label_set, self.method)
        if self.method == "best_member":
            return _relabel(aligned[self.members.index(self.member)], label_set, self.method)
        return self._apply_stacker(ids, aligned, label_set)

    def _apply_stacker(self, ids: list[str], aligned: list[PredictionTable], label_set: LabelSet) -> PredictionTable:
        features = _stacking_features(aligned, label_set, self.stacker["min_prob"])
        coef = np.asarray(self.stacker["coef"], dtype=np.float64)
        intercept = np.asarray(self.stacker["intercept"], dtype=np.float64)
        class_probs = _softmax(features @ coef.T + intercept)
        probs = np.zeros((len(ids), len(label_set)), dtype=np.float64)
        probs[:, [label_set.index[label] for label in self.stacker["classes"]]] = class_probs
        labels = label_set.decode_many(probs.argmax(axis=1)) if ids else []
        return PredictionTable(ids, labels, probs, label_set, self.method)


def _fit_stacker(
    aligned: Sequence[PredictionTable], members: Sequence[str], rows: Sequence[int], targets: Sequence[str],
    label_set: LabelSet, C: float, seed: int,
) -> dict:
    """Multinomial logistic regression (balanced classes) on the rows' stacking features.

    Returns ``{"classes": K names, "features": [[member, class], ...] (F = M*C, member-major),
    "coef": (K, F), "intercept": (K,), "min_prob", "C"}``; class probabilities are
    ``softmax(x @ coef.T + intercept)``.
    """
    from sklearn.linear_model import LogisticRegression

    features = _stacking_features(aligned, label_set, STACKING_MIN_PROB)[list(rows)]
    classes = sorted(set(targets), key=label_set.index.__getitem__)
    if len(classes) == 1:  # one class seen: it always wins
        coef = np.zeros((1, features.shape[1]))
        intercept = np.zeros(1)
    else:
        model = LogisticRegression(C=C, class_weight="balanced", solver="lbfgs", max_iter=1000, random_state=seed)
        model.fit(features, list(targets))
        order = [list(model.classes_).index(label) for label in classes]
        if len(classes) == 2:  # sklearn's binary model scores the second class: softmax([0, z]) = sigmoid(z)
            coef = np.vstack([np.zeros_like(model.coef_), model.coef_])
            intercept = np.concatenate([[0.0], model.intercept_])
        else:
            coef, intercept = model.coef_, model.intercept_
        coef, intercept = coef[order], intercept[order]
    return {
        "classes": classes,
        "features": [[member, label] for member in members for label in label_set],
        "coef": coef.tolist(),
        "intercept": intercept.tolist(),
        "min_prob": STACKING_MIN_PROB,
        "C": float(C),
    }


def fit_ensemble(
    method: str,
    tables: Mapping[str, PredictionTable],
    references: Mapping[str, str | None],
    *,
    tiebreak: str | None = None,
    C: float = 1.0,
    seed: int = 0,
) -> FittedEnsemble:
    """Fit ``method`` on the rows of ``tables`` whose id has a reference label.

    ``tables``: member name -> dev table (the order of the mapping is the member
    order). ``references``: id -> canonical label (``None`` or absent: unlabelled,
    not used). ``tiebreak``: member name winning ties of the hard votes (ignored by
    soft, stacking and best_member). ``C``: inverse regularisation of the stacker.

    - weighted: member weight = its macro-F1 on the rows minus chance (1 / number of
      classes), clipped at 0; equal weights if every member is at chance.
    - best_member: the member with the highest macro-F1 (the earlier one on a tie).
    """
    _check_method(method)
    members = [str(name) for name in tables]
    if not members:
        raise ValueError("no prediction tables to fit an ensemble on")
    if tiebreak is not None and tiebreak not in tables:
        raise ValueError(f"tiebreak {tiebreak!r} is not a member ({', '.join(members)})")
    ids, aligned = _align(tables, members)
    rows, targets = _labelled_rows(ids, references)
    label_set = _fit_label_set(aligned, targets)
    fitted = {"method": method, "members": members, "label_set": list(label_set)}
    if method in _VOTING_METHODS:
        fitted["tiebreak"] = tiebreak
    if method in ("weighted", "best_member"):
        scores = np.array([_macro_f1([table.labels[row] for row in rows], targets, label_set) for table in aligned])
        if method == "best_member":
            fitted["member"] = members[int(np.argmax(scores))]
        else:
            weights = np.clip(scores - 1.0 / len(label_set), 0.0, None)
            fitted["weights"] = (weights if weights.sum() > 0 else np.ones(len(members))).tolist()
    if method == "stacking":
        fitted["stacker"] = _fit_stacker(aligned, members, rows, targets, label_set, C, seed)
    return FittedEnsemble(**fitted)


def _dev_folds(
    ids: Sequence[str], targets: Sequence[str], groups: Mapping[str, str | None] | None, n_folds: int, seed: int
) -> tuple[list[np.ndarray], bool]:
    """Held-out row indices of each fold, and whether folds are by speaker.

    By speaker (``GroupKFold``, ``min(n_folds, groups)`` folds) when the rows have
    at least 2 distinct speakers; a row without a speaker is a group of its own.
    Otherwise by utterance: ``StratifiedKFold`` when every class has a row per fold,
    else ``KFold`` (both shuffled with ``seed``).
    """
    from sklearn.model_selection import GroupKFold, KFold, StratifiedKFold

    if n_folds < 2:
        raise ValueError(f"cross-fitting needs n_folds >= 2, got {n_folds}")
    if len(ids) < 2:
        raise ValueError(f"cross-fitting needs at least 2 labelled rows, got {len(ids)}")
    speakers = [None if groups is None else groups.get(utt_id) for utt_id in ids]
    rows = np.arange(len(ids))
    if len({s for s in speakers if s is not None}) >= 2:
        keys = [f"speaker:{s}" if s is not None else f"utterance:{utt_id}" for s, utt_id in zip(speakers, ids)]
        splitter = GroupKFold(n_splits=min(n_folds, len(set(keys))))
        return [held for _, held in splitter.split(rows, groups=keys)], True
    n_splits = min(n_folds, len(ids))
    if min(Counter(targets).values()) >= n_splits:
        splitter = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
        return [held for _, held in splitter.split(rows, list(targets))], False
    splitter = KFold(n_splits=n_splits, shuffle=True, random_state=seed)
    return [held for _, held in splitter.split(rows)], False


def cross_fit(
    method: str,
    tables: Mapping[str, PredictionTable],
    references: Mapping[str, str | None],
    groups: Mapping[str, str | None] | None = None,
    *,
    n_folds: int = 5,
    seed: int = 0,
    tiebreak: str | None = None,
    C: float = 1.0,
) -> PredictionTable:
    """Out-of-fold predictions of ``method`` for the labelled rows of ``tables``.

    Each fold (see ``_dev_folds``; ``groups``: id -> speaker) is predicted by
    ``fit_ensemble`` fitted on the other folds' references only, so no row is
    scored by a combiner that saw its label. majority and soft learn nothing and
    are applied directly. Returns the labelled rows in the tables' id order, over
    the label set ``fit_ensemble`` gives on all of them; ``source`` is ``method``.
    """
    _check_method(method)
    members = list(tables)
    ids, aligned = _align(tables, members)
    rows, targets = _labelled_rows(ids, references)
    labelled_ids = [ids[row] for row in rows]
    dev = {name: table.reorder(labelled_ids) for name, table in zip(members, aligned)}
    if method in _UNFITTED_METHODS:
        return fit_ensemble(method, tables, references, tiebreak=tiebreak, C=C, seed=seed).apply(dev)
    label_set = _fit_label_set(aligned, targets)
    folds, _ = _dev_folds(labelled_ids, targets, groups, n_folds, seed)
    predicted: dict[str, tuple[str, np.ndarray | None]] = {}
    for held_rows in folds:
        held_ids = [labelled_ids[row] for row in held_rows]
        held = set(held_ids)
        training = {utt_id: label for utt_id, label in zip(labelled_ids, targets) if utt_id not in held}
        fold_fit = fit_ensemble(method, tables, training, tiebreak=tiebreak, C=C, seed=seed)
        out = fold_fit.apply({name: table.reorder(held_ids) for name, table in dev.items()})
        out = _relabel(out, label_set, method)
        for row, utt_id in enumerate(out.ids):
            predicted[utt_id] = (out.labels[row], None if out.probs is None else out.probs[row])
    labels = [predicted[utt_id][0] for utt_id in labelled_ids]
    rows_probs = [predicted[utt_id][1] for utt_id in labelled_ids]
    # best_member may pick a labels-only member in some folds: then the result has labels only.
    probs = None if any(p is None for p in rows_probs) else np.array(rows_probs).reshape(len(labels), len(label_set))
    return PredictionTable(labelled_ids, labels, probs, label_set, method)


@dataclass
class EnsembleChoice:
    """The ensemble method chosen on cross-fitted dev predictions.

    ``method``: the chosen method; ``final``: it fitted on all labelled dev rows;
    ``fitted``: every method fitted on all labelled dev rows (to report each on
    test); ``dev_tables``: method -> cross-fitted dev table; ``dev_scores``:
    method -> ``classification_report`` of that table; ``reason``: one sentence.
    """

    method: str
    metric: str
    final: FittedEnsemble
    fitted: dict[str, FittedEnsemble]
    dev_tables: dict[str, PredictionTable] = field(repr=False)
    dev_scores: dict[str, dict] = field(repr=False)
    reason: str

    def to_dict(self) -> dict:
        """JSON-ready summary: method, metric, reason, dev macro-F1/UA/WA per method, fitted ensembles."""
        return {
            "method": self.method,
            "metric": self.metric,
            "reason": self.reason,
            "dev_scores": {
                name: {key: report[key] for key in ("macro_f1", "ua", "wa")} for name, report in self.dev_scores.items()
            },
            "final": self.final.to_dict(),
            "fitted": {name: fitted.to_dict() for name, fitted in self.fitted.items()},
        }


def choose_ensemble(
    tables: Mapping[str, PredictionTable],
    references: Mapping[str, str | None],
    groups: Mapping[str, str | None] | None = None,
    *,
    methods: Sequence[str] = ("majority", "soft", "weighted", "stacking", "best_member"),
    tiebreak: str | None = None,
    metric: str = "macro_f1",
    n_folds: int = 5,
    seed: int = 0,
    C: float = 1.0,
) -> EnsembleChoice:
    """Cross-fit every method on the labelled dev rows and choose the best.

    The chosen method has the highest cross-fitted dev ``metric`` (``macro_f1``,
    ``ua``, ``wa`` or ``weighted_f1``); a tie goes to the method listed first, so
    with majority first ABHINAYA's rule wins ties. Scores are over the ensemble
    label set (a class absent from dev counts, as in ``evaluate``).
    """
    methods = list(methods)
    if not methods:
        raise ValueError("no ensemble methods to choose from")
    for method in methods:
        _check_method(method)
    repeated = sorted(name for name, count in Counter(methods).items() if count > 1)
    if repeated:
        raise ValueError(f"ensemble method(s) listed twice: {', '.join(repeated)}")
    if metric not in _METRIC_TITLES:
        raise ValueError(f"unknown metric {metric!r}; choose one of {', '.join(_METRIC_TITLES)}")
    ids, aligned = _align(tables, list(tables))
    rows, targets = _labelled_rows(ids, references)
    label_set = _fit_label_set(aligned, targets)
    options = {"tiebreak": tiebreak, "C": C, "seed": seed}
    dev_tables = {m: cross_fit(m, tables, references, groups, n_folds=n_folds, **options) for m in methods}
    dev_scores = {m: classification_report(targets, table.labels, list(label_set)) for m, table in dev_tables.items()}
    scores = {m: dev_scores[m][metric] for m in methods}
    best = max(scores.values())
    tied = [m for m in methods if scores[m] >= best - _SCORE_TOLERANCE]
    chosen = tied[0]
    fitted = {m: fit_ensemble(m, tables, references, **options) for m in methods}

    labelled_ids = [ids[row] for row in rows]
    _, by_speaker = _dev_folds(labelled_ids, targets, groups, n_folds, seed)
    title = _METRIC_TITLES[metric]
    others = ", ".join(f"{m} {scores[m]:.3f}" for m in methods if m != chosen)
    tie = f", tied with {' and '.join(tied[1:])} and listed first" if len(tied) > 1 else ""
    if by_speaker:
        speakers = {groups[utt_id] for utt_id in labelled_ids if groups.get(utt_id) is not None}
        where = f"of {len(speakers)} speakers (folds by speaker)"
    else:
        where = "(folds by utterance: no speaker groups)"
    reason = (
        f"{chosen}: highest cross-fitted dev {title} {scores[chosen]:.3f}{tie}"
        + (f" ({others})" if others else "")
        + f" over {len(labelled_ids)} dev utterances {where}"
    )
    return EnsembleChoice(chosen, metric, fitted[chosen], fitted, dev_tables, dev_scores, reason)
