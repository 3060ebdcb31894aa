"""The shared training loop (Hugging Face Accelerate).

One short loop for every trainable member: length-bucketed batches, gradient
accumulation, mixed precision where the device has it, encoder / head learning
rates, warm-up then linear or cosine decay, any loss of ``losses`` by name with
class weights from the training split, model selection on (optionally
class-balanced) dev macro-F1, early stopping, atomic safetensors checkpoints
and ``resume``. It runs unchanged on one CPU, one GPU, or several processes
(``accelerate launch --num_processes N``); dev predictions are gathered so
that metrics see exactly one row per utterance.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from abhinaya import runs
from abhinaya.data.utterances import experiment_label_set, load_experiment_utterances
from abhinaya.evaluation.metrics import classification_report
from abhinaya.evaluation.plots import plot_training_curves
from abhinaya.labels import LabelSet
from abhinaya.manifest import Utterance, write_manifest
from abhinaya.members import Member, Recipe, get_member
from abhinaya.nn.losses import build_loss
from abhinaya.predict.engine import predict_probabilities
from abhinaya.predictions import table_from_probs, write_predictions
from abhinaya.recipes import TrainConfig, read_yaml, to_dict
from abhinaya.weights.checkpoint import (
    load_model_weights,
    load_nested_state,
    load_tensors,
    save_nested_state,
    save_tensors,
)


class TrainingError(ValueError):
    """A training run that cannot start or continue."""


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


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


class Trainer:
    """Trains one member from its recipe into a run folder."""

    def __init__(self, recipe: Recipe, run_dir: str | Path, *, resume: bool = False, log: Callable[[str], None] = print):
        self.recipe = recipe
        self.run_dir = Path(run_dir)
        self.resume = resume
        self._log = log

    # --------------------------------------------------------------- helpers
    def log(self, message: str) -> None:
        if self.accelerator.is_main_process:
            self._log(message)

    def _check_run_dir(self) -> None:
        config = self.run_dir / runs.CONFIG_FILE
        if config.is_file() and not self.resume:
            raise TrainingError(
                f"{self.run_dir} already holds a run; continue it with --resume or choose another folder"
            )
        if self.resume and config.is_file() and not self._train_state_path().is_file():
            # Interrupted before its first checkpoint: nothing was trained, so the run starts afresh from the recipe
            # given. (The saved config describes the model already built; taking it would skip the pretrained
            # weights, which only a fresh start loads.)
            self._log(f"note: {self.run_dir} holds no checkpoint yet; starting the run afresh")
        elif self.resume and config.is_file():
            saved = read_yaml(config)
            current = to_dict(self.recipe)
            differs = sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k) and k != "model")
            if differs:
                self._log(f"note: resuming with the run's saved config; the given recipe differs in: {', '.join(differs)}")
            self.recipe = runs.recipe_from_dict(saved, str(config))

    def _train_state_path(self) -> Path:
        return self.run_dir / runs.CHECKPOINT_DIR / "state.safetensors"

    # --------------------------------------------------------------- main
    def fit(self) -> dict[str, Any]:
        from accelerate import Accelerator
        from accelerate.utils import DistributedDataParallelKwargs

        self._check_run_dir()
        recipe = self.recipe
        cfg: TrainConfig = recipe.train
        if cfg.threads > 0:
            torch.set_num_threads(cfg.threads)
        self.accelerator = accelerator = Accelerator(
            # cpu=True on machines without CUDA makes a multi-process launch use gloo (MULTI_CPU)
            cpu=not torch.cuda.is_available(),
            gradient_accumulation_steps=cfg.grad_accum,
            mixed_precision=resolve_mixed_precision(cfg.mixed_precision),
            kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=False)],
        )
        _seed_everything(cfg.seed)
        started = time.perf_counter()

        # ---- data
        if accelerator.is_main_process:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            utterances = load_experiment_utterances(recipe.data, self.run_dir, log=self._log)
        accelerator.wait_for_everyone()
        if not accelerator.is_main_process:
            utterances = load_experiment_utterances(recipe.data, self.run_dir, log=lambda _: None)
        label_set = experiment_label_set(recipe.data, utterances)
        train_utts = [u for u in utterances if u.split == recipe.data.train_split and u.label in label_set]
        dev_utts = [u for u in utterances if u.split == recipe.data.dev_split and u.label in label_set]
        if not train_utts:
            raise TrainingError(f"no labelled utterances in split {recipe.data.train_split!r}")
        if cfg.balanced_dev and dev_utts:
            dev_utts = balanced_subset(dev_utts, cfg.balanced_dev_per_class, cfg.seed)
        counts = np.bincount(label_set.encode_many([u.label for u in train_utts]), minlength=len(label_set))
        if (counts == 0).any():
            missing = [label_set.decode(i) for i in np.flatnonzero(counts == 0)]
            raise TrainingError(f"class(es) {missing} have no training utterance; drop them with data.drop_labels or add data")
        self.log(
            f"{recipe.member}: {len(train_utts)} training and {len(dev_utts)} dev utterances, "
            f"{len(label_set)} classes ({', '.join(f'{l} {c}' for l, c in zip(label_set, counts))})"
        )

        # ---- model, data loaders, loss, optimizer
        member = get_member(recipe.member)(recipe)
        if not member.trainable:
            return self._prepare_untrained(member, utterances, label_set, train_utts, dev_utts, started)
        resuming = self.resume and self._train_state_path().is_file()
        # A member that saves only its trained part starts from the pretrained weights even when resuming.
        model, recipe = member.build(label_set, pretrained=member.saves_partial_state or not resuming)
        self.recipe, member = recipe, type(member)(recipe)
        if recipe.predict.speaker_norm:
            try:
                member.pooled_mean(model)
            except ValueError as err:
                raise TrainingError(str(err)) from None
        train_set = member.dataset(train_utts, label_set, train=True, on_error="skip")
        dev_set = member.dataset(dev_utts, label_set, train=False, on_error="skip") if dev_utts else None
        for problem in list(train_set.errors) + (list(dev_set.errors) if dev_set is not None else []):
            self.log(f"skipped: {problem}")
        from torch.utils.data import DataLoader

        from abhinaya.data.audio import LengthBucketSampler

        sampler = LengthBucketSampler(
            train_set.lengths, cfg.batch_size, shuffle=True, seed=cfg.seed, bucket_size_multiplier=cfg.bucket_multiplier
        )
        loader = DataLoader(train_set, batch_sampler=sampler, collate_fn=member.collate, num_workers=cfg.num_workers)
        loss_fn = build_loss(recipe.loss, counts)
        optimizer = torch.optim.AdamW(member.param_groups(model))
        model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
        loss_fn = loss_fn.to(accelerator.device)
        steps_per_epoch = math.ceil(len(loader) / cfg.grad_accum)
        total_steps = steps_per_epoch * cfg.epochs
        # Linear probing first (train.probe_epochs): the pretrained groups wait at lr 0, then get their own warm-up
        # and decay over the remaining steps.
        probe_steps = steps_per_epoch * cfg.probe_epochs
        pretrained = [not str(group.get("name", "head")).startswith("head") for group in optimizer.param_groups]
        if cfg.probe_epochs and not (any(pretrained) and not all(pretrained)):
            raise TrainingError(
                f"train.probe_epochs needs both pretrained and new (head) parameters to train; member {member.name} "
                "has only one kind"
            )
        probe_params = [p for group, pre in zip(optimizer.param_groups, pretrained) if pre for p in group["params"]]

        def schedule_for(is_pretrained: bool) -> Callable[[int], float]:
            if not (is_pretrained and probe_steps):
                return lambda step: lr_multiplier(step, total_steps, cfg.warmup_ratio, cfg.schedule)
            return lambda step: 0.0 if step < probe_steps else lr_multiplier(
                step - probe_steps, total_steps - probe_steps, cfg.warmup_ratio, cfg.schedule
            )

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, [schedule_for(pre) for pre in pretrained])

        # ---- state (fresh or resumed)
        state = {
            "epoch": 0, "batches_done": 0, "global_step": 0, "best_score": -1.0, "best_epoch": 0, "kept_epoch": 0,
            "bad_epochs": 0, "averaged": 0,
            "loss_sum": 0.0, "loss_count": 0,
        }
        average: dict[str, torch.Tensor] | None = None  # train.keep: average, the running mean of the kept state
        history: list[dict] = []
        if resuming:
            saved = load_nested_state(self._train_state_path())
            load_model_weights(
                accelerator.unwrap_model(model),
                self.run_dir / runs.CHECKPOINT_DIR / "model.safetensors",
                partial=member.saves_partial_state,
            )
            getattr(optimizer, "optimizer", optimizer).load_state_dict(saved["optimizer"])
            scheduler.load_state_dict(saved["scheduler"])
            torch.set_rng_state(saved["torch_rng"])
            state.update(json.loads(saved["progress"]))
            if state["averaged"]:
                average = load_tensors(self._average_path())
            metrics_file = self.run_dir / runs.METRICS_JSONL
            if metrics_file.is_file():
                history = [json.loads(line) for line in metrics_file.read_text().splitlines() if line.strip()]
            self.log(f"resuming at epoch {state['epoch'] + 1}, batch {state['batches_done']} (best so far: epoch {state['best_epoch']})")
        elif accelerator.is_main_process:
            runs.save_recipe(self.run_dir, recipe)
            label_set.save(self.run_dir / runs.LABELS_FILE)
            # every utterance with the split it had in this run (speaker hold-outs applied)
            write_manifest(self.run_dir / "data" / "splits.jsonl", utterances)
        accelerator.wait_for_everyone()

        def save_checkpoint():
            if accelerator.is_main_process:
                inner = getattr(optimizer, "optimizer", optimizer)
                save_tensors(
                    self.run_dir / runs.CHECKPOINT_DIR / "model.safetensors", member.saved_state(accelerator.unwrap_model(model))
                )
                if average is not None:
                    save_tensors(self._average_path(), average)
                save_nested_state(
                    self._train_state_path(),
                    {
                        "optimizer": inner.state_dict(),
                        "scheduler": scheduler.state_dict(),
                        "torch_rng": torch.get_rng_state(),
                        "progress": json.dumps(state),
                    },
                )
            accelerator.wait_for_everyone()

        # ---- epochs
        eval_batch = cfg.eval_batch_size or 2 * cfg.batch_size
        stop = False
        while state["epoch"] < cfg.epochs and not stop:
            epoch = state["epoch"]
            sampler.set_epoch(epoch)
            train_set.set_epoch(epoch)
            model.train()
            epoch_loader = accelerator.skip_first_batches(loader, state["batches_done"]) if state["batches_done"] else loader
            # Accelerate's loaders call set_epoch(their own iteration count) when iterated, which restarts at 0
            # after a resume: pin it to the true epoch so data order and augmentation match an uninterrupted run.
            epoch_loader.set_epoch(epoch)
            epoch_start = time.perf_counter()
            bar = tqdm(
                total=len(loader), initial=state["batches_done"], desc=f"epoch {epoch + 1}/{cfg.epochs}",
                disable=not (cfg.progress and accelerator.is_main_process), leave=False, unit="batch",
            )
            held = probe_params if epoch < cfg.probe_epochs else []
            # One process: the held parameters leave autograd for the step (no graph, no backward through them).
            # Several: DDP expects a gradient for each, so they get one and it is dropped before clipping and the
            # step. The optimizer sees the same (absent) gradients either way.
            for batch in epoch_loader:
                with accelerator.accumulate(model), _without_grad(held if accelerator.num_processes == 1 else []):
                    with accelerator.autocast():
                        logits = member.logits(model, batch)
                    loss = loss_fn(logits.float(), batch["labels"])
                    accelerator.backward(loss)
                    for p in held:
                        p.grad = None
                    if accelerator.sync_gradients and cfg.max_grad_norm > 0:
                        accelerator.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
                    optimizer.step()
                    optimizer.zero_grad()
                    if accelerator.sync_gradients:
                        scheduler.step()
                        state["global_step"] += 1
                state["loss_sum"] += float(loss.detach())
                state["loss_count"] += 1
                state["batches_done"] += 1
                bar.update(1)
                bar.set_postfix(loss=f"{state['loss_sum'] / state['loss_count']:.4f}")
                if cfg.checkpoint_every and accelerator.sync_gradients and state["global_step"] % cfg.checkpoint_every == 0:
                    save_checkpoint()
            bar.close()
            train_seconds = time.perf_counter() - epoch_start
            mean_loss = accelerator.reduce(
                torch.tensor([state["loss_sum"], float(state["loss_count"])], device=accelerator.device), "sum"
            )
            record = {
                "epoch": epoch + 1,
                "train_loss": float(mean_loss[0] / max(mean_loss[1], 1)),
                "lr": scheduler.get_last_lr()[0],
                "train_seconds": round(train_seconds, 2),
            }
            # ---- dev evaluation and model selection
            improved = False
            if dev_set is not None:
                table, dev_record = self._evaluate(member, model, dev_set, label_set, eval_batch)
                record.update(dev_record)
                improved = record[cfg.selection_metric] > state["best_score"]
            else:
                improved = True  # no dev split: the last epoch is kept
            record["seconds"] = round(time.perf_counter() - epoch_start, 2)
            if improved:
                state["best_score"] = record.get(cfg.selection_metric, -1.0)
                state["best_epoch"] = epoch + 1
                state["bad_epochs"] = 0
            else:
                state["bad_epochs"] += 1
            # keep: average folds each of the last average_epochs epochs into a running mean; until the run ends, the
            # run folder holds the latest epoch, as with keep: last.
            averaged = cfg.keep == "average" and epoch + 1 > cfg.epochs - cfg.average_epochs
            if averaged:
                state["averaged"] += 1
                average = running_mean(average, member.saved_state(accelerator.unwrap_model(model)), state["averaged"])
            kept = improved or cfg.keep != "best"
            if kept:
                state["kept_epoch"] = epoch + 1
                if accelerator.is_main_process:
                    save_tensors(self.run_dir / runs.WEIGHTS_FILE, member.saved_state(accelerator.unwrap_model(model)))
                    if dev_set is not None:
                        write_predictions(self.run_dir / runs.DEV_PREDICTIONS, table)
            record["best"] = improved
            record["kept"] = kept
            if cfg.keep == "average":
                record["averaged"] = averaged
            history.append(record)
            state.update(epoch=epoch + 1, batches_done=0, loss_sum=0.0, loss_count=0)
            if accelerator.is_main_process:
                self._write_metrics(history)
                dev_text = f", dev {cfg.selection_metric} {record[cfg.selection_metric]:.4f}" if dev_set is not None else ""
                self._log(
                    f"epoch {epoch + 1}/{cfg.epochs}: train loss {record['train_loss']:.4f}{dev_text}"
                    f"{' (best)' if improved else ''}, {record['seconds']:.0f} s"
                )
            save_checkpoint()
            if cfg.patience and state["bad_epochs"] >= cfg.patience:
                self.log(f"early stop: no better dev {cfg.selection_metric} for {cfg.patience} epoch(s)")
                stop = True

        average_score = None
        if state["averaged"]:
            average_score = self._keep_average(
                member, model, average, state["averaged"], dev_set, label_set, eval_batch
            )
        summary = {
            "member": recipe.member,
            "best_epoch": state["best_epoch"],
            "kept_epoch": state["kept_epoch"],
            "keep": cfg.keep,
            f"best_dev_{cfg.selection_metric}": state["best_score"] if dev_set is not None else None,
            **(
                {
                    "averaged_epochs": list(range(state["epoch"] - state["averaged"] + 1, state["epoch"] + 1)),
                    f"average_dev_{cfg.selection_metric}": average_score,
                }
                if cfg.keep == "average"
                else {}
            ),
            "epochs_run": state["epoch"],
            "train_utterances": len(train_set),
            "dev_utterances": len(dev_set) if dev_set is not None else 0,
            "processes": accelerator.num_processes,
            "seconds_this_session": round(time.perf_counter() - started, 1),
        }
        if accelerator.is_main_process:
            (self.run_dir / runs.SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
            self._log(
                f"done: best epoch {state['best_epoch']}, kept epoch {state['kept_epoch']} ({cfg.keep}); "
                f"run folder {self.run_dir}"
            )
        accelerator.wait_for_everyone()
        accelerator.end_training()  # tear the process group down together; one rank leaving first can abort another
        return summary

    def _average_path(self) -> Path:
        return self.run_dir / runs.CHECKPOINT_DIR / "average.safetensors"

    def _keep_average(
        self, member: Member, model, average, count: int, dev_set, label_set: LabelSet, batch_size: int
    ):
        """Load the averaged state into ``model``, score it on dev, and make it the run's weights (and dev
        predictions). Returns the dev selection metric, or None without a dev split."""
        accelerator = self.accelerator
        cfg = self.recipe.train
        inner = accelerator.unwrap_model(model)
        inner.load_state_dict(average, strict=not member.saves_partial_state)
        score = None
        if dev_set is not None:
            table, record = self._evaluate(member, model, dev_set, label_set, batch_size)
            score = record[cfg.selection_metric]
        if accelerator.is_main_process:
            save_tensors(self.run_dir / runs.WEIGHTS_FILE, member.saved_state(inner))
            if dev_set is not None:
                write_predictions(self.run_dir / runs.DEV_PREDICTIONS, table)
            dev_text = f"; dev {cfg.selection_metric} {score:.4f}" if score is not None else ""
            self._log(f"kept: the average of the last {count} epoch(s){dev_text}")
        return score

    def _evaluate(self, member: Member, model, dev_set, label_set: LabelSet, batch_size: int):
        """Dev predictions (gathered over processes) and their figures for the metrics log."""
        cfg = self.recipe.train
        ids, probs = predict_probabilities(
            member, model, dev_set, batch_size, accelerator=self.accelerator, progress=cfg.progress, desc="dev",
            predict=self.recipe.predict,
        )
        table = table_from_probs(ids, probs, label_set, source=runs.DEV_PREDICTIONS)
        report = classification_report([u.label for u in dev_set.utterances], table.labels, list(label_set))
        record: dict[str, Any] = {k: report[k] for k in ("macro_f1", "ua", "wa", "weighted_f1")}
        record["per_class_f1"] = {k: v["f1"] for k, v in report["per_class"].items()}
        return table, record

    def _prepare_untrained(self, member: Member, utterances, label_set, train_utts, dev_utts, started) -> dict:
        """A member that is not trained (T1, zero-shot): the run folder gets its
        config, label set, whatever it fits on the training split without
        gradients (``member.calibrate``, e.g. a prior correction) in
        ``model.safetensors``, and its dev predictions and figures."""
        accelerator, cfg = self.accelerator, self.recipe.train
        model, self.recipe = member.build(label_set, pretrained=True)
        model.to(accelerator.device).eval()
        calibrate = getattr(member, "calibrate", None)
        calibration_utterances = 0
        if calibrate is not None:
            train_set = member.dataset(train_utts, label_set, train=False, on_error="skip")
            for problem in train_set.errors:
                self.log(f"skipped: {problem}")
            calibration_utterances = calibrate(model, train_set) or len(train_set)
        dev_set = member.dataset(dev_utts, label_set, train=False, on_error="skip") if dev_utts else None
        if dev_set is not None:
            for problem in dev_set.errors:
                self.log(f"skipped: {problem}")
        record: dict[str, Any] = {"epoch": 0}
        table = None
        if dev_set is not None and len(dev_set):
            eval_start = time.perf_counter()
            table, dev_record = self._evaluate(member, model, dev_set, label_set, cfg.eval_batch_size or cfg.batch_size)
            record.update(dev_record)
            record["seconds"] = round(time.perf_counter() - eval_start, 2)
        summary = {
            "member": self.recipe.member,
            "trained": False,
            "calibration_utterances": calibration_utterances,
            f"dev_{cfg.selection_metric}": record.get(cfg.selection_metric),
            "dev_utterances": len(dev_set) if dev_set is not None else 0,
            "processes": accelerator.num_processes,
            "seconds_this_session": round(time.perf_counter() - started, 1),
        }
        if accelerator.is_main_process:
            runs.save_recipe(self.run_dir, self.recipe)
            label_set.save(self.run_dir / runs.LABELS_FILE)
            write_manifest(self.run_dir / "data" / "splits.jsonl", utterances)
            save_tensors(self.run_dir / runs.WEIGHTS_FILE, member.saved_state(model))
            if table is not None:
                write_predictions(self.run_dir / runs.DEV_PREDICTIONS, table)
                self._write_metrics([record])
                self._log(f"dev {cfg.selection_metric} {record[cfg.selection_metric]:.4f} ({len(dev_set)} utterances)")
            (self.run_dir / runs.SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
            self._log(f"done: {self.recipe.member} is not trained; run folder {self.run_dir}")
        accelerator.wait_for_everyone()
        accelerator.end_training()
        return summary

    def _write_metrics(self, history: list[dict]) -> None:
        import csv

        with (self.run_dir / runs.METRICS_JSONL).open("w", encoding="utf-8") as handle:
            for record in history:
                handle.write(json.dumps(record) + "\n")
        columns = [k for k in history[0] if k != "per_class_f1"]
        for record in history:
            columns += [k for k in record if k not in columns and k != "per_class_f1"]
        with (self.run_dir / runs.METRICS_CSV).open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(history)
        try:
            plot_training_curves(history, self.run_dir / runs.CURVES_PLOT, metric=self.recipe.train.selection_metric)
        except Exception as error:  # a figure is never worth a training run
            self.log(f"warning: {runs.CURVES_PLOT} not written: {error}")


def train(recipe: Recipe, run_dir: str | Path, *, resume: bool = False, log: Callable[[str], None] = print) -> dict:
    """Train ``recipe``'s member into ``run_dir`` (see ``runs`` for its layout)."""
    return Trainer(recipe, run_dir, resume=resume, log=log).fit()
