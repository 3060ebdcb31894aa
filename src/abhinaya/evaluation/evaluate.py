"""Scoring a prediction table against a manifest's reference labels."""

from __future__ import annotations

from typing import Sequence

from abhinaya.evaluation.metrics import classification_report
from abhinaya.labels import LabelSet
from abhinaya.manifest import Utterance
from abhinaya.predictions import PredictionError, PredictionTable


class EvaluationError(ValueError):
    """Predictions and references that cannot be compared."""


def evaluation_label_set(table: PredictionTable, references: Sequence[str]) -> LabelSet:
    """The full label set to score over: the model's classes where the table
    carries them, plus any class that appears in the references or predictions
    (so a class absent from a split still counts)."""
    order = list(table.label_set) if table.label_set is not None else []
    return LabelSet.from_labels(list(references) + list(table.labels), order=order or None)


def evaluate_predictions(
    table: PredictionTable,
    utterances: Sequence[Utterance],
    *,
    split: str | None = None,
    labels: Sequence[str] | None = None,
) -> dict:
    """Metrics of ``table`` on the labelled ``utterances``.

    Without ``split``, the predicted ids that have a reference label are scored
    (a manifest usually holds several splits). With ``split``, every labelled
    utterance of that split must have a prediction. Predicted ids absent from
    the manifest are an error: they mean a mismatched manifest.
    """
    known = {u.id: u for u in utterances}
    strangers = [utt_id for utt_id in table.ids if utt_id not in known]
    if strangers:
        shown = ", ".join(strangers[:5]) + (f" and {len(strangers) - 5} more" if len(strangers) > 5 else "")
        raise EvaluationError(f"{table.source or 'predictions'}: id(s) not in the manifest: {shown}")
    if split is not None:
        wanted = [u.id for u in utterances if u.split == split and u.label is not None]
        if not wanted:
            raise EvaluationError(f"the manifest has no labelled utterance in split {split!r}")
        try:
            table = table.reorder(wanted)
        except PredictionError as err:
            raise EvaluationError(str(err)) from None
    ids = [utt_id for utt_id in table.ids if known[utt_id].label is not None]
    unlabelled = len(table.ids) - len(ids)
    if not ids:
        raise EvaluationError(f"{table.source or 'predictions'}: none of the predicted ids has a reference label")
    table = table.reorder(ids)
    references = [known[utt_id].label for utt_id in ids]
    label_order = list(labels) if labels is not None else list(evaluation_label_set(table, references))
    report = classification_report(references, table.labels, label_order)
    report["num_unlabelled_skipped"] = unlabelled
    # labelled utterances of the manifest (of the split, when given) that the table does not predict
    predicted = set(table.ids)
    report["num_labelled_not_predicted"] = sum(
        1 for u in utterances if u.label is not None and u.id not in predicted and (split is None or u.split == split)
    )
    rows = [known[utt_id] for utt_id in ids]
    if any(u.corpus for u in rows):
        report["per_corpus"] = per_corpus_reports(table, rows, utterances)
    return report


def per_corpus_reports(table: PredictionTable, rows: Sequence[Utterance], utterances: Sequence[Utterance]) -> dict:
    """For a manifest of several corpora (``Utterance.corpus``): each corpus scored on its own classes (those its
    labelled utterances in the manifest carry). With probabilities, each row's class is chosen among its corpus's
    classes, as training scores dev; a table of labels only is scored as it is."""
    from abhinaya.data.multi_corpus import restrict_to_corpus

    classes: dict[str, set[str]] = {}
    for utt in utterances:
        if utt.corpus and utt.label is not None:
            classes.setdefault(utt.corpus, set()).add(utt.label)
    labels = list(table.labels)
    if table.probs is not None and table.label_set is not None:
        ordered = {name: [c for c in table.label_set if c in found] for name, found in classes.items()}
        labels = restrict_to_corpus(table.probs, rows, table.label_set, ordered)
    reports = {}
    for name in sorted(classes):
        chosen = [i for i, u in enumerate(rows) if u.corpus == name]
        if not chosen:
            continue
        order = [c for c in (table.label_set or sorted(classes[name])) if c in classes[name]]
        order += sorted(classes[name] - set(order))
        part = classification_report([rows[i].label for i in chosen], [labels[i] for i in chosen], order)
        reports[name] = {k: part[k] for k in ("macro_f1", "ua", "wa", "num_utterances", "labels", "per_class",
                                              "confusion_matrix")}
    return reports


def evaluate_dimensions(table, utterances: Sequence[Utterance], split: str | None = None) -> dict:
    """CCC of each predicted dimension (a ``predictions.DimensionTable``) against the manifest's ``attributes`` of
    the same name, over the rated utterances (of ``split``, when given): ``{name: {"ccc": ..., "num_utterances"}}``."""
    from abhinaya.evaluation.metrics import concordance_correlation

    known = {u.id: u for u in utterances if split is None or u.split == split}
    out = {}
    for k, name in enumerate(table.names):
        pairs = [(row[k], known[i].attributes[name]) for i, row in zip(table.ids, table.values)
                 if i in known and known[i].attributes and name in known[i].attributes]
        if len(pairs) >= 2:
            x, y = zip(*pairs)
            out[name] = {"ccc": concordance_correlation(list(x), list(y)), "num_utterances": len(pairs)}
    return out
