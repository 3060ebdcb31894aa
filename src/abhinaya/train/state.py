"""What a training run keeps on disk: its progress, resumable checkpoints and the files of its run folder.

Every file is written atomically (a temporary file in the same folder, then a rename), so an interrupted run never
leaves a half-written one behind. A checkpoint (``RUN_DIR/checkpoint/``) holds the saved state of the model, the
running weight average (``train.keep: average``), the optimizer and scheduler, the torch RNG state and the
``Progress`` counters; resuming from it continues the run exactly where it stopped.
"""

from __future__ import annotations

import csv
import io
import json
import os
import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from abhinaya import runs
from abhinaya.evaluation.plots import plot_training_curves
from abhinaya.labels import LabelSet
from abhinaya.manifest import Utterance, write_manifest
from abhinaya.members.base import unwrap
from abhinaya.nn.head import RenamedStateKeys
from abhinaya.predictions import PredictionTable, write_predictions
from abhinaya.recipes import Recipe
from abhinaya.weights.checkpoint import (
    check_state_fits,
    load_model_weights,
    load_nested_state,
    load_tensors,
    save_nested_state,
    save_tensors,
)


class TrainingError(ValueError):
    """A training run that cannot start or continue."""


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


@dataclass
class Progress:
    """Where a run stands; saved with every checkpoint (as JSON, in this field order)."""

    epoch: int = 0  # epochs finished
    batches_done: int = 0  # batches of the current epoch already trained on
    global_step: int = 0  # optimizer steps
    best_score: float = -1.0  # best dev selection metric so far
    best_epoch: int = 0
    kept_epoch: int = 0  # the epoch whose weights the run folder holds
    bad_epochs: int = 0  # epochs since the best one (early stopping)
    averaged: int = 0  # epochs folded into the weight average
    loss_sum: float = 0.0  # training loss of the current epoch so far
    loss_count: int = 0

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Progress:
        return cls(**json.loads(text))


def write_text_atomic(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path


def load_saved_state(member, model: torch.nn.Module, tensors: dict[str, torch.Tensor], source: str) -> None:
    """Load ``tensors`` into ``model`` strictly: their keys must be exactly the keys ``member.saved_state`` gives
    (all weights, or a member's trained part) and every shape must match; anything else is an error naming the
    keys."""
    inner = unwrap(model)
    if isinstance(inner, RenamedStateKeys):  # head keys of checkpoints written before the shared head
        tensors = inner.upgrade_state_dict(tensors)
    expected = member.saved_state(model)
    check_state_fits(tensors, expected, set(expected), source, error=TrainingError)
    # The keys were checked against the saved state above; a member that saves part of the model leaves the rest,
    # rebuilt from pretrained weights, as it is.
    result = model.load_state_dict(tensors, strict=not member.saves_partial_state)
    if result.unexpected_keys:
        raise TrainingError(f"{source}: unexpected keys {result.unexpected_keys[:10]}")


class RunFiles:
    """The files a training run writes into its run folder (layout in ``abhinaya.runs``)."""

    def __init__(self, run_dir: str | Path):
        self.run_dir = Path(run_dir)
        self.checkpoint_dir = self.run_dir / runs.CHECKPOINT_DIR
        self.state_path = self.checkpoint_dir / "state.safetensors"
        self.model_path = self.checkpoint_dir / "model.safetensors"
        self.average_path = self.checkpoint_dir / "average.safetensors"

    # ---- the run's description, written once at its start
    def has_config(self) -> bool:
        return (self.run_dir / runs.CONFIG_FILE).is_file()

    def has_checkpoint(self) -> bool:
        return self.state_path.is_file()

    def write_start(self, recipe: Recipe, label_set: LabelSet, utterances: list[Utterance]) -> None:
        runs.save_recipe(self.run_dir, recipe)
        write_text_atomic(self.run_dir / runs.LABELS_FILE, json.dumps(label_set.to_dict(), indent=2) + "\n")
        # every utterance with the split it had in this run (speaker hold-outs applied)
        write_manifest(self.run_dir / "data" / "splits.jsonl", utterances)

    # ---- what the run keeps
    def save_weights(self, tensors: dict[str, torch.Tensor]) -> None:
        save_tensors(self.run_dir / runs.WEIGHTS_FILE, tensors)

    def save_dev_predictions(self, table: PredictionTable) -> None:
        write_predictions(self.run_dir / runs.DEV_PREDICTIONS, table)

    def save_reference_mean(self, mean: torch.Tensor, utterances: int) -> None:
        save_tensors(
            self.run_dir / runs.REFERENCE_MEAN_FILE, {runs.REFERENCE_MEAN_KEY: mean},
            metadata={"utterances": str(utterances)},
        )

    def write_summary(self, summary: dict) -> None:
        write_text_atomic(self.run_dir / runs.SUMMARY_FILE, json.dumps(summary, indent=2) + "\n")

    def read_history(self) -> list[dict]:
        path = self.run_dir / runs.METRICS_JSONL
        if not path.is_file():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def write_metrics(self, history: list[dict], metric: str, log: Callable[[str], None]) -> None:
        """``metrics.jsonl`` (every figure), ``metrics.csv`` (without the per-class ones) and the training curves."""
        write_text_atomic(self.run_dir / runs.METRICS_JSONL, "".join(json.dumps(r) + "\n" for r in history))
        columns = [k for k in history[0] if k != "per_class_f1"]
        for record in history:
            columns += [k for k in record if k not in columns and k != "per_class_f1"]
        table = io.StringIO(newline="")
        writer = csv.DictWriter(table, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(history)
        write_text_atomic(self.run_dir / runs.METRICS_CSV, table.getvalue())
        try:
            plot_training_curves(history, self.run_dir / runs.CURVES_PLOT, metric=metric)
        except Exception as error:  # a figure is never worth a training run
            log(f"warning: {runs.CURVES_PLOT} not written: {error}")

    # ---- checkpoints
    def save_checkpoint(
        self, weights: dict[str, torch.Tensor], optimizer, scheduler, progress: Progress,
        average: dict[str, torch.Tensor] | None,
    ) -> None:
        """The state to resume from; the progress file goes last, so a checkpoint is complete once it exists."""
        save_tensors(self.model_path, weights)
        if average is not None:
            save_tensors(self.average_path, average)
        save_nested_state(
            self.state_path,
            {
                "optimizer": getattr(optimizer, "optimizer", optimizer).state_dict(),
                "scheduler": scheduler.state_dict(),
                "torch_rng": torch.get_rng_state(),
                "progress": progress.to_json(),
            },
        )

    def restore_checkpoint(
        self, model: torch.nn.Module, optimizer, scheduler, partial: bool
    ) -> tuple[Progress, dict[str, torch.Tensor] | None]:
        """Load the checkpoint into ``model`` (strictly), the optimizer and the scheduler, and restore the torch RNG;
        returns the progress and the weight average (None when nothing was averaged yet)."""
        saved = load_nested_state(self.state_path)
        load_model_weights(model, self.model_path, partial=partial)
        getattr(optimizer, "optimizer", optimizer).load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        torch.set_rng_state(saved["torch_rng"])
        progress = Progress.from_json(saved["progress"])
        average = load_tensors(self.average_path) if progress.averaged else None
        return progress, average
