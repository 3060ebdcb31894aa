"""Per-dimension standardisation of a pooled vector at a classifier head's input.

An LLM's hidden states carry a few dimensions of very large magnitude that are nearly the same for every input. A
LayerNorm over the vector divides every other dimension by their scale; a per-dimension standardisation does not.

Two ways to get the statistics:

- :class:`RunningStandardize` normalises with running statistics in training and at inference alike, so a training
  batch of similar utterances (length-bucketed batches are) is scaled exactly as it will be at inference. This is
  the default of the speech LLM's head.
- :class:`BatchStandardize` is BatchNorm: the batch's own statistics in training, running ones at inference. Where
  the batches are not random samples of the data (length-bucketed, small), the two differ and a model that fits its
  training batches can predict one class for everything at inference.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["HEAD_NORMS", "BatchStandardize", "RunningStandardize", "build_head_norm"]

HEAD_NORMS = ("running", "batch", "layer")


class RunningStandardize(nn.Module):
    """``(x - mean) / sqrt(var + eps) * weight + bias`` per dimension, with running ``mean`` / ``var`` of the training
    inputs.

    In training, each batch first updates the statistics (no gradient flows through them), then is normalised with
    them. The update is a cumulative average over the first ``1 / momentum`` batches and an exponential moving average
    with ``momentum`` afterwards, so it follows inputs that change while the layers below train. The variance is
    measured around the updated running mean, so it includes the spread between batches, and a batch of one works.

    ``floor_quantile``: no dimension is divided by a standard deviation below this quantile of all dimensions' ones
    (default the median). Dimensions that barely vary over the data, such as an LLM's huge constant ones, would
    otherwise turn a small drift, while the layers below train, into a huge change of the head's input.
    Input (B, D) -> (B, D).
    """

    def __init__(self, dim: int, momentum: float = 0.05, eps: float = 1e-5, floor_quantile: float | None = 0.5):
        super().__init__()
        if not 0 < momentum <= 1:
            raise ValueError(f"momentum must be in (0, 1], got {momentum}")
        if floor_quantile is not None and not 0 <= floor_quantile <= 1:
            raise ValueError(f"floor_quantile must be in [0, 1] or None, got {floor_quantile}")
        self.momentum = momentum
        self.floor_quantile = floor_quantile
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))
        self.register_buffer("running_mean", torch.zeros(dim))
        self.register_buffer("running_var", torch.ones(dim))
        self.register_buffer("num_batches_tracked", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def _update(self, x: torch.Tensor) -> None:
        rate = max(1.0 / (int(self.num_batches_tracked) + 1), self.momentum)
        x = x.float()
        self.running_mean.lerp_(x.mean(dim=0), rate)
        self.running_var.lerp_((x - self.running_mean).pow(2).mean(dim=0), rate)
        self.num_batches_tracked += 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 2 or x.shape[1] != self.weight.shape[0]:
            raise ValueError(f"expected input (batch, {self.weight.shape[0]}), got {tuple(x.shape)}")
        if self.training:
            self._update(x)
        var = self.running_var
        if self.floor_quantile is not None:
            var = var.clamp(min=float(torch.quantile(var, self.floor_quantile)))
        scale = torch.rsqrt(var + self.eps) * self.weight
        return ((x.float() - self.running_mean) * scale + self.bias).to(x.dtype)


class BatchStandardize(nn.BatchNorm1d):
    """BatchNorm1d that also accepts a training batch of one utterance, which then uses the running statistics."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and x.shape[0] == 1:
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)
        return super().forward(x)


def build_head_norm(kind: str, dim: int) -> nn.Module:
    """The normalisation of a pooled (B, dim) vector at a head's input: "running" (:class:`RunningStandardize`),
    "batch" (:class:`BatchStandardize`) or "layer" (a LayerNorm over the vector)."""
    if kind == "running":
        return RunningStandardize(dim)
    if kind == "batch":
        return BatchStandardize(dim)
    if kind == "layer":
        return nn.LayerNorm(dim)
    raise ValueError(f"head_norm must be one of {HEAD_NORMS}, got {kind!r}")
