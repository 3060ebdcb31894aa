"""T2: a decoder LLM with LoRA used as a text encoder -> masked attentive
statistics pooling -> MLP head. Input: the transcript, optionally after the
conversation's earlier turns (``text.context_turns``; only the utterance's own
tokens are pooled).

Paper scale: Llama-3.1-8B base, LoRA r 8 / alpha 32 / dropout 0.1, VS loss with
class weights (recipes/msp_podcast/t2.yaml). Offline CPU scale: SmolLM2-135M
(recipes/meld/t2.yaml). Only the adapters, pooling and head are trained and
saved; the LLM is rebuilt from its pretrained weights when a run is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Sequence

import torch

from abhinaya.data.text import TextConfig, TextDataset, collate_text
from abhinaya.labels import LabelSet
from abhinaya.manifest import Utterance
from abhinaya.members.base import Member
from abhinaya.models.text_classifier import LLMTextClassifier, LLMTextClassifierConfig
from abhinaya.nn.losses import LossConfig
from abhinaya.recipes import Recipe


@dataclass
class T2Recipe(Recipe):
    member: str = "t2"
    loss: LossConfig = field(default_factory=lambda: LossConfig(name="vs"))
    text: TextConfig = field(default_factory=TextConfig)
    model: LLMTextClassifierConfig = field(default_factory=LLMTextClassifierConfig)


class T2Member(Member):
    name = "t2"
    recipe_class = T2Recipe
    inputs = ("text",)
    saves_partial_state = True

    recipe: T2Recipe

    @property
    def llm_name(self) -> str:
        return self.recipe.model.llm

    def build(self, label_set: LabelSet, pretrained: bool) -> tuple[LLMTextClassifier, T2Recipe]:
        config = replace(self.recipe.model, num_labels=len(label_set))
        model = LLMTextClassifier.from_pretrained_llm(config) if pretrained else LLMTextClassifier(config)
        return model, replace(self.recipe, model=model.config)

    def dataset(self, utterances: Sequence[Utterance], label_set: LabelSet | None, train: bool, on_error: str = "raise"):
        return TextDataset(utterances, label_set, self.tokenizer, self.recipe.text, on_error=on_error)

    def collate(self, items: list[dict]) -> dict[str, Any]:
        return collate_text(items, self.tokenizer.pad_token_id)

    def logits(self, model: LLMTextClassifier, batch: dict[str, Any]) -> torch.Tensor:
        return model(batch["input_ids"], batch["attention_mask"], batch.get("pool_mask"))

    def saved_state(self, model: LLMTextClassifier) -> dict[str, torch.Tensor]:
        return model.trainable_state_dict()
