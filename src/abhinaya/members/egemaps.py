"""egemaps: an acoustic reference member on eGeMAPS functionals. Input: speech only.

openSMILE's eGeMAPSv02 functionals (88 values per utterance: pitch, loudness, voice quality, formants, spectral
balance, rhythm; ``data/egemaps.py``), standardised with running statistics of the training data, then a linear
classifier (multinomial logistic regression; ``model.head_hidden: 0``, the default) or a small MLP
(``models/acoustic.py``). It trains in the shared loop with any of its losses, writes the same run folder and
predicts through the same engine as every member, per-speaker normalisation of the features included. No
augmentation: each utterance's vector is computed once (cached in memory and, with ``model.feature_cache``, on disk)
and reused every epoch.

Needs the optional openSMILE package: ``pip install 'abhinaya[acoustic]'``. Recipe: ``recipes/ravdess/egemaps.yaml``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Sequence

import torch

from abhinaya.data.egemaps import FEATURE_SETS, EgemapsDataset, collate_features, feature_count
from abhinaya.labels import LabelSet
from abhinaya.manifest import Utterance
from abhinaya.members.base import Member, unwrap
from abhinaya.models.acoustic import AcousticClassifier, AcousticClassifierConfig
from abhinaya.recipes import Recipe, TrainConfig


@dataclass
class EgemapsModelConfig(AcousticClassifierConfig):
    """The classifier's settings (``AcousticClassifierConfig``) and where its features come from.

    - ``feature_set``: the openSMILE functionals (``data.egemaps.FEATURE_SETS``): eGeMAPSv02 (88) or GeMAPSv01b (62).
      ``num_features`` follows from it at build (a different value is an error).
    - ``feature_cache``: folder of the on-disk feature cache; "auto" = ``$ABHINAYA_FEATURE_CACHE`` or ``features/``
      next to the model cache; null = in memory only (recomputed by every process that needs them).
    """

    feature_set: str = "eGeMAPSv02"
    feature_cache: str | None = "auto"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.feature_set not in FEATURE_SETS:
            raise ValueError(f"feature_set must be one of {', '.join(FEATURE_SETS)}, got {self.feature_set!r}")
        count = FEATURE_SETS[self.feature_set]
        if self.num_features is not None and self.num_features != count:
            raise ValueError(
                f"num_features {self.num_features} does not match feature_set {self.feature_set} ({count} values); "
                "leave it out"
            )


@dataclass
class EgemapsRecipe(Recipe):
    member: str = "egemaps"
    # A linear model on 88 inputs: many short epochs in large batches, a rate made for new layers, the last kept.
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(
            epochs=30, batch_size=32, head_lr=1e-2, weight_decay=1e-2, warmup_ratio=0.05, keep="last",
            eval_batch_size=256,
        )
    )
    model: EgemapsModelConfig = field(default_factory=EgemapsModelConfig)


class EgemapsMember(Member):
    name = "egemaps"
    recipe_class = EgemapsRecipe
    inputs = ("audio",)

    recipe: EgemapsRecipe

    def build(self, label_set: LabelSet, pretrained: bool) -> tuple[AcousticClassifier, EgemapsRecipe]:
        # Nothing pretrained: the model is built from its config alone either way.
        config = replace(
            self.recipe.model, num_labels=len(label_set), num_features=feature_count(self.recipe.model.feature_set)
        )
        model = AcousticClassifier(config)
        return model, replace(self.recipe, model=config)

    def _cache_dir(self) -> str | None:
        cache = self.recipe.model.feature_cache
        if cache == "auto":
            from abhinaya.weights.feature_cache import default_feature_cache_dir

            return str(default_feature_cache_dir())
        return cache

    def dataset(self, utterances: Sequence[Utterance], label_set: LabelSet | None, train: bool, on_error: str = "raise"):
        return EgemapsDataset(
            utterances, label_set, self.recipe.model.feature_set, train=train, cache_dir=self._cache_dir(),
            on_error=on_error, progress=self.recipe.train.progress,
        )

    def collate(self, items: list[dict]) -> dict[str, Any]:
        return collate_features(items)

    def logits(self, model: AcousticClassifier, batch: dict[str, Any]) -> torch.Tensor:
        return model(batch["features"])

    def embed(self, model: AcousticClassifier, batch: dict[str, Any]) -> torch.Tensor:
        return unwrap(model).embed(batch["features"])

    def classify(self, model: AcousticClassifier, embeddings: torch.Tensor) -> torch.Tensor:
        return unwrap(model).classify(embeddings)

    def pooled_mean(self, model: AcousticClassifier) -> torch.Tensor:
        mean = unwrap(model).pooled_mean()
        if mean is None:
            raise ValueError(
                "predict.speaker_norm needs the training mean of the features, which model.head_norm 'running' or "
                f"'batch' keeps; this model has head_norm {unwrap(model).config.head_norm!r}"
            )
        return mean
