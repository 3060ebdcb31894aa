"""T1: a zero-shot instruction-tuned LLM that names the emotion of a transcript (``models/zero_shot.py``).

Nothing is trained: ``abhinaya train`` fits the calibration bias (``calibration: train_mean``), writes the run folder
and the dev predictions. The transcripts come from the shared text dataset (``data/text.py``) as raw text, cut to
``model.max_words`` words; the model builds the chat prompt.

Paper scale: Llama-3.3-70B-Instruct behind an endpoint, free generation
(recipes/msp_podcast/t1.yaml). Offline CPU scale: SmolLM2-135M-Instruct with
constrained scoring and calibration (recipes/meld/t1.yaml; MELD dev macro-F1
0.27, benchmarks/t1_meld.py).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch

from abhinaya.data.text import TextConfig, TextDataset, collate_text
from abhinaya.labels import LabelSet
from abhinaya.manifest import Utterance
from abhinaya.members.base import Member, unwrap
from abhinaya.models.zero_shot import ZeroShotConfig, ZeroShotLM, build_zero_shot
from abhinaya.recipes import Recipe


@dataclass
class T1Recipe(Recipe):
    member: str = "t1"
    model: ZeroShotConfig = field(default_factory=ZeroShotConfig)


class T1Member(Member):
    name = "t1"
    recipe_class = T1Recipe
    inputs = ("text",)
    trainable = False
    saves_partial_state = True

    recipe: T1Recipe

    @property
    def llm_name(self) -> str | None:
        return self.recipe.model.model if self.recipe.model.backend == "transformers" else None

    def build(self, label_set: LabelSet, pretrained: bool) -> tuple[torch.nn.Module, T1Recipe]:
        """``pretrained``: the LLM's weights (always wanted for T1, which trains
        nothing); otherwise its architecture with random weights (tests). The recipe needs no resolving."""
        config = self.recipe.model
        tokenizer = self.tokenizer if self.llm_name is not None else None
        model = build_zero_shot(config, label_set, tokenizer=tokenizer, pretrained=pretrained, seed=self.recipe.train.seed)
        return model, self.recipe

    def dataset(
        self, utterances: Sequence[Utterance], label_set: LabelSet | None, train: bool, on_error: str = "raise"
    ) -> TextDataset:
        config = TextConfig(max_words=self.recipe.model.max_words)
        return TextDataset(utterances, label_set, None, config, on_error=on_error)

    def collate(self, items: list[dict]) -> dict[str, Any]:
        return collate_text(items)

    def logits(self, model: torch.nn.Module, batch: dict[str, Any]) -> torch.Tensor:
        return model(batch["texts"], batch["ids"])

    def param_groups(self, model: torch.nn.Module) -> list[dict[str, Any]]:
        return []

    def saved_state(self, model: torch.nn.Module) -> dict[str, torch.Tensor]:
        """Only the calibration bias ``(C,)`` (constrained mode); the LLM is rebuilt from its weights."""
        inner = unwrap(model)
        if isinstance(inner, ZeroShotLM) and self.recipe.model.mode == "constrained":
            return {"calibration_bias": inner.calibration_bias.detach().cpu().clone()}
        return {}

    def calibrate(self, model: torch.nn.Module, dataset: TextDataset, *, progress: bool = False) -> int | None:
        """``calibration: train_mean``: set the model's ``calibration_bias`` to the mean
        label-word log-likelihood ``(C,)`` over at most ``calibration_utterances``
        transcripts of ``dataset`` (a reproducible sample). Returns how many
        transcripts were used (None without calibration)."""
        config = self.recipe.model
        inner = unwrap(model)
        if config.calibration == "none" or not isinstance(inner, ZeroShotLM):
            return None
        if len(dataset) == 0:
            raise ValueError("calibration needs training transcripts; the training split has none usable")
        count = min(len(dataset), config.calibration_utterances)
        chosen = sorted(random.Random(self.recipe.train.seed).sample(range(len(dataset)), count))
        lengths = dataset.lengths
        chosen.sort(key=lambda i: lengths[i])  # similar lengths together: little padding
        batch_size = self.recipe.train.eval_batch_size or 2 * self.recipe.train.batch_size
        inner.fit_calibration([dataset[i]["text"] for i in chosen], batch_size, progress=progress)
        return count


__all__ = ["T1Member", "T1Recipe"]
