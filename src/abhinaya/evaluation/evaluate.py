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
    return report
