"""Run folders and recipes.

A run folder is self-contained: ``predict`` needs nothing else.

    RUN_DIR/
      config.yaml            the resolved recipe (every default written out)
      labels.json            the label set (class order of the logits)
      model.safetensors      the selected weights (best dev epoch)
      metrics.csv            one row per epoch (loss, dev metrics, seconds)
      metrics.jsonl          the same, with per-class figures
      dev_predictions.csv    predictions of the selected model on dev
      reference_mean.safetensors  mean pooled vector of the clean training utterances (members with one), the
                             reference that per-speaker normalisation moves each speaker to
      summary.json           what was selected, when, and how long it took
      checkpoint/            the last state, for --resume (weights, optimizer, scheduler, RNG)
      data/manifest.jsonl    the manifest, when prepared from data.root
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import torch

from abhinaya.labels import LabelSet
from abhinaya.members import Member, Recipe, get_member
from abhinaya.recipes import (
    ConfigError,
    apply_overrides,
    from_dict,
    read_yaml,
    write_yaml,
)
from abhinaya.weights.checkpoint import load_model_weights, load_tensors

CONFIG_FILE = "config.yaml"
LABELS_FILE = "labels.json"
WEIGHTS_FILE = "model.safetensors"
METRICS_CSV = "metrics.csv"
METRICS_JSONL = "metrics.jsonl"
CURVES_PLOT = "training_curves.png"
DEV_PREDICTIONS = "dev_predictions.csv"
SUMMARY_FILE = "summary.json"
CHECKPOINT_DIR = "checkpoint"
REFERENCE_MEAN_FILE = "reference_mean.safetensors"
REFERENCE_MEAN_KEY = "mean"


class RunError(ValueError):
    """A run folder that is missing or incomplete."""


def recipe_from_dict(data: dict, source: str = "recipe") -> Recipe:
    member = data.get("member")
    if not member:
        raise ConfigError(f"{source}: the recipe must name its member (member: s1, ...)")
    try:
        member_class = get_member(str(member))
    except ValueError as err:
        raise ConfigError(f"{source}: {err}") from None
    return from_dict(member_class.recipe_class, data)


def load_recipe(path: str | Path, overrides: Iterable[str] = ()) -> Recipe:
    """A recipe YAML with ``key.sub=value`` overrides, mapped onto the member's
    recipe dataclass (unknown keys and wrong types are errors)."""
    data = apply_overrides(read_yaml(path), overrides)
    try:
        return recipe_from_dict(data, str(path))
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None


def save_recipe(run_dir: str | Path, recipe: Recipe) -> Path:
    return write_yaml(Path(run_dir) / CONFIG_FILE, recipe)


@dataclass
class LoadedRun:
    """A trained member rebuilt from its run folder. ``reference_mean``: the mean pooled vector ``(D,)`` of the clean
    training utterances (``REFERENCE_MEAN_FILE``), or None where the run has none (members without a pooled vector,
    runs trained before it was saved)."""

    run_dir: Path
    recipe: Recipe
    member: Member
    label_set: LabelSet
    model: torch.nn.Module
    reference_mean: torch.Tensor | None = None


def load_reference_mean(run_dir: str | Path) -> torch.Tensor | None:
    """The run's reference mean ``(D,)`` for per-speaker normalisation, or None when the run folder has none."""
    path = Path(run_dir) / REFERENCE_MEAN_FILE
    if not path.is_file():
        return None
    tensors = load_tensors(path)
    if set(tensors) != {REFERENCE_MEAN_KEY} or tensors[REFERENCE_MEAN_KEY].dim() != 1:
        raise RunError(f"{path}: expected one 1-D tensor {REFERENCE_MEAN_KEY!r}, found {sorted(tensors)}")
    return tensors[REFERENCE_MEAN_KEY]


def is_onnx_file(path: str | Path) -> bool:
    """Whether ``path`` is an ONNX export of a run (``abhinaya export onnx``) rather than a run folder."""
    path = Path(path)
    return path.suffix.lower() == ".onnx" and not path.is_dir()


def load_run_recipe(run_dir: str | Path) -> Recipe:
    """The resolved recipe of a run folder (or of the run an ONNX export came from), read without building the model
    (``RunError`` when the folder is not a run folder)."""
    run_dir = Path(run_dir)
    if is_onnx_file(run_dir):
        from abhinaya.export.onnx_model import load_onnx_recipe

        return load_onnx_recipe(run_dir)
    if not run_dir.is_dir():
        raise RunError(f"{run_dir}: run folder not found")
    for name in (CONFIG_FILE, LABELS_FILE):
        if not (run_dir / name).is_file():
            raise RunError(f"{run_dir}: not a run folder ({name} is missing)")
    return recipe_from_dict(read_yaml(run_dir / CONFIG_FILE), str(run_dir / CONFIG_FILE))


def load_run(run_dir: str | Path, device: str | torch.device = "cpu") -> LoadedRun:
    """Rebuild a trained member from its run folder alone, weights loaded
    strictly (every key accounted for). An ONNX export (``model.onnx`` and its sidecar) loads as a run too, run by
    onnxruntime."""
    run_dir = Path(run_dir)
    if is_onnx_file(run_dir):
        from abhinaya.export.onnx_model import load_onnx_run

        return load_onnx_run(run_dir, device)
    recipe = load_run_recipe(run_dir)
    label_set = LabelSet.load(run_dir / LABELS_FILE)
    member = get_member(recipe.member)(recipe)
    # Members that save only their trained part (or nothing: zero-shot) rebuild the rest from pretrained weights.
    model, _ = member.build(label_set, pretrained=member.saves_partial_state or not member.trainable)
    weights = run_dir / WEIGHTS_FILE
    if not weights.is_file():
        done = "did training finish an epoch?" if member.trainable else "did `abhinaya train` finish?"
        raise RunError(f"{run_dir}: no weights ({WEIGHTS_FILE} is missing; {done})")
    load_model_weights(model, weights, partial=member.saves_partial_state)
    model.to(device).eval()
    return LoadedRun(run_dir, recipe, member, label_set, model, load_reference_mean(run_dir))


def recipe_summary(recipe: Recipe) -> dict[str, Any]:
    return {"member": recipe.member, "loss": recipe.loss.name, "epochs": recipe.train.epochs}
