"""What the shared training loop and prediction need from a member.

A member is one classifier of the ensemble (S1, S2, T1, T2, ST1). Its module
in this package holds everything specific to it: the recipe dataclass (the
sections its YAML may have), how the model is built, how utterances become
batches, and how a batch becomes logits. The training loop (``train/``) and
prediction (``predict/``) know nothing else about it.
"""

from __future__ import annotations

from typing import Any, ClassVar, Sequence

import torch

from abhinaya.labels import LabelSet
from abhinaya.manifest import Utterance
from abhinaya.recipes import Recipe


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The model inside a DistributedDataParallel wrapper (multi-process training), or the model itself."""
    return model.module if hasattr(model, "module") else model


class Member:
    """Base class of the members. Subclasses set ``name`` and ``recipe_class``."""

    name: ClassVar[str] = ""
    recipe_class: ClassVar[type[Recipe]] = Recipe
    # Inputs the member needs in a manifest row: "audio", "text" or both.
    inputs: ClassVar[tuple[str, ...]] = ("audio",)
    # Whether the member is trained by the loop (T1 zero-shot is not).
    trainable: ClassVar[bool] = True
    # Whether saved_state holds only part of the model (the rest is rebuilt
    # from pretrained weights, e.g. LoRA adapters + head of an LLM member).
    saves_partial_state: ClassVar[bool] = False

    def __init__(self, recipe: Recipe):
        self.recipe = recipe
        self._tokenizer = None

    @property
    def llm_name(self) -> str | None:
        """The language model whose tokenizer the member's data needs (a folder or an offline name), or None."""
        return None

    @property
    def tokenizer(self):
        """The tokenizer of ``llm_name``, loaded on first use and kept."""
        if self._tokenizer is None:
            if self.llm_name is None:
                raise AttributeError(f"member {self.name} has no language model tokenizer")
            from abhinaya.weights.llm import load_tokenizer

            self._tokenizer = load_tokenizer(self.llm_name)
        return self._tokenizer

    def build(self, label_set: LabelSet, pretrained: bool) -> tuple[torch.nn.Module, Recipe]:
        """The model with ``len(label_set)`` outputs, and the recipe resolved for it: a copy of ``self.recipe`` that
        records whatever rebuilds the model offline from the run folder alone (e.g. the encoder's architecture).
        ``self.recipe`` is left as it is. ``pretrained``: load the pretrained weights the model starts from
        (training); otherwise build from the config alone (prediction, where the run's weights are loaded next)."""
        raise NotImplementedError

    def dimension_names(self) -> list[str]:
        """Emotion dimensions the member predicts beside the classes (none unless it has a dimension head)."""
        return []

    def dataset(self, utterances: Sequence[Utterance], label_set: LabelSet | None, train: bool, on_error: str = "raise"):
        """A map-style dataset with ``lengths`` (for bucketing), ``errors``
        (unusable inputs, reported) and ``utterances`` (the usable ones)."""
        raise NotImplementedError

    def collate(self, items: list[dict]) -> dict[str, Any]:
        raise NotImplementedError

    def logits(self, model: torch.nn.Module, batch: dict[str, Any]) -> torch.Tensor:
        """``(B, C)`` logits of a collated batch."""
        raise NotImplementedError

    # predict.speaker_norm (speaker_norm.py): members that support it split ``logits`` into ``embed`` (the pooled
    # vector) and ``classify`` (the head), and name the training mean of the pooled vector.
    def embed(self, model: torch.nn.Module, batch: dict[str, Any]) -> torch.Tensor:
        """``(B, D)`` pooled vectors of a collated batch, before the head."""
        raise NotImplementedError(f"member {self.name} has no pooled vector")

    def classify(self, model: torch.nn.Module, embeddings: torch.Tensor) -> torch.Tensor:
        """``(B, C)`` logits of pooled vectors from ``embed``."""
        raise NotImplementedError(f"member {self.name} has no pooled vector")

    def dimensions_of_pooled(self, model: torch.nn.Module, embeddings: torch.Tensor) -> torch.Tensor:
        """``(B, K)`` emotion dimensions of pooled vectors from ``embed`` (members with a dimension head)."""
        raise NotImplementedError(f"member {self.name} has no dimension head")

    def pooled_mean(self, model: torch.nn.Module) -> torch.Tensor:
        """The training mean of the pooled vector, which ``predict.speaker_norm`` moves each speaker's mean to.
        Raises ValueError where the member or its model has none."""
        raise ValueError(f"member {self.name} does not support predict.speaker_norm")

    def param_groups(self, model: torch.nn.Module) -> list[dict[str, Any]]:
        """Optimizer groups: the model's own ``param_groups(encoder_lr, head_lr, weight_decay)`` where it has one
        (pretrained part vs. new part), else every trainable parameter at ``head_lr``."""
        train = self.recipe.train
        inner = unwrap(model)
        if hasattr(inner, "param_groups"):
            return inner.param_groups(train.encoder_lr, train.head_lr, train.weight_decay)
        params = [p for p in model.parameters() if p.requires_grad]
        return [{"params": params, "lr": train.head_lr, "weight_decay": train.weight_decay}]

    def saved_state(self, model: torch.nn.Module) -> dict[str, torch.Tensor]:
        """Tensors written to the run folder (all weights by default)."""
        return model.state_dict()
