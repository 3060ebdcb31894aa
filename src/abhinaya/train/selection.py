"""Model selection: which utterances score an epoch, which epoch's weights a run keeps, when it stops.

- ``balanced_subset``: the class-balanced dev subset ABHINAYA selects its models on;
- ``select_epoch`` and ``should_stop``: the best epoch by the dev selection metric, ``train.keep`` (best, last or
  average) and early stopping (``train.patience``);
- ``averages_epoch`` and ``running_mean``: ``train.keep: average``, the mean of the saved state over the last
  ``train.average_epochs`` epochs, folded in one epoch at a time;
- ``DevSelection``: scores a model on dev (gathered over processes), keeps the selected weights and their dev
  predictions in the run folder, makes the weight average the run's weights, and computes the reference mean for
  per-speaker normalisation with the selected weights.

The reference mean is the mean pooled vector of the clean (un-augmented) training utterances, computed once after
training; ``abhinaya predict`` moves speakers to it, and so do the final dev predictions the run folder keeps
with ``predict.speaker_norm``. Per-epoch dev scoring, which selects the epoch, moves speakers to the running mean
the head norm keeps (over the augmented training crops), as it always did: training and selection do not depend on
the reference.
"""

from __future__ import annotations

import random
import time
from typing import Any, Callable, Sequence

import numpy as np
import torch

from abhinaya import runs
from abhinaya.evaluation.metrics import classification_report
from abhinaya.labels import LabelSet
from abhinaya.manifest import Utterance
from abhinaya.members import Member, Recipe
from abhinaya.predict.engine import predict_pooled, predict_with_dimensions
from abhinaya.predictions import PredictionTable, table_from_probs
from abhinaya.recipes import TrainConfig
from abhinaya.train.state import Progress, RunFiles, TrainingError, load_saved_state
from abhinaya.weights.checkpoint import load_model_weights


def balanced_subset(utterances: Sequence[Utterance], per_class: int | None, seed: int) -> list[Utterance]:
    """A class-balanced subset (as ABHINAYA selects its models on): the same
    number of utterances from every class, ``per_class`` or the rarest class's
    count, drawn reproducibly."""
    by_class: dict[str, list[Utterance]] = {}
    for utt in utterances:
        by_class.setdefault(utt.label, []).append(utt)
    if not by_class:
        return []
    count = per_class or min(len(v) for v in by_class.values())
    rng = random.Random(seed)
    subset = []
    for label in sorted(by_class):
        pool = sorted(by_class[label], key=lambda u: u.id)
        subset += pool if len(pool) <= count else rng.sample(pool, count)
    return sorted(subset, key=lambda u: u.id)


def select_epoch(progress: Progress, epoch: int, score: float | None, keep: str) -> tuple[bool, bool]:
    """Record finished epoch ``epoch`` (1-based) with dev ``score`` (None without a dev split: every epoch counts as
    the best, so the last is kept). Returns ``(improved, kept)``: whether it is the best so far, and whether the run
    folder takes its weights (the best with ``keep: best``; every epoch otherwise)."""
    improved = score is None or score > progress.best_score
    if improved:
        progress.best_score = -1.0 if score is None else score
        progress.best_epoch = epoch
        progress.bad_epochs = 0
    else:
        progress.bad_epochs += 1
    kept = improved or keep != "best"
    if kept:
        progress.kept_epoch = epoch
    return improved, kept


def should_stop(progress: Progress, patience: int) -> bool:
    """Early stopping: ``patience`` epochs in a row without a better dev score (0 never stops)."""
    return bool(patience) and progress.bad_epochs >= patience


def averages_epoch(cfg: TrainConfig, epoch: int) -> bool:
    """Whether epoch ``epoch`` (0-based) is folded into the weight average (``keep: average``, the last
    ``average_epochs``)."""
    return cfg.keep == "average" and epoch + 1 > cfg.epochs - cfg.average_epochs


def running_mean(
    mean: dict[str, torch.Tensor] | None, current: dict[str, torch.Tensor], count: int
) -> dict[str, torch.Tensor]:
    """Fold ``current`` into the mean of ``count - 1`` earlier states (``mean``; None when ``count`` is 1) and return
    the mean of ``count``. Floating tensors are averaged, others (step counters) take the newest value."""
    current = {k: v.detach().to("cpu") for k, v in current.items()}
    if mean is None:
        return {k: v.clone() for k, v in current.items()}
    if mean.keys() != current.keys():
        raise TrainingError("the tensors to average changed between epochs")
    for key, value in current.items():
        if value.is_floating_point():
            mean[key] += (value.to(mean[key].dtype) - mean[key]) / count
        else:
            mean[key] = value.clone()
    return mean


class DevSelection:
    """Dev scoring and the weights a run keeps, for one member of a run (``dev_set`` None: no dev split)."""

    def __init__(
        self, member: Member, recipe: Recipe, accelerator, files: RunFiles, label_set: LabelSet, dev_set,
        batch_size: int, log: Callable[[str], None], corpus_classes: dict[str, list[str]] | None = None,
    ):
        self.member, self.recipe, self.accelerator, self.files = member, recipe, accelerator, files
        self.label_set, self.dev_set, self.batch_size, self.log = label_set, dev_set, batch_size, log
        self.metric = recipe.train.selection_metric
        self.corpus_classes = corpus_classes  # several corpora: each dev utterance's class among its corpus's

    def evaluate(self, model, reference: torch.Tensor | None = None) -> tuple[PredictionTable, dict[str, Any]]:
        """Dev predictions (gathered over processes) and their figures for the metrics log. With
        ``predict.speaker_norm`` speakers move to ``reference``, by default the head's running mean (per-epoch
        selection)."""
        predict = self.recipe.predict
        if predict.speaker_norm and reference is None:
            reference = self.member.pooled_mean(model)
        predicted = predict_with_dimensions(
            self.member, model, self.dev_set, self.batch_size, accelerator=self.accelerator,
            progress=self.recipe.train.progress, desc="dev", predict=predict, reference=reference,
        )
        ids, probs = predicted.ids, predicted.probs
        table = table_from_probs(ids, probs, self.label_set, source=runs.DEV_PREDICTIONS)
        utterances = self.dev_set.utterances
        if self.corpus_classes is not None:
            from abhinaya.data.multi_corpus import restrict_to_corpus

            table.labels = restrict_to_corpus(probs, utterances, self.label_set, self.corpus_classes)
        report = classification_report([u.label for u in utterances], table.labels, list(self.label_set))
        record: dict[str, Any] = {k: report[k] for k in ("macro_f1", "ua", "wa", "weighted_f1")}
        record["per_class_f1"] = {k: v["f1"] for k, v in report["per_class"].items()}
        names = self.member.dimension_names()
        if names:  # the dimension head on dev: ccc_<name> for each dimension the dev utterances are rated on
            from abhinaya.data.utterances import dimension_ratings
            from abhinaya.evaluation.metrics import concordance_correlation

            ratings = dimension_ratings(utterances, names)
            for k, name in enumerate(names):
                rated = ~np.isnan(ratings[:, k])
                if rated.sum() >= 2:
                    record[f"ccc_{name}"] = concordance_correlation(predicted.dimensions[rated, k], ratings[rated, k])
        if self.corpus_classes is not None:  # each corpus on its own classes: <name>_macro_f1, <name>_ua
            for name, classes in self.corpus_classes.items():
                rows = [i for i, u in enumerate(utterances) if u.corpus == name]
                if rows:
                    part = classification_report([utterances[i].label for i in rows],
                                                 [table.labels[i] for i in rows], classes)
                    record[f"{name}_macro_f1"], record[f"{name}_ua"] = part["macro_f1"], part["ua"]
        return table, record

    def select(self, model, table: PredictionTable | None, progress: Progress, average, record: dict):
        """Model selection at the end of an epoch (``record``: its figures, dev ones included where ``table`` holds
        its dev predictions): the run folder takes the kept weights and their dev predictions, and the epoch is
        folded into the weight average where ``keep: average`` asks. Returns the weight average."""
        cfg: TrainConfig = self.recipe.train
        inner = self.accelerator.unwrap_model(model)
        score = record[self.metric] if table is not None else None
        improved, kept = select_epoch(progress, record["epoch"], score, cfg.keep)
        # keep: average folds each of the last average_epochs epochs into a running mean; until the run ends, the
        # run folder holds the latest epoch, as with keep: last.
        averaged = averages_epoch(cfg, record["epoch"] - 1)
        if averaged:
            progress.averaged += 1
            average = running_mean(average, self.member.saved_state(inner), progress.averaged)
        if kept and self.accelerator.is_main_process:
            self.files.save_weights(self.member.saved_state(inner))
            if table is not None:
                self.files.save_dev_predictions(table)
        record["best"], record["kept"] = improved, kept
        if cfg.keep == "average":
            record["averaged"] = averaged
        return average

    def keep_average(self, model, average: dict[str, torch.Tensor], count: int) -> float | None:
        """Load the averaged state into ``model`` (strictly: exactly the keys the member saves), score it on dev,
        and make it the run's weights (and dev predictions). Returns the dev selection metric, or None without a
        dev split."""
        inner = self.accelerator.unwrap_model(model)
        load_saved_state(self.member, inner, average, f"the average of the last {count} epoch(s)")
        score = table = None
        if self.dev_set is not None:
            table, record = self.evaluate(model)
            score = record[self.metric]
        if self.accelerator.is_main_process:
            self.files.save_weights(self.member.saved_state(inner))
            if table is not None:
                self.files.save_dev_predictions(table)
            self.log(f"kept: the average of the last {count} epoch(s)"
                     + (f"; dev {self.metric} {score:.4f}" if score is not None else ""))
        return score

    def reference_mean(self, model, train_utterances: Sequence[Utterance]) -> dict[str, Any]:
        """For members with a pooled vector (those whose ``pooled_mean`` works): load the selected weights, embed the
        training utterances without augmentation, save their mean pooled vector in the run folder, and, with
        ``predict.speaker_norm``, redo the run folder's dev predictions with it. Returns the summary's entries
        (none for other members)."""
        try:
            self.member.pooled_mean(model)
        except ValueError:
            return {}
        start = time.perf_counter()
        self.accelerator.wait_for_everyone()  # the selected weights are on disk
        weights = self.files.run_dir / runs.WEIGHTS_FILE
        load_model_weights(self.accelerator.unwrap_model(model), weights, partial=self.member.saves_partial_state)
        clean = self.member.dataset(train_utterances, self.label_set, train=False, on_error="skip")
        _, pooled = predict_pooled(
            self.member, model, clean, self.batch_size, accelerator=self.accelerator,
            progress=self.recipe.train.progress, desc="reference mean",
        )
        mean = torch.from_numpy(pooled).double().mean(dim=0).float()
        seconds = round(time.perf_counter() - start, 1)
        if self.accelerator.is_main_process:
            self.files.save_reference_mean(mean, len(clean))
            self.log(f"reference mean: pooled vectors of {len(clean)} clean training utterances in {seconds:.1f} s "
                     f"({runs.REFERENCE_MEAN_FILE})")
        entries: dict[str, Any] = {"reference_mean_utterances": len(clean), "reference_mean_seconds": seconds}
        if self.recipe.predict.speaker_norm and self.dev_set is not None:
            table, record = self.evaluate(model, reference=mean)
            entries[f"reference_mean_dev_{self.metric}"] = record[self.metric]
            if self.accelerator.is_main_process:
                self.files.save_dev_predictions(table)
                self.log(f"dev predictions with the reference mean: {self.metric} {record[self.metric]:.4f}")
        self.accelerator.wait_for_everyone()
        return entries
