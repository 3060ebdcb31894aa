"""The pooled classifier head shared by every member that classifies a sequence of hidden states.

    hidden (B, T, D), mask (B, T) -> masked pooling -> pooled (B, P = 2 * D)                        :meth:`embed`
    pooled -> norm (running / batch / layer standardisation, or none) -> dropout -> Linear(P, H)
           -> activation -> dropout -> Linear(H, C) -> logits (B, C)                                :meth:`classify`

``embed`` stops before the norm, so ``predict.speaker_norm`` can move a speaker's pooled vectors to the training mean
(:meth:`PooledClassifierHead.pooled_mean`, kept by the "running" and "batch" norms) before ``classify``.
"""

from __future__ import annotations

from typing import Any, Protocol

import torch
from torch import nn

from abhinaya.nn.pooling import build_pooling, lengths_to_mask
from abhinaya.nn.standardize import build_head_norm

__all__ = ["ACTIVATIONS", "HeadSettings", "PooledClassifierHead", "RenamedStateKeys", "rename_state_keys"]

ACTIVATIONS = ("relu", "gelu")


class HeadSettings(Protocol):
    """The head's fields of a model config (the config is where their defaults live)."""

    pooling: str
    attention_dim: int
    head_norm: str | None
    head_hidden: int
    dropout: float
    num_labels: int


class PooledClassifierHead(nn.Module):
    """Masked pooling -> optional standardisation -> two-layer MLP -> class logits.

    Args:
        dim: D, the width of the hidden states pooled.
        num_labels: C, the number of classes.
        pooling: "attentive" or "mean_std" (``abhinaya.nn.pooling.POOLINGS``).
        attention_dim: hidden size of the attentive pooling's scoring network.
        norm: standardisation of the pooled vector (``abhinaya.nn.standardize.HEAD_NORMS``), or None.
        hidden: H, the MLP's hidden size.
        dropout: dropout after the activation.
        input_dropout: dropout of the (standardised) pooled vector before the first layer; 0 = none.
        activation: "relu" or "gelu".
    """

    def __init__(
        self,
        dim: int,
        num_labels: int,
        *,
        pooling: str,
        attention_dim: int,
        norm: str | None,
        hidden: int,
        dropout: float,
        input_dropout: float,
        activation: str,
    ):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
        pooled = 2 * dim
        self.pooling = build_pooling(pooling, dim, attention_dim)
        self.norm = nn.Identity() if norm is None else build_head_norm(norm, pooled)
        self.input_dropout = nn.Dropout(input_dropout) if input_dropout > 0 else nn.Identity()
        self.fc1 = nn.Linear(pooled, hidden)
        self.activation = nn.ReLU() if activation == "relu" else nn.GELU()
        self.dropout = nn.Dropout(dropout)
        self.fc2 = nn.Linear(hidden, num_labels)

    @classmethod
    def from_settings(
        cls, dim: int, settings: HeadSettings, *, input_dropout: float, activation: str
    ) -> PooledClassifierHead:
        """The head over hidden states of width ``dim`` set up by a model config's head fields."""
        return cls(
            dim,
            settings.num_labels,
            pooling=settings.pooling,
            attention_dim=settings.attention_dim,
            norm=settings.head_norm,
            hidden=settings.head_hidden,
            dropout=settings.dropout,
            input_dropout=input_dropout,
            activation=activation,
        )

    def embed(
        self, hidden: torch.Tensor, mask: torch.Tensor | None = None, *, lengths: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Pooled vectors (B, 2 * D) of hidden states (B, T, D), before the norm.

        The valid frames are given by ``mask`` (B, T) (True = valid) or by ``lengths`` (B,) in frames; neither means
        every frame is valid.
        """
        if lengths is not None:
            if mask is not None:
                raise ValueError("give either mask or lengths, not both")
            mask = lengths_to_mask(lengths.to(hidden.device), hidden.shape[1])
        return self.pooling(hidden, mask)

    def classify(self, pooled: torch.Tensor) -> torch.Tensor:
        """Class logits (B, C) of pooled vectors (B, 2 * D)."""
        x = self.input_dropout(self.norm(pooled))
        return self.fc2(self.dropout(self.activation(self.fc1(x))))

    def forward(
        self, hidden: torch.Tensor, mask: torch.Tensor | None = None, *, lengths: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Class logits (B, C) of hidden states (B, T, D); ``mask`` / ``lengths`` as in :meth:`embed`."""
        return self.classify(self.embed(hidden, mask, lengths=lengths))

    def pooled_mean(self) -> torch.Tensor | None:
        """The running mean (2 * D,) of the training pooled vectors kept by a "running" or "batch" norm, or None."""
        mean = getattr(self.norm, "running_mean", None)
        return mean if isinstance(mean, torch.Tensor) else None


def rename_state_keys(state: dict[str, Any], renames: tuple[tuple[str, str], ...], prefix: str = "") -> None:
    """Rename, in place, each key ``prefix + old + rest`` to ``prefix + new + rest`` for the ``(old, new)`` pairs.

    A key whose new name is already present is left as it is (and is then reported as unexpected by a strict load).
    """
    for key in list(state):
        for old, new in renames:
            if key.startswith(prefix + old):
                renamed = prefix + new + key[len(prefix + old) :]
                if renamed not in state:
                    state[renamed] = state.pop(key)
                break


class RenamedStateKeys:
    """Mixin for a module whose state-dict keys were renamed: state dicts with the earlier names still load.

    ``renamed_state_keys`` lists ``(old prefix, new prefix)`` pairs. ``load_state_dict`` renames on the way in;
    :meth:`upgrade_state_dict` returns a renamed copy, for code that checks the keys before loading.
    """

    renamed_state_keys: tuple[tuple[str, str], ...] = ()

    def upgrade_state_dict(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """A copy of ``state`` with the earlier key names replaced by the current ones."""
        upgraded = dict(state)
        rename_state_keys(upgraded, self.renamed_state_keys)
        return upgraded

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # Children are loaded after their parent, from the keys it leaves: renaming here reaches them.
        rename_state_keys(state_dict, self.renamed_state_keys, prefix)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)  # type: ignore[misc]
