"""Class-imbalance losses for emotion classifiers.

Notation: ``z`` logits ``(B, C)``, ``y`` integer targets ``(B,)``, ``N_c`` the
training count of class ``c``, ``N`` the total count, ``C`` the number of
classes and ``pi_c = N_c / N`` the class prior.

- class weights ``w_c = N / (C * N_c)``;
- weighted cross-entropy ``-w_y log softmax(z)_y``, weighted mean over the batch
  (``sum_i w_{y_i} nll_i / sum_i w_{y_i}``, as ``torch.nn.functional.cross_entropy``);
- weighted focal loss ``-alpha w_y (1 - p_y)^gamma log p_y``, plain batch mean;
- VS loss (Kini et al., NeurIPS 2021): cross-entropy on
  ``z'_c = z_c (N_c / N_max)^gamma + tau log pi_c`` (``gamma = 0``: logit
  adjustment, ``tau = 0``: CDT). The adjusted logits are for training only;
  prediction uses the raw ``z``.

Models return logits and the training loop applies the loss, so every loss here
works for every member. ``LossConfig`` holds the defaults; ``build_loss`` turns a
config and the training class counts into an ``nn.Module``.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from abhinaya.nn.loss_config import LOSS_NAMES, LossConfig  # the settings live in a torch-free module

CountsLike = Sequence[int] | Sequence[float] | np.ndarray | torch.Tensor


def _counts_array(counts: CountsLike) -> np.ndarray:
    """Per-class counts as a float64 vector ``(C,)``; zero, negative or non-finite counts are errors."""
    if isinstance(counts, torch.Tensor):
        counts = counts.detach().cpu().numpy()
    array = np.asarray(counts, dtype=np.float64)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"class counts must be a non-empty 1-D sequence, got shape {array.shape}")
    for index, count in enumerate(array):
        if not np.isfinite(count) or count < 0:
            raise ValueError(f"class {index} has an invalid training count {count}")
        if count == 0:
            raise ValueError(
                f"class {index} has no training examples (count 0): it cannot be trained; "
                "drop it from the label set or add data"
            )
    return array


def class_weights(counts: CountsLike) -> torch.Tensor:
    """Class weights ``w_c = N / (C * N_c)`` from per-class training counts ``(C,)``.

    Returns a float32 tensor ``(C,)``. A class with count 0 raises ``ValueError``
    naming its index.
    """
    array = _counts_array(counts)
    weights = array.sum() / (array.size * array)
    return torch.as_tensor(weights, dtype=torch.float32)


def is_soft(target: torch.Tensor) -> bool:
    """Whether ``target`` is a distribution per utterance ``(B, C)`` (soft labels) rather than class indices."""
    return target.is_floating_point() and target.ndim == 2


def _soft_targets(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    """``target`` checked against ``logits`` and normalised to sum to 1 per row, in the logits' dtype."""
    if logits.ndim != 2 or tuple(target.shape) != tuple(logits.shape):
        raise ValueError(f"soft targets must be (B, C) like the logits {tuple(logits.shape)}, got {tuple(target.shape)}")
    if weight is not None and tuple(weight.shape) != (logits.shape[1],):
        raise ValueError(
            f"class weights have shape {tuple(weight.shape)}, expected ({logits.shape[1]},) for {logits.shape[1]} classes"
        )
    target = target.to(device=logits.device, dtype=torch.float32)
    total = target.sum(dim=1, keepdim=True)
    if not torch.isfinite(target).all() or (target < 0).any() or (total <= 0).any():
        raise ValueError("soft targets must be non-negative and finite, with some mass in every row")
    return (target / total).to(_compute_dtype(logits).dtype)


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy against distributions: ``-sum_c w_c q_c log p_c`` per utterance, reduced as the weighted mean
    of ``weighted_cross_entropy`` (divided by ``sum_i sum_c w_c q_ic``), so one-hot ``q`` gives exactly the hard
    loss. Minimising it minimises the KL divergence from ``q`` (the entropy of ``q`` is a constant)."""
    q = _soft_targets(logits, target, weight)
    logits = _compute_dtype(logits)
    log_p = F.log_softmax(logits, dim=-1)
    weight = _weight_like(weight, logits)
    weighted = q if weight is None else q * weight
    return -(weighted * log_p).sum() / weighted.sum()


def _check_inputs(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None) -> None:
    if logits.ndim != 2:
        raise ValueError(f"logits must be (B, C), got shape {tuple(logits.shape)}")
    if target.ndim != 1 or target.shape[0] != logits.shape[0]:
        raise ValueError(
            f"target must be (B,) with B = {logits.shape[0]}, got shape {tuple(target.shape)}"
        )
    if target.dtype != torch.long:
        raise ValueError(f"target must be integer class indices (torch.long), got {target.dtype}")
    if weight is not None and tuple(weight.shape) != (logits.shape[1],):
        raise ValueError(
            f"class weights have shape {tuple(weight.shape)}, expected ({logits.shape[1]},) for {logits.shape[1]} classes"
        )


def _compute_dtype(logits: torch.Tensor) -> torch.Tensor:
    # log-softmax in fp16/bf16 loses too much precision for a loss; compute in float32.
    if logits.dtype in (torch.float16, torch.bfloat16):
        return logits.float()
    return logits


def _weight_like(weight: torch.Tensor | None, logits: torch.Tensor) -> torch.Tensor | None:
    if weight is None:
        return None
    return weight.to(device=logits.device, dtype=logits.dtype)


def weighted_cross_entropy(
    logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None
) -> torch.Tensor:
    """Cross-entropy ``-w_y log softmax(z)_y`` as a weighted batch mean.

    logits ``(B, C)``, target ``(B,)`` long, weight ``(C,)`` or ``None`` (plain
    mean). Returns a scalar equal to ``F.cross_entropy(logits, target, weight=weight)``.
    A float target ``(B, C)`` is a distribution per utterance: ``soft_cross_entropy``.
    """
    if is_soft(target):
        return soft_cross_entropy(logits, target, weight)
    _check_inputs(logits, target, weight)
    logits = _compute_dtype(logits)
    return F.cross_entropy(logits, target, weight=_weight_like(weight, logits))


def weighted_focal_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None = None,
    gamma: float = 2.0,
    alpha: float = 1.0,
) -> torch.Tensor:
    """Focal loss ``-alpha w_y (1 - p_y)^gamma log p_y``, plain mean over the batch.

    logits ``(B, C)``, target ``(B,)`` long, weight ``(C,)`` or ``None`` (all
    ones). Returns a scalar. Unlike ``weighted_cross_entropy`` the mean is not
    normalised by the weights. A float target ``(B, C)`` is a distribution per
    utterance: ``-alpha sum_c w_c q_c (1 - p_c)^gamma log p_c``.
    """
    if is_soft(target):
        q = _soft_targets(logits, target, weight)
        logits = _compute_dtype(logits)
        log_p = F.log_softmax(logits, dim=-1)
        one_minus_p = (-torch.expm1(log_p)).clamp_min(0.0)
        per_class = -alpha * q * one_minus_p.pow(gamma) * log_p
        weight = _weight_like(weight, logits)
        if weight is not None:
            per_class = per_class * weight
        return per_class.sum(dim=1).mean()
    _check_inputs(logits, target, weight)
    logits = _compute_dtype(logits)
    log_p = F.log_softmax(logits, dim=-1).gather(1, target[:, None]).squeeze(1)
    # 1 - p_y computed as -expm1(log p_y): exact when p_y is close to 1.
    one_minus_p = (-torch.expm1(log_p)).clamp_min(0.0)
    loss = -alpha * one_minus_p.pow(gamma) * log_p
    weight = _weight_like(weight, logits)
    if weight is not None:
        loss = loss * weight[target]
    return loss.mean()


def vs_logit_adjustment(
    class_counts: CountsLike, gamma: float = 0.3, tau: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Multiplicative and additive VS terms ``(N_c / N_max)^gamma`` and ``tau log pi_c``.

    Returns two float32 tensors ``(C,)``; the adjusted logits are
    ``z * scale + offset``.
    """
    array = _counts_array(class_counts)
    scale = (array / array.max()) ** gamma
    offset = tau * np.log(array / array.sum())
    return torch.as_tensor(scale, dtype=torch.float32), torch.as_tensor(offset, dtype=torch.float32)


def _vs_loss_from_terms(
    logits: torch.Tensor,
    target: torch.Tensor,
    scale: torch.Tensor,
    offset: torch.Tensor,
    weight: torch.Tensor | None,
) -> torch.Tensor:
    if not is_soft(target):
        _check_inputs(logits, target, weight)
    if tuple(scale.shape) != (logits.shape[1],):
        raise ValueError(
            f"class counts cover {scale.shape[0]} classes but logits have {logits.shape[1]}"
        )
    logits = _compute_dtype(logits)
    scale = scale.to(device=logits.device, dtype=logits.dtype)
    offset = offset.to(device=logits.device, dtype=logits.dtype)
    if is_soft(target):
        return soft_cross_entropy(logits * scale + offset, target, weight)
    return F.cross_entropy(logits * scale + offset, target, weight=_weight_like(weight, logits))


def vs_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    class_counts: CountsLike,
    gamma: float = 0.3,
    tau: float = 1.0,
    weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """Vector-scaling loss: (weighted) cross-entropy on ``z_c (N_c/N_max)^gamma + tau log pi_c``.

    logits ``(B, C)``, target ``(B,)`` long, class_counts ``(C,)`` training
    counts, weight ``(C,)`` or ``None``. Returns a scalar; the batch reduction is
    the weighted mean of ``weighted_cross_entropy``.
    """
    scale, offset = vs_logit_adjustment(class_counts, gamma=gamma, tau=tau)
    return _vs_loss_from_terms(logits, target, scale, offset, weight)


def concordance_loss(predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``1 - CCC`` averaged over dimensions: ``predicted`` and ``target`` ``(B, K)``; a NaN target (an utterance
    without that rating) is left out of its dimension; a dimension with fewer than 2 rated utterances in the batch
    adds nothing. CCC = 2 cov(x, y) / (var x + var y + (mean x - mean y)^2), with population statistics."""
    if predicted.shape != target.shape or predicted.ndim != 2:
        raise ValueError(f"predicted {tuple(predicted.shape)} and target {tuple(target.shape)} must be the same (B, K)")
    predicted, target = predicted.float(), target.to(predicted.device).float()
    losses = []
    for k in range(predicted.shape[1]):
        rated = ~torch.isnan(target[:, k])
        if int(rated.sum()) < 2:
            continue
        x, y = predicted[rated, k], target[rated, k]
        mx, my = x.mean(), y.mean()
        cov = ((x - mx) * (y - my)).mean()
        ccc = 2 * cov / (x.var(unbiased=False) + y.var(unbiased=False) + (mx - my) ** 2 + 1e-8)
        losses.append(1 - ccc)
    if not losses:
        return predicted.sum() * 0.0
    return torch.stack(losses).mean()


class WeightedCrossEntropyLoss(nn.Module):
    """``weighted_cross_entropy`` as a module; ``weight`` ``(C,)`` is a buffer (or ``None``)."""

    def __init__(self, weight: torch.Tensor | None = None):
        super().__init__()
        self.register_buffer("weight", None if weight is None else torch.as_tensor(weight, dtype=torch.float32))

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """logits ``(B, C)``, target ``(B,)`` long or ``(B, C)`` distributions -> scalar."""
        return weighted_cross_entropy(logits, target, self.weight)


class WeightedFocalLoss(nn.Module):
    """``weighted_focal_loss`` as a module; ``weight`` ``(C,)`` is a buffer (or ``None``)."""

    def __init__(self, weight: torch.Tensor | None = None, gamma: float = 2.0, alpha: float = 1.0):
        super().__init__()
        self.gamma = float(gamma)
        self.alpha = float(alpha)
        self.register_buffer("weight", None if weight is None else torch.as_tensor(weight, dtype=torch.float32))

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """logits ``(B, C)``, target ``(B,)`` long or ``(B, C)`` distributions -> scalar."""
        return weighted_focal_loss(logits, target, self.weight, gamma=self.gamma, alpha=self.alpha)

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}, alpha={self.alpha}, weighted={self.weight is not None}"


class VSLoss(nn.Module):
    """``vs_loss`` as a module; the scale, offset and optional weight ``(C,)`` are buffers."""

    def __init__(
        self,
        class_counts: CountsLike,
        gamma: float = 0.3,
        tau: float = 1.0,
        weight: torch.Tensor | None = None,
    ):
        super().__init__()
        self.gamma = float(gamma)
        self.tau = float(tau)
        scale, offset = vs_logit_adjustment(class_counts, gamma=gamma, tau=tau)
        self.register_buffer("scale", scale)
        self.register_buffer("offset", offset)
        self.register_buffer("weight", None if weight is None else torch.as_tensor(weight, dtype=torch.float32))

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """logits ``(B, C)``, target ``(B,)`` long or ``(B, C)`` distributions -> scalar."""
        return _vs_loss_from_terms(logits, target, self.scale, self.offset, self.weight)

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}, tau={self.tau}, weighted={self.weight is not None}"


def build_loss(config: LossConfig, class_counts: CountsLike | None = None) -> nn.Module:
    """The loss module named by ``config``.

    ``class_counts`` ``(C,)`` are the training counts per class, in label-set
    order; they are required by the weighted variants and by ``vs`` and
    ignored by ``ce`` and ``focal``.
    """
    name = config.name
    if name not in LOSS_NAMES:
        raise ValueError(f"unknown loss {name!r}; valid names: {', '.join(LOSS_NAMES)}")
    if name == "ce":
        return WeightedCrossEntropyLoss()
    if name == "focal":
        return WeightedFocalLoss(gamma=config.gamma, alpha=config.alpha)
    if class_counts is None:
        raise ValueError(f"loss {name!r} needs the per-class training counts")
    if name == "weighted_ce":
        return WeightedCrossEntropyLoss(class_weights(class_counts))
    if name == "weighted_focal":
        return WeightedFocalLoss(class_weights(class_counts), gamma=config.gamma, alpha=config.alpha)
    weight = class_weights(class_counts) if config.vs_class_weights else None
    return VSLoss(class_counts, gamma=config.vs_gamma, tau=config.vs_tau, weight=weight)
