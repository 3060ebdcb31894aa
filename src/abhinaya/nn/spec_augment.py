"""SpecAugment-style masking of log-mel features (Park et al., 2019), for training only.

Each utterance gets its own masks, drawn within its valid frames: ``time_masks`` spans of 0 to ``time_width``
frames (never more than ``max_time_fraction`` of the utterance each) and ``freq_masks`` bands of 0 to
``freq_width`` mel channels. Masked cells take the utterance's mean log-mel value over its valid frames, so a mask
reads as "no information" rather than as silence or a loud burst; padding beyond the valid frames is left as it is.
Time warping is not implemented.

Used by :class:`abhinaya.models.ssl_classifier.SSLClassifier` on Whisper's log-mel input. The wav2vec2 family
(WavLM, HuBERT) masks its own CNN features in training through its transformers config (``mask_time_prob``,
``mask_feature_prob``), so this module is not applied to it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["SpecAugmentConfig", "spec_augment"]


@dataclass
class SpecAugmentConfig:
    """Settings of :func:`spec_augment`; all counts 0 (the default) turns it off.

    Attributes:
        time_masks: time spans masked per utterance.
        time_width: longest time span, in feature frames (10 ms for Whisper's log-mel).
        max_time_fraction: a time span never covers more than this fraction of the utterance's valid frames.
        freq_masks: frequency bands masked per utterance.
        freq_width: widest frequency band, in mel channels.
    """

    time_masks: int = 0
    time_width: int = 40
    max_time_fraction: float = 0.2
    freq_masks: int = 0
    freq_width: int = 10

    def __post_init__(self) -> None:
        for name in ("time_masks", "time_width", "freq_masks", "freq_width"):
            if getattr(self, name) < 0:
                raise ValueError(f"spec_augment.{name} must be >= 0, got {getattr(self, name)}")
        if not 0.0 <= self.max_time_fraction <= 1.0:
            raise ValueError(f"spec_augment.max_time_fraction must be in [0, 1], got {self.max_time_fraction}")

    @property
    def enabled(self) -> bool:
        return (self.time_masks > 0 and self.time_width > 0) or (self.freq_masks > 0 and self.freq_width > 0)


def _spans(count: int, max_width: torch.Tensor, extent: torch.Tensor, generator: torch.Generator | None):
    """``count`` random spans per row: (B, count) starts and widths, width in [0, max_width], inside [0, extent)."""
    rows = extent.shape[0]
    u = torch.rand(rows, count, 2, generator=generator)
    widths = (u[..., 0] * (max_width.unsqueeze(1) + 1).float()).floor().long()
    widths = torch.minimum(widths, max_width.unsqueeze(1))
    room = (extent.unsqueeze(1) - widths + 1).clamp(min=1)
    starts = (u[..., 1] * room.float()).floor().long()
    return starts, widths


def _covered(starts: torch.Tensor, widths: torch.Tensor, size: int) -> torch.Tensor:
    """(B, size) True where any of the (B, K) spans covers the position."""
    pos = torch.arange(size).view(1, 1, size)
    inside = (pos >= starts.unsqueeze(-1)) & (pos < (starts + widths).unsqueeze(-1))
    return inside.any(dim=1)


def spec_augment(
    features: torch.Tensor,
    frames: torch.Tensor,
    config: SpecAugmentConfig,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Mask time spans and frequency bands of each utterance's valid frames.

    Args:
        features: (B, C, F) log-mel features (C channels, F frames), zero-padded beyond each utterance's frames.
        frames: (B,) valid frames per utterance.
        config: how many masks of which widths.
        generator: random source (default: torch's global one, seeded by the training loop).

    Returns:
        a new (B, C, F) tensor; ``features`` is not modified.
    """
    if not config.enabled:
        return features
    batch, channels, size = features.shape
    frames = frames.to("cpu").long().clamp(max=size)
    valid = torch.arange(size).unsqueeze(0) < frames.unsqueeze(1)  # (B, F)

    masked = torch.zeros(batch, channels, size, dtype=torch.bool)
    if config.time_masks > 0 and config.time_width > 0:
        limit = (frames.float() * config.max_time_fraction).floor().long()
        max_width = torch.minimum(limit, torch.full_like(limit, config.time_width))
        starts, widths = _spans(config.time_masks, max_width, frames, generator)
        masked |= _covered(starts, widths, size).unsqueeze(1)
    if config.freq_masks > 0 and config.freq_width > 0:
        max_width = torch.full((batch,), min(config.freq_width, channels), dtype=torch.long)
        starts, widths = _spans(config.freq_masks, max_width, torch.full((batch,), channels), generator)
        masked |= _covered(starts, widths, channels).unsqueeze(2)
    masked &= valid.unsqueeze(1)

    valid_f = valid.to(features.dtype).unsqueeze(1).to(features.device)
    counts = (frames.clamp(min=1) * channels).to(features.dtype).to(features.device)
    mean = (features * valid_f).sum(dim=(1, 2)) / counts  # (B,)
    return torch.where(masked.to(features.device), mean.view(batch, 1, 1), features)
