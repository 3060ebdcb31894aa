"""The shared training loop (Hugging Face Accelerate).

One short loop for every trainable member: length-bucketed batches, gradient accumulation, mixed precision where
the device has it, encoder / head learning rates, warm-up then linear or cosine decay, any loss of ``losses`` by name
with class weights from the training split. Model selection and early stopping are in ``selection``; checkpoints,
``resume`` and the run folder's files in ``state``. It runs unchanged on one CPU, one GPU, or several processes
(``accelerate launch --num_processes N``); dev predictions are gathered so that metrics see exactly one row per
utterance.

After the last epoch, members with a pooled vector get their reference mean for per-speaker normalisation: the
mean pooled vector of the clean (un-augmented) training utterances under the selected weights, saved in the run
folder. Per-epoch dev scoring, which selects the epoch, moves speakers to the head's running mean instead, so the
reference changes neither training nor selection; with ``predict.speaker_norm`` the final dev predictions written
to the run folder use the reference, as ``abhinaya predict`` does.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from abhinaya import runs
from abhinaya.data.utterances import (
    dimension_ratings,
    experiment_label_set,
    load_experiment_utterances,
)
from abhinaya.labels import LabelSet
from abhinaya.manifest import Utterance
from abhinaya.members import Member, Recipe, get_member
from abhinaya.nn.losses import build_loss, concordance_loss
from abhinaya.recipes import TrainConfig, read_yaml, to_dict
from abhinaya.train import selection
from abhinaya.train.state import Progress, RunFiles, TrainingError, seed_everything

__all__ = ["Trainer", "TrainingError", "lr_multiplier", "train"]


def resolve_mixed_precision(setting: str) -> str:
    if setting != "auto":
        return setting
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "no"


def lr_multiplier(step: int, total_steps: int, warmup_ratio: float, schedule: str) -> float:
    """Learning-rate factor at optimizer step ``step`` (0-based)."""
    warmup = int(round(total_steps * warmup_ratio))
    if step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress = (step - warmup) / max(1, total_steps - warmup)
    progress = min(max(progress, 0.0), 1.0)
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    return 1.0 - progress


@contextlib.contextmanager
def _without_grad(params: Sequence[torch.nn.Parameter]):
    """Take ``params`` out of autograd for the block; restored after it, so checkpoints (which save the trainable
    parameters) always see them."""
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


@dataclass
class Experiment:
    """The utterances of a run: all of them (with their splits), the label set, the training and dev utterances
    (dev class-balanced where ``train.balanced_dev`` asks), and the training count of each class."""

    utterances: list[Utterance]
    label_set: LabelSet
    train: list[Utterance]
    dev: list[Utterance]
    counts: np.ndarray
    # Several corpora (data.corpora): the classes each corpus has in training; None for one corpus.
    corpus_classes: dict[str, list[str]] | None = None


class Trainer:
    """Trains one member from its recipe into a run folder."""

    def __init__(self, recipe: Recipe, run_dir: str | Path, *, resume: bool = False, log: Callable[[str], None] = print):
        self.recipe = recipe
        self.run_dir = Path(run_dir)
        self.files = RunFiles(run_dir)
        self.resume = resume
        self._log = log
        self.train_masks: torch.Tensor | None = None  # (N, C) classes of each training utterance's corpus
        self.train_targets: torch.Tensor | None = None  # (N, C) vote distributions (loss.soft_labels)
        self.train_dimensions: torch.Tensor | None = None  # (N, K) dimension ratings (model.dimensions)

    def log(self, message: str) -> None:
        if self.accelerator.is_main_process:
            self._log(message)

    def fit(self) -> dict[str, Any]:
        from accelerate import Accelerator
        from accelerate.utils import DistributedDataParallelKwargs

        self._check_run_dir()
        cfg: TrainConfig = self.recipe.train
        if cfg.threads > 0:
            torch.set_num_threads(cfg.threads)
        self.accelerator = accelerator = Accelerator(
            # cpu=True on machines without CUDA makes a multi-process launch use gloo (MULTI_CPU)
            cpu=not torch.cuda.is_available(),
            gradient_accumulation_steps=cfg.grad_accum,
            mixed_precision=resolve_mixed_precision(cfg.mixed_precision),
            kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=False)],
        )
        seed_everything(cfg.seed)
        self.started = time.perf_counter()
        data = self._load_data()
        member = get_member(self.recipe.member)(self.recipe)
        if not member.trainable:
            return self._prepare_untrained(member, data)
        member, model, train_set, dev_set, sampler, loader, loss_fn, optimizer, scheduler = self._setup(member, data)
        cfg = self.recipe.train
        probe_params = self._probe_params(member, optimizer)
        eval_batch = cfg.eval_batch_size or 2 * cfg.batch_size
        dev = selection.DevSelection(
            member, self.recipe, accelerator, self.files, data.label_set, dev_set, eval_batch, self.log,
            corpus_classes=data.corpus_classes,
        )

        progress, average, history = Progress(), None, []  # average: train.keep average, the running mean so far
        if self.resume and self.files.has_checkpoint():
            progress, average = self.files.restore_checkpoint(
                accelerator.unwrap_model(model), optimizer, scheduler, partial=member.saves_partial_state
            )
            history = self.files.read_history()
            self.log(f"resuming at epoch {progress.epoch + 1}, batch {progress.batches_done} "
                     f"(best so far: epoch {progress.best_epoch})")
        elif accelerator.is_main_process:
            self.files.write_start(self.recipe, data.label_set, data.utterances)
        accelerator.wait_for_everyone()

        def save_checkpoint():
            if accelerator.is_main_process:
                weights = member.saved_state(accelerator.unwrap_model(model))
                self.files.save_checkpoint(weights, optimizer, scheduler, progress, average)
            accelerator.wait_for_everyone()

        while progress.epoch < cfg.epochs:
            epoch = progress.epoch
            sampler.set_epoch(epoch)
            train_set.set_epoch(epoch)
            model.train()
            epoch_loader = accelerator.skip_first_batches(loader, progress.batches_done) if progress.batches_done else loader
            # Accelerate's loaders call set_epoch(their own iteration count) when iterated, which restarts at 0
            # after a resume: pin it to the true epoch so data order and augmentation match an uninterrupted run.
            epoch_loader.set_epoch(epoch)
            epoch_start = time.perf_counter()
            # disable=None: a bar on a terminal only, never in a captured log (the same rule for every bar)
            bar = tqdm(
                total=len(loader), initial=progress.batches_done, desc=f"epoch {epoch + 1}/{cfg.epochs}",
                disable=None if cfg.progress and accelerator.is_main_process else True, leave=False, unit="batch",
            )
            held = probe_params if epoch < cfg.probe_epochs else []
            # One process: the held parameters leave autograd for the step (no graph, no backward through them).
            # Several: DDP expects a gradient for each, so they get one and it is dropped before clipping and the
            # step. The optimizer sees the same (absent) gradients either way.
            for batch in epoch_loader:
                with accelerator.accumulate(model), _without_grad(held if accelerator.num_processes == 1 else []):
                    with accelerator.autocast():
                        if self.train_dimensions is None:
                            logits = member.logits(model, batch)
                        else:
                            logits, dimensions = member.logits_and_dimensions(model, batch)
                    loss = loss_fn(self._masked(logits.float(), batch), self._targets(batch))
                    if self.train_dimensions is not None:
                        rated = self.train_dimensions[batch["index"].cpu()]
                        loss = loss + self.recipe.loss.dimensions_weight * concordance_loss(dimensions.float(), rated)
                    accelerator.backward(loss)
                    for p in held:
                        p.grad = None
                    if accelerator.sync_gradients and cfg.max_grad_norm > 0:
                        accelerator.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
                    optimizer.step()
                    optimizer.zero_grad()
                    if accelerator.sync_gradients:
                        scheduler.step()
                        progress.global_step += 1
                progress.loss_sum += float(loss.detach())
                progress.loss_count += 1
                progress.batches_done += 1
                bar.update(1)
                bar.set_postfix(loss=f"{progress.loss_sum / progress.loss_count:.4f}")
                if cfg.checkpoint_every and accelerator.sync_gradients and progress.global_step % cfg.checkpoint_every == 0:
                    save_checkpoint()
            bar.close()
            mean_loss = accelerator.reduce(
                torch.tensor([progress.loss_sum, float(progress.loss_count)], device=accelerator.device), "sum"
            )
            record = {
                "epoch": epoch + 1,
                "train_loss": float(mean_loss[0] / max(mean_loss[1], 1)),
                "lr": scheduler.get_last_lr()[0],
                "train_seconds": round(time.perf_counter() - epoch_start, 2),
            }
            table = None
            if dev_set is not None:
                table, dev_record = dev.evaluate(model)
                record.update(dev_record)
            record["seconds"] = round(time.perf_counter() - epoch_start, 2)
            average = dev.select(model, table, progress, average, record)
            history.append(record)
            progress.epoch, progress.batches_done, progress.loss_sum, progress.loss_count = epoch + 1, 0, 0.0, 0
            if accelerator.is_main_process:
                self.files.write_metrics(history, cfg.selection_metric, self.log)
                dev_text = f", dev {cfg.selection_metric} {record[cfg.selection_metric]:.4f}" if dev_set is not None else ""
                if dev_set is not None and data.corpus_classes:
                    dev_text += " (" + ", ".join(f"{name} {record[f'{name}_macro_f1']:.4f}"
                                                 for name in data.corpus_classes if f"{name}_macro_f1" in record) + ")"
                left = cfg.epochs - (epoch + 1)
                # the mean epoch so far, times the epochs left (resumed epochs included)
                eta = f"; about {left * sum(r['seconds'] for r in history) / len(history) / 60:.1f} min left" if left else ""
                self._log(f"epoch {epoch + 1}/{cfg.epochs}: train loss {record['train_loss']:.4f}{dev_text}"
                          f"{' (best)' if record['best'] else ''}, {record['seconds']:.0f} s{eta}")
            save_checkpoint()
            if selection.should_stop(progress, cfg.patience):
                self.log(f"early stop: no better dev {cfg.selection_metric} for {cfg.patience} epoch(s)")
                break
        return self._finish(dev, model, data, train_set, progress, average)

    # ------------------------------------------------------------------ setup
    def _check_run_dir(self) -> None:
        if self.files.has_config() and not self.resume:
            raise TrainingError(
                f"{self.run_dir} already holds a run; continue it with --resume or choose another folder"
            )
        if self.resume and self.files.has_config() and not self.files.has_checkpoint():
            # Interrupted before its first checkpoint: nothing was trained, so the run starts afresh from the recipe
            # given. (The saved config describes the model already built; taking it would skip the pretrained
            # weights, which only a fresh start loads.)
            self._log(f"note: {self.run_dir} holds no checkpoint yet; starting the run afresh")
        elif self.resume and self.files.has_config():
            config = self.run_dir / runs.CONFIG_FILE
            saved, current = read_yaml(config), to_dict(self.recipe)
            differs = sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k) and k != "model")
            if differs:
                self._log(f"note: resuming with the run's saved config; the given recipe differs in: {', '.join(differs)}")
            self.recipe = runs.recipe_from_dict(saved, str(config))

    def _load_data(self) -> Experiment:
        recipe, cfg, accelerator = self.recipe, self.recipe.train, self.accelerator
        if accelerator.is_main_process:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            utterances = load_experiment_utterances(recipe.data, self.run_dir, log=self._log)
        accelerator.wait_for_everyone()
        if not accelerator.is_main_process:
            utterances = load_experiment_utterances(recipe.data, self.run_dir, log=lambda _: None)
        label_set = experiment_label_set(recipe.data, utterances)
        soft = recipe.loss.soft_labels

        def trainable(u: Utterance) -> bool:  # with soft labels, an utterance with votes but no consensus counts
            return u.label in label_set or (soft and any(k in label_set for k in (u.votes or {})))

        train_utts = [u for u in utterances if u.split == recipe.data.train_split and trainable(u)]
        dev_utts = [u for u in utterances if u.split == recipe.data.dev_split and u.label in label_set]
        if not train_utts:
            raise TrainingError(f"no labelled utterances in split {recipe.data.train_split!r}")
        if cfg.balanced_dev and dev_utts:
            dev_utts = selection.balanced_subset(dev_utts, cfg.balanced_dev_per_class, cfg.seed)
        if soft:
            counts = soft_targets(train_utts, label_set).sum(axis=0)
            without = sum(1 for u in train_utts if u.label not in label_set)
            with_votes = sum(1 for u in train_utts if u.votes)
            self.log(f"soft labels: {with_votes} training utterances with annotator votes ({without} of them "
                     "without a consensus class); the others train on their one label")
        else:
            counts = np.bincount(label_set.encode_many([u.label for u in train_utts]), minlength=len(label_set))
        if (counts == 0).any():
            missing = [label_set.decode(i) for i in np.flatnonzero(counts == 0)]
            raise TrainingError(f"class(es) {missing} have no training utterance; drop them with data.drop_labels or add data")
        self.log(
            f"{recipe.member}: {len(train_utts)} training and {len(dev_utts)} dev utterances, "
            f"{len(label_set)} classes ({', '.join(f'{l} {c:.0f}' for l, c in zip(label_set, counts))})"
        )
        classes = None
        if recipe.data.corpora:
            from abhinaya.data.multi_corpus import corpus_classes

            classes = corpus_classes(utterances, label_set, recipe.data.train_split)
            for name, names in classes.items():
                lacking = [c for c in label_set if c not in names]
                self.log(f"{name}: {len(names)} classes" + (f"; without {', '.join(lacking)} (masked out of the loss of "
                                                             "its utterances)" if lacking else ""))
        return Experiment(utterances, label_set, train_utts, dev_utts, counts, classes)

    def _setup(self, member: Member, data: Experiment):
        """The model (resolved recipe), datasets, batches, loss, optimizer and learning-rate schedule."""
        from torch.utils.data import DataLoader

        from abhinaya.data.audio import LengthBucketSampler

        accelerator, cfg = self.accelerator, self.recipe.train
        resuming = self.resume and self.files.has_checkpoint()
        # A member that saves only its trained part starts from the pretrained weights even when resuming.
        model, self.recipe = member.build(data.label_set, pretrained=member.saves_partial_state or not resuming)
        member = type(member)(self.recipe)
        if self.recipe.predict.speaker_norm:
            try:
                member.pooled_mean(model)
            except ValueError as err:
                raise TrainingError(str(err)) from None
        train_set = member.dataset(data.train, data.label_set, train=True, on_error="skip")
        dev_set = member.dataset(data.dev, data.label_set, train=False, on_error="skip") if data.dev else None
        for problem in list(train_set.errors) + (list(dev_set.errors) if dev_set is not None else []):
            self.log(f"skipped: {problem}")
        audio = getattr(self.recipe, "audio", None)
        if audio is not None and audio.augment:
            from abhinaya.data.corruption import describe_steps

            self.log(f"augmentation (training only, seed {cfg.seed}): {describe_steps(audio.augment)}")
        groups = weights = None
        self.train_masks = None
        if data.corpus_classes is not None:
            from abhinaya.data.multi_corpus import class_masks, group_ids

            if self.recipe.data.balance == "corpus":
                groups, names = group_ids(train_set.utterances)
                weight_of = {c.name: c.weight for c in self.recipe.data.corpora}
                weights = [weight_of.get(name, 1.0) for name in names]
            masks = class_masks(train_set.utterances, data.label_set, data.corpus_classes)
            if not masks.all():
                self.train_masks = torch.from_numpy(masks)
        sampler = LengthBucketSampler(
            train_set.lengths, cfg.batch_size, shuffle=True, seed=cfg.seed, bucket_size_multiplier=cfg.bucket_multiplier,
            groups=groups, group_weights=weights,
        )
        loader = DataLoader(train_set, batch_sampler=sampler, collate_fn=member.collate, num_workers=cfg.num_workers)
        self.train_dimensions = self._dimension_targets(member, train_set.utterances)
        soft = self.recipe.loss.soft_labels
        targets = soft_targets(train_set.utterances, data.label_set) if soft else None
        self.train_targets = torch.from_numpy(targets).float() if soft else None
        counts = data.counts
        if groups is not None:  # the class counts an epoch draws, which the class weights of the loss answer
            counts = sampled_counts(groups, weights, targets if soft else train_set.labels, len(data.label_set))
            self.log("class counts per epoch with balanced corpora: "
                     + ", ".join(f"{label} {c:.0f}" for label, c in zip(data.label_set, counts)))
        loss_fn = build_loss(self.recipe.loss, counts)
        optimizer = torch.optim.AdamW(member.param_groups(model))
        model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
        loss_fn = loss_fn.to(accelerator.device)
        steps_per_epoch = math.ceil(len(loader) / cfg.grad_accum)
        total_steps = steps_per_epoch * cfg.epochs
        # Linear probing first (train.probe_epochs): the pretrained groups wait at lr 0, then get their own warm-up
        # and decay over the remaining steps.
        probe_steps = steps_per_epoch * cfg.probe_epochs

        def schedule_for(group: dict) -> Callable[[int], float]:
            if not (_is_pretrained(group) and probe_steps):
                return lambda step: lr_multiplier(step, total_steps, cfg.warmup_ratio, cfg.schedule)
            return lambda step: 0.0 if step < probe_steps else lr_multiplier(
                step - probe_steps, total_steps - probe_steps, cfg.warmup_ratio, cfg.schedule
            )

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, [schedule_for(g) for g in optimizer.param_groups])
        return member, model, train_set, dev_set, sampler, loader, loss_fn, optimizer, scheduler

    def _dimension_targets(self, member: Member, utterances) -> torch.Tensor | None:
        """``(N, K)`` ratings of the member's dimensions (``attributes``; NaN where missing), when it has a dimension
        head and ``loss.dimensions_weight`` is above 0; else None."""
        names = member.dimension_names()
        weight = self.recipe.loss.dimensions_weight
        if not names or weight <= 0:
            if names:
                self.log(f"note: the model has a dimension head ({', '.join(names)}) but loss.dimensions_weight is 0; "
                         "it is not trained")
            return None
        values = dimension_ratings(utterances, names)
        rated = int((~np.isnan(values)).any(axis=1).sum())
        if not rated:
            raise TrainingError(f"model.dimensions asks for {', '.join(names)}, but no training utterance has them in "
                                "its attributes")
        self.log(f"dimensions: {', '.join(names)} from the attributes of {rated} of {len(utterances)} training "
                 f"utterances, concordance loss weight {weight:g}")
        return torch.from_numpy(values).float()

    def _targets(self, batch: dict) -> torch.Tensor:
        """The batch's class indices, or with ``loss.soft_labels`` its vote distributions ``(B, C)``."""
        if self.train_targets is None:
            return batch["labels"]
        return self.train_targets[batch["index"].cpu()].to(batch["labels"].device)

    def _masked(self, logits: torch.Tensor, batch: dict) -> torch.Tensor:
        """``logits`` with the classes an utterance's corpus lacks pushed to -1e4 (several corpora), so that the loss
        never teaches a corpus to deny a class it has no example of."""
        if self.train_masks is None:
            return logits
        keep = self.train_masks[batch["index"].cpu()].to(logits.device)
        return logits.masked_fill(~keep, -1e4)

    def _probe_params(self, member: Member, optimizer) -> list[torch.nn.Parameter]:
        """The pretrained parameters that ``train.probe_epochs`` holds while the head trains alone."""
        pretrained = [_is_pretrained(group) for group in optimizer.param_groups]
        if self.recipe.train.probe_epochs and not (any(pretrained) and not all(pretrained)):
            raise TrainingError(
                f"train.probe_epochs needs both pretrained and new (head) parameters to train; member {member.name} "
                "has only one kind"
            )
        return [p for group, pre in zip(optimizer.param_groups, pretrained) if pre for p in group["params"]]

    # ------------------------------------------------------------------ the end of a run
    def _finish(self, dev: selection.DevSelection, model, data: Experiment, train_set, progress: Progress, average) -> dict:
        """Make the weight average the run's weights (``keep: average``), compute the reference mean, write the
        summary."""
        accelerator, cfg, metric, dev_set = self.accelerator, self.recipe.train, dev.metric, dev.dev_set
        average_score = None
        if progress.averaged:
            average_score = dev.keep_average(model, average, progress.averaged)
        reference = dev.reference_mean(model, data.train)
        summary = {
            "member": self.recipe.member,
            "best_epoch": progress.best_epoch,
            "kept_epoch": progress.kept_epoch,
            "keep": cfg.keep,
            f"best_dev_{metric}": progress.best_score if dev_set is not None else None,
            **(
                {
                    "averaged_epochs": list(range(progress.epoch - progress.averaged + 1, progress.epoch + 1)),
                    f"average_dev_{metric}": average_score,
                }
                if cfg.keep == "average"
                else {}
            ),
            **reference,
            "epochs_run": progress.epoch,
            "train_utterances": len(train_set),
            "dev_utterances": len(dev_set) if dev_set is not None else 0,
            "processes": accelerator.num_processes,
            "seconds_this_session": round(time.perf_counter() - self.started, 1),
        }
        if accelerator.is_main_process:
            self.files.write_summary(summary)
            self._log(f"done: best epoch {progress.best_epoch}, kept epoch {progress.kept_epoch} ({cfg.keep}); "
                      f"run folder {self.run_dir}")
        accelerator.wait_for_everyone()
        accelerator.end_training()  # tear the process group down together; one rank leaving first can abort another
        return summary

    # ------------------------------------------------------------------ members without training
    def _prepare_untrained(self, member: Member, data: Experiment) -> dict:
        """A member that is not trained (T1, zero-shot): the run folder gets its config, label set, whatever it fits on
        the training split without gradients (``member.calibrate``, e.g. a prior correction) in
        ``model.safetensors``, and its dev predictions and figures."""
        accelerator, cfg = self.accelerator, self.recipe.train
        model, self.recipe = member.build(data.label_set, pretrained=True)
        model.to(accelerator.device).eval()
        calibrate = getattr(member, "calibrate", None)
        calibration_utterances = 0
        if calibrate is not None:
            train_set = member.dataset(data.train, data.label_set, train=False, on_error="skip")
            for problem in train_set.errors:
                self.log(f"skipped: {problem}")
            calibration_utterances = calibrate(model, train_set) or len(train_set)
        dev_set = member.dataset(data.dev, data.label_set, train=False, on_error="skip") if data.dev else None
        for problem in dev_set.errors if dev_set is not None else []:
            self.log(f"skipped: {problem}")
        record: dict[str, Any] = {"epoch": 0}
        table = None
        if dev_set is not None and len(dev_set):
            eval_start = time.perf_counter()
            dev = selection.DevSelection(member, self.recipe, accelerator, self.files, data.label_set, dev_set,
                                         cfg.eval_batch_size or cfg.batch_size, self.log)
            table, dev_record = dev.evaluate(model)
            record.update(dev_record)
            record["seconds"] = round(time.perf_counter() - eval_start, 2)
        summary = {
            "member": self.recipe.member,
            "trained": False,
            "calibration_utterances": calibration_utterances,
            f"dev_{cfg.selection_metric}": record.get(cfg.selection_metric),
            "dev_utterances": len(dev_set) if dev_set is not None else 0,
            "processes": accelerator.num_processes,
            "seconds_this_session": round(time.perf_counter() - self.started, 1),
        }
        if accelerator.is_main_process:
            self.files.write_start(self.recipe, data.label_set, data.utterances)
            self.files.save_weights(member.saved_state(model))
            if table is not None:
                self.files.save_dev_predictions(table)
                self.files.write_metrics([record], cfg.selection_metric, self.log)
                self._log(f"dev {cfg.selection_metric} {record[cfg.selection_metric]:.4f} ({len(dev_set)} utterances)")
            self.files.write_summary(summary)
            self._log(f"done: {self.recipe.member} is not trained; run folder {self.run_dir}")
        accelerator.wait_for_everyone()
        accelerator.end_training()
        return summary


def sampled_counts(groups: np.ndarray, weights, labels, num_classes: int) -> np.ndarray:
    """The expected count of each class in an epoch whose draws give group ``g`` the share ``weights[g]`` (balanced
    corpora): within a group, classes keep their proportions. ``labels``: class indices ``(N,)`` (-1: none), or
    distributions ``(N, C)`` (soft labels)."""
    groups, labels = np.asarray(groups), np.asarray(labels)
    if labels.ndim == 1:
        labels = np.eye(num_classes)[np.where(labels >= 0, labels, 0)] * (labels >= 0)[:, None]
    weights = np.asarray(weights, dtype=np.float64)
    present = np.array([(groups == g).any() for g in range(len(weights))])
    shares = np.where(present, weights, 0.0) / np.where(present, weights, 0.0).sum()
    counts = np.zeros(num_classes)
    for g, share in enumerate(shares):
        mine = labels[groups == g]
        if mine.sum() > 0:
            counts += share * len(labels) * mine.sum(axis=0) / mine.sum()
    return counts


def soft_targets(utterances, label_set: LabelSet) -> np.ndarray:
    """``(N, C)``: each utterance's annotator votes over ``label_set`` (votes for other classes left out),
    normalised; one-hot of its label where it has no votes in the set."""
    out = np.zeros((len(utterances), len(label_set)), dtype=np.float64)
    for i, utt in enumerate(utterances):
        for name, count in (utt.votes or {}).items():
            if name in label_set:
                out[i, label_set.encode(name)] += count
        if out[i].sum() <= 0 and utt.label in label_set:
            out[i, label_set.encode(utt.label)] = 1.0
    totals = out.sum(axis=1, keepdims=True)
    return np.divide(out, totals, out=np.zeros_like(out), where=totals > 0)


def _is_pretrained(group: dict) -> bool:
    """Whether an optimizer group holds pretrained parameters (the new head's groups are named ``head...``)."""
    return not str(group.get("name", "head")).startswith("head")


def train(recipe: Recipe, run_dir: str | Path, *, resume: bool = False, log: Callable[[str], None] = print) -> dict:
    """Train ``recipe``'s member into ``run_dir`` (see ``runs`` for its layout)."""
    return Trainer(recipe, run_dir, resume=resume, log=log).fit()
