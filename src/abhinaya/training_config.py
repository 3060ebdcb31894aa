"""Settings of the shared training loop (one place for their defaults)."""

from __future__ import annotations

from dataclasses import dataclass

SCHEDULES = ("linear", "cosine", "constant")
MIXED_PRECISION = ("auto", "no", "fp16", "bf16")


@dataclass
class TrainConfig:
    """Attributes:
    epochs: passes over the training split.
    batch_size: utterances per step and process; the effective batch is
        batch_size * grad_accum * processes.
    grad_accum: gradient accumulation steps.
    encoder_lr / head_lr: learning rates of the pretrained part and of the new
        parts (pooling, head); members decide which parameter is which.
    weight_decay: AdamW weight decay.
    warmup_ratio: share of optimizer steps with linear warm-up.
    schedule: linear / cosine decay after warm-up, or constant.
    max_grad_norm: gradient clipping (0 = off).
    mixed_precision: auto (bf16 on GPUs that have it, else fp16 on GPUs, none on CPU), no, fp16, bf16.
    seed: seeds Python, numpy, torch and the data order.
    patience: stop after this many epochs without a better dev score (0 = never).
    selection_metric: dev metric for model selection (macro_f1, ua, wa, weighted_f1).
    keep: the weights the run keeps: "best" (the epoch with the best dev score), "last" (the final epoch; dev
        is still scored and logged every epoch, and ``patience`` still stops on it) or "average" (the mean of
        the weights at the ends of the last ``average_epochs`` epochs, a uniform stochastic weight average; dev is
        scored on each epoch and once more on the average). With a learning rate that decays to zero and a small
        dev set, the last epoch or the average can be the steadier choice (BENCHMARKS.md, S1 and S2).
    average_epochs: how many final epochs ``keep: average`` averages. If ``patience`` stops the run before that
        window, the last epoch is kept.
    probe_epochs: epochs at the start in which only the new parts (the groups whose name starts with "head":
        pooling, head) train and the pretrained part stays as loaded; it joins afterwards with its own warm-up and
        decay over the remaining steps. Linear probing, then fine-tuning (Kumar et al., 2022): a random head's first
        gradients do not reach, and distort, the pretrained features. 0 = everything trains from the start.
    balanced_dev: select on a class-balanced subset of dev (ABHINAYA: 326 per class).
    balanced_dev_per_class: utterances per class in that subset (default: the rarest class's count).
    eval_batch_size: batch size for dev and prediction (default: 2 * batch_size).
    bucket_multiplier: length bucketing: batches are formed within random pools of batch_size * this.
    checkpoint_every: also checkpoint every this many optimizer steps within an epoch (0 = epoch ends only).
    num_workers: data-loader worker processes.
    threads: torch CPU threads (0 = torch's default).
    progress: show progress bars.
    """

    epochs: int = 10
    batch_size: int = 8
    grad_accum: int = 1
    encoder_lr: float = 3e-5
    head_lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    schedule: str = "linear"
    max_grad_norm: float = 1.0
    mixed_precision: str = "auto"
    seed: int = 0
    patience: int = 0
    selection_metric: str = "macro_f1"
    keep: str = "best"
    average_epochs: int = 3
    probe_epochs: int = 0
    balanced_dev: bool = False
    balanced_dev_per_class: int | None = None
    eval_batch_size: int | None = None
    bucket_multiplier: int = 50
    checkpoint_every: int = 0
    num_workers: int = 0
    threads: int = 0
    progress: bool = True

    def __post_init__(self):
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.mixed_precision not in MIXED_PRECISION:
            raise ValueError(f"mixed_precision must be one of {MIXED_PRECISION}, got {self.mixed_precision!r}")
        if self.selection_metric not in ("macro_f1", "ua", "wa", "weighted_f1"):
            raise ValueError(f"selection_metric must be macro_f1, ua, wa or weighted_f1, got {self.selection_metric!r}")
        if self.keep not in ("best", "last", "average"):
            raise ValueError(f"keep must be best, last or average, got {self.keep!r}")
        if self.keep == "average" and not 1 <= self.average_epochs <= self.epochs:
            raise ValueError(f"average_epochs must be between 1 and epochs ({self.epochs}), got {self.average_epochs}")
        for name in ("epochs", "batch_size", "grad_accum"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if not 0 <= self.probe_epochs < self.epochs:
            raise ValueError(f"probe_epochs must be at least 0 and less than epochs ({self.epochs}), got {self.probe_epochs}")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise ValueError("warmup_ratio must be in [0, 1)")


@dataclass
class PredictConfig:
    """How a trained member predicts (dev scoring during training and ``abhinaya predict`` alike).

    Attributes:
    speaker_norm: per-speaker normalisation of the pooled vector at the head's input. Every speaker's pooled vectors
        are moved so that their mean becomes the training mean (``v - mean_speaker + mean_train``) before the head:
        what is the same in all of a speaker's utterances (voice, microphone, room) is removed, what differs between
        them (the emotion) stays. It uses the speaker's unlabelled utterances only, never a label. The speaker is the
        manifest's ``speaker`` field; for an audio file, the speaker its name carries (RAVDESS, EmoDB), else the folder
        it was found in. Utterances without a
        speaker use the training mean (no change). It assumes a speaker's utterances show more than one emotion:
        switch it off where a speaker (or folder) holds one emotion only. Members with a pooled vector and a running
        mean at the head (S1 with ``model.head_norm``) support it.
    speaker_norm_prior: how many utterances the training mean counts as in each speaker's mean (shrinkage): a
        speaker with ``n`` utterances is moved by ``n / (n + prior)`` of the way, so a speaker with one or two
        utterances barely moves and one with 60 nearly fully. 0 = the speaker's own mean alone.
    """

    speaker_norm: bool = False
    speaker_norm_prior: float = 10.0

    def __post_init__(self):
        if self.speaker_norm_prior < 0:
            raise ValueError(f"speaker_norm_prior must be >= 0, got {self.speaker_norm_prior}")
