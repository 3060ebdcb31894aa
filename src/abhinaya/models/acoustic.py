"""A classifier of utterance-level acoustic feature vectors (eGeMAPS functionals, ``data/egemaps.py``).

    features (B, F) -> standardisation (running statistics of the training data) -> dropout
                    -> [Linear(F, H) -> activation -> dropout] -> Linear(., C) -> logits (B, C)

With ``head_hidden: 0`` the part in brackets is left out: a linear layer on standardised features, i.e. multinomial
logistic regression trained by the loop's loss. The features are the pooled vector of this model: :meth:`embed`
returns them as they are, :meth:`classify` applies the standardisation and the layers, and :meth:`pooled_mean` is
the standardisation's running mean, so ``predict.speaker_norm`` moves each speaker's features toward the training
mean, as for the members that pool hidden states.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from abhinaya.nn.head import ACTIVATIONS
from abhinaya.nn.standardize import HEAD_NORMS, RunningStandardize, build_head_norm

__all__ = ["AcousticClassifier", "AcousticClassifierConfig"]


@dataclass
class AcousticClassifierConfig:
    """Settings of :class:`AcousticClassifier`; the only place their defaults live.

    Attributes:
        num_features: F, the size of the input vector; None = set by the member from its feature set at build.
        head_norm: standardisation of the features before the layers: "running" (each feature standardised with
            running statistics of the training data, the same in training and at inference; no floor on the
            standard deviation, as functionals such as jitter vary little but matter), "batch" (BatchNorm), "layer"
            (LayerNorm over the vector) or None. eGeMAPS functionals differ in scale by orders of magnitude.
        head_hidden: H, the width of the hidden layer; 0 = none (a linear classifier).
        dropout: dropout of the standardised features and, with a hidden layer, after its activation.
        activation: "relu" or "gelu" (hidden layer only).
        num_labels: C, the number of classes.
    """

    num_features: int | None = None
    head_norm: str | None = "running"
    head_hidden: int = 0
    dropout: float = 0.1
    activation: str = "relu"
    num_labels: int = 8

    def __post_init__(self) -> None:
        if self.num_features is not None and self.num_features < 1:
            raise ValueError(f"num_features must be at least 1, got {self.num_features}")
        if self.head_norm is not None and self.head_norm not in HEAD_NORMS:
            raise ValueError(f"head_norm must be one of {HEAD_NORMS} or null, got {self.head_norm!r}")
        if self.head_hidden < 0:
            raise ValueError(f"head_hidden must be >= 0, got {self.head_hidden}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {self.activation!r}")
        if self.num_labels < 1:
            raise ValueError(f"num_labels must be at least 1, got {self.num_labels}")


# The features do not change during training (no encoder below, no augmentation), so the running statistics can
# average over many batches: a cumulative mean over the first 100 batches, then a slow exponential one.
_RUNNING_MOMENTUM = 0.01


class AcousticClassifier(nn.Module):
    """Standardised feature vector -> linear classifier or one-hidden-layer MLP -> logits. Input (B, F) float."""

    def __init__(self, config: AcousticClassifierConfig):
        super().__init__()
        if config.num_features is None:
            raise ValueError("num_features is not set: the member fills it from its feature set when it builds")
        self.config = config
        dim = config.num_features
        if config.head_norm is None:
            self.norm: nn.Module = nn.Identity()
        elif config.head_norm == "running":
            self.norm = RunningStandardize(dim, momentum=_RUNNING_MOMENTUM, floor_quantile=None)
        else:
            self.norm = build_head_norm(config.head_norm, dim)
        self.dropout = nn.Dropout(config.dropout)
        if config.head_hidden:
            self.hidden: nn.Module = nn.Sequential(
                nn.Linear(dim, config.head_hidden),
                nn.ReLU() if config.activation == "relu" else nn.GELU(),
                nn.Dropout(config.dropout),
            )
            dim = config.head_hidden
        else:
            self.hidden = nn.Identity()
        self.out = nn.Linear(dim, config.num_labels)

    def embed(self, features: torch.Tensor) -> torch.Tensor:
        """The pooled vector (B, F): the features themselves, before the standardisation."""
        if features.dim() != 2 or features.shape[1] != self.config.num_features:
            raise ValueError(f"expected features (batch, {self.config.num_features}), got {tuple(features.shape)}")
        return features.float()

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        """Class logits (B, C) of feature vectors (B, F)."""
        return self.out(self.hidden(self.dropout(self.norm(features))))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Class logits (B, C) of feature vectors (B, F)."""
        return self.classify(self.embed(features))

    def pooled_mean(self) -> torch.Tensor | None:
        """The running mean (F,) of the training features kept by a "running" or "batch" norm, or None."""
        mean = getattr(self.norm, "running_mean", None)
        return mean if isinstance(mean, torch.Tensor) else None

    def param_groups(self, encoder_lr: float, head_lr: float, weight_decay: float = 0.0) -> list[dict[str, Any]]:
        """Optimizer groups, all at ``head_lr`` (there is no pretrained part; ``encoder_lr`` is unused): the
        weight matrices with ``weight_decay``, biases and the norm's scale and shift without."""
        decay, no_decay = [], []
        for name, param in self.named_parameters():
            if not param.requires_grad:
                continue
            (decay if param.dim() > 1 else no_decay).append(param)
        groups = [
            {"name": "head", "params": decay, "lr": head_lr, "weight_decay": weight_decay},
            {"name": "head_no_decay", "params": no_decay, "lr": head_lr, "weight_decay": 0.0},
        ]
        return [g for g in groups if g["params"]]
