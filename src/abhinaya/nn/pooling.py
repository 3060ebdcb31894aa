"""Pooling of frame sequences into one vector per utterance, ignoring padded frames.

Every pooling takes ``hidden`` of shape (B, T, D) and a boolean ``mask`` of shape (B, T) where True marks a valid
frame; padded frames have no effect on the result, whatever values they hold (even NaN or inf).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["POOLINGS", "AttentiveStatisticsPooling", "MeanStdPooling", "build_pooling", "lengths_to_mask", "weighted_mean_std"]

POOLINGS = ("attentive", "mean_std")


def lengths_to_mask(lengths: torch.Tensor, max_len: int | None = None) -> torch.Tensor:
    """Boolean mask (B, T) that is True for the first ``lengths[b]`` positions of row b.

    Args:
        lengths: (B,) integer lengths (samples or frames).
        max_len: T; defaults to ``lengths.max()``.
    """
    lengths = torch.as_tensor(lengths)
    if lengths.dim() != 1:
        raise ValueError(f"lengths must be 1-D (B,), got shape {tuple(lengths.shape)}")
    if max_len is None:
        max_len = int(lengths.max()) if lengths.numel() else 0
    positions = torch.arange(max_len, device=lengths.device)
    return positions.unsqueeze(0) < lengths.unsqueeze(1)


def _check_inputs(hidden: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    if hidden.dim() != 3:
        raise ValueError(f"hidden must be (B, T, D), got shape {tuple(hidden.shape)}")
    if mask is None:
        return torch.ones(hidden.shape[:2], dtype=torch.bool, device=hidden.device)
    if mask.shape != hidden.shape[:2]:
        raise ValueError(f"mask must be (B, T) = {tuple(hidden.shape[:2])}, got {tuple(mask.shape)}")
    return mask.to(device=hidden.device, dtype=torch.bool)


def weighted_mean_std(
    hidden: torch.Tensor, weights: torch.Tensor, eps: float = 1e-5
) -> tuple[torch.Tensor, torch.Tensor]:
    """Weighted mean and standard deviation over time.

    Args:
        hidden: (B, T, D) frames; rows where ``weights`` is zero must already be finite (callers zero them).
        weights: (B, T) non-negative weights summing to 1 over the valid frames of each row (0 at padding).
        eps: floor of the variance, so the square root has a finite gradient.

    Returns:
        mean (B, D) and std (B, D), with std = sqrt(clamp(E[x^2] - E[x]^2, min=eps)).
    """
    w = weights.unsqueeze(-1)
    mean = (w * hidden).sum(dim=1)
    second_moment = (w * hidden * hidden).sum(dim=1)
    std = (second_moment - mean * mean).clamp(min=eps).sqrt()
    return mean, std


class MeanStdPooling(nn.Module):
    """Masked mean and standard deviation over valid frames; no parameters.

    Input hidden (B, T, D) and mask (B, T) bool (True = valid); output (B, 2 * D) = [mean, std].
    A row without any valid frame pools to mean 0 and std sqrt(eps).
    """

    def __init__(self, eps: float = 1e-5):
        super().__init__()
        self.eps = eps

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        mask = _check_inputs(hidden, mask)
        dtype = hidden.dtype
        x = hidden.float().masked_fill(~mask.unsqueeze(-1), 0.0)
        counts = mask.sum(dim=1, keepdim=True).clamp(min=1).float()
        weights = mask.float() / counts
        mean, std = weighted_mean_std(x, weights, self.eps)
        return torch.cat([mean, std], dim=-1).to(dtype)


class AttentiveStatisticsPooling(nn.Module):
    """Attentive statistics pooling (Okabe, Koshinaka and Shinoda, Interspeech 2018), masked.

    A small network scores each frame (Linear(D, attention_dim) -> tanh -> Linear(attention_dim, 1)); a softmax over
    the valid frames turns scores into weights; the output is the weighted mean and weighted standard deviation.

    Input hidden (B, T, D) and mask (B, T) bool (True = valid); output (B, 2 * D) = [mean, std].
    Padded frames get the lowest finite score (an exact zero weight after the softmax, and never NaN gradients);
    a row without any valid frame pools to mean 0 and std sqrt(eps).

    The scoring layer starts at zero, so a new pooling gives every valid frame the same weight and equals mean+std
    pooling exactly; training moves it away from uniform only as far as the loss asks. (A randomly initialised
    scorer starts from arbitrary frame weights, which overfits small corpora.)
    """

    def __init__(self, dim: int, attention_dim: int = 128, eps: float = 1e-5):
        super().__init__()
        self.dim = dim
        self.eps = eps
        self.attention = nn.Sequential(
            nn.Linear(dim, attention_dim),
            nn.Tanh(),
            nn.Linear(attention_dim, 1),
        )
        nn.init.zeros_(self.attention[2].weight)
        nn.init.zeros_(self.attention[2].bias)

    def attention_weights(self, hidden: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Frame weights (B, T): non-negative, sum to 1 over the valid frames of each row, 0 at padding."""
        mask = _check_inputs(hidden, mask)
        x = hidden.masked_fill(~mask.unsqueeze(-1), 0.0)
        scores = self.attention(x).squeeze(-1).float()
        scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
        weights = torch.softmax(scores, dim=1)
        return weights.masked_fill(~mask, 0.0)

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        mask = _check_inputs(hidden, mask)
        dtype = hidden.dtype
        weights = self.attention_weights(hidden, mask)
        x = hidden.float().masked_fill(~mask.unsqueeze(-1), 0.0)
        mean, std = weighted_mean_std(x, weights, self.eps)
        return torch.cat([mean, std], dim=-1).to(dtype)


def build_pooling(kind: str, dim: int, attention_dim: int = 128) -> nn.Module:
    """A pooling of (B, T, dim) frames into (B, 2 * dim): "attentive" (:class:`AttentiveStatisticsPooling`) or
    "mean_std" (:class:`MeanStdPooling`)."""
    if kind == "attentive":
        return AttentiveStatisticsPooling(dim, attention_dim)
    if kind == "mean_std":
        return MeanStdPooling()
    raise ValueError(f"pooling must be one of {POOLINGS}, got {kind!r}")
