"""The settings of the class-imbalance losses (``nn.losses``), apart from torch so that recipes and the command
line's help load without it."""

from __future__ import annotations

import math
from dataclasses import dataclass

LOSS_NAMES: tuple[str, ...] = ("ce", "weighted_ce", "focal", "weighted_focal", "vs")


@dataclass
class LossConfig:
    """Training loss of a member.

    ``name``: one of ``LOSS_NAMES``. ``gamma``/``alpha``: focal loss.
    ``vs_gamma``/``vs_tau``: VS loss exponent and logit-adjustment strength;
    ``vs_class_weights``: use class weights inside the VS cross-entropy.
    ``soft_labels``: train towards each utterance's distribution of annotator votes (the manifest's ``votes``;
    one-hot where it has none) instead of its one label; utterances without a consensus label but with votes (the
    MSP-Podcast X class) are then trained on too. Every loss takes distributions (``nn/losses.py``).
    ``dimensions_weight``: with a dimension head (``model.dimensions``), the loss adds this weight times the
    concordance loss (1 - CCC, averaged over the dimensions) of the predicted dimensions against the manifest's
    ``attributes``.
    """

    name: str = "weighted_ce"
    gamma: float = 2.0
    alpha: float = 1.0
    vs_gamma: float = 0.3
    vs_tau: float = 1.0
    vs_class_weights: bool = True
    soft_labels: bool = False
    dimensions_weight: float = 0.0

    def __post_init__(self):
        if self.name not in LOSS_NAMES:
            raise ValueError(f"unknown loss {self.name!r}; valid names: {', '.join(LOSS_NAMES)}")
        if not self.gamma >= 0:
            raise ValueError(f"focal gamma must be >= 0, got {self.gamma}")
        if not self.alpha > 0:
            raise ValueError(f"focal alpha must be > 0, got {self.alpha}")
        if not (math.isfinite(self.dimensions_weight) and self.dimensions_weight >= 0):
            raise ValueError(f"dimensions_weight must be >= 0, got {self.dimensions_weight}")
        for field in ("vs_gamma", "vs_tau"):
            if not math.isfinite(getattr(self, field)):
                raise ValueError(f"{field} must be finite, got {getattr(self, field)}")
