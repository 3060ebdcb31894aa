"""S1: a fine-tuned self-supervised speech encoder (WavLM, wav2vec2, HuBERT
or the Whisper encoder) -> weighted sum of hidden layers -> masked attentive
statistics pooling -> MLP head. Input: speech only.

Paper scale: WavLM-Large, CNN frozen, weighted focal loss (recipes/msp_podcast/s1.yaml).
Offline CPU scale: the Whisper-base encoder run on the true length of the audio
(recipes/ravdess/s1.yaml).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Sequence

import torch

from abhinaya.data.audio import AudioConfig, AudioDataset, collate_audio
from abhinaya.labels import LabelSet
from abhinaya.manifest import Utterance
from abhinaya.members.base import Member, unwrap
from abhinaya.models.ssl_classifier import SSLClassifier, SSLClassifierConfig
from abhinaya.recipes import Recipe


@dataclass
class S1Recipe(Recipe):
    member: str = "s1"
    audio: AudioConfig = field(default_factory=AudioConfig)
    model: SSLClassifierConfig = field(default_factory=SSLClassifierConfig)


class S1Member(Member):
    name = "s1"
    recipe_class = S1Recipe
    inputs = ("audio",)

    recipe: S1Recipe

    def build(self, label_set: LabelSet, pretrained: bool) -> tuple[SSLClassifier, S1Recipe]:
        config = replace(self.recipe.model, num_labels=len(label_set))
        if pretrained and config.encoder_config is None:
            model = SSLClassifier.from_pretrained_encoder(config)
        elif config.encoder_config is None:
            raise ValueError("model.encoder_config is empty: build with pretrained weights first (training does)")
        else:
            model = SSLClassifier(config)
        # from_pretrained_encoder fills encoder_config, so the run folder rebuilds offline.
        return model, replace(self.recipe, model=model.config)

    def dataset(self, utterances: Sequence[Utterance], label_set: LabelSet | None, train: bool, on_error: str = "raise"):
        return AudioDataset(
            utterances, label_set, self.recipe.audio, train=train, seed=self.recipe.train.seed, on_error=on_error
        )

    def collate(self, items: list[dict]) -> dict[str, Any]:
        return collate_audio(items)

    def logits(self, model: SSLClassifier, batch: dict[str, Any]) -> torch.Tensor:
        return model(batch["waveforms"], batch["lengths"])

    def dimension_names(self) -> list[str]:
        """The emotion dimensions the model predicts beside the classes (``model.dimensions``)."""
        return list(self.recipe.model.dimensions)

    def logits_and_dimensions(self, model: SSLClassifier, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """Class logits and dimensions from one forward pass (through the wrapper, as training needs)."""
        return model(batch["waveforms"], batch["lengths"], with_dimensions=True)

    def dimensions_of_pooled(self, model: SSLClassifier, embeddings: torch.Tensor) -> torch.Tensor:
        return unwrap(model).dimensions(embeddings)

    def embed(self, model: SSLClassifier, batch: dict[str, Any]) -> torch.Tensor:
        return unwrap(model).embed(batch["waveforms"], batch["lengths"])

    def classify(self, model: SSLClassifier, embeddings: torch.Tensor) -> torch.Tensor:
        return unwrap(model).classify(embeddings)

    def pooled_mean(self, model: SSLClassifier) -> torch.Tensor:
        mean = unwrap(model).pooled_mean()
        if mean is None:
            raise ValueError(
                "predict.speaker_norm needs the training mean of the pooled vector, which model.head_norm "
                "'running' or 'batch' keeps; this model has head_norm "
                f"{unwrap(model).config.head_norm!r}"
            )
        return mean
