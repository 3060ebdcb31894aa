"""S2: a SALMONN-style speech LLM given the speech only; the best single member of ABHINAYA.

Whisper (+ BEATs) -> window Q-Former -> projection -> LLM with LoRA, prompted with SALMONN's template; the last hidden
layer is pooled (masked attentive statistics) into an MLP head, or, with ``model.output: generative``, each class name
is scored as the answer. Weighted focal loss by default.

Paper scale: SALMONN-13B (recipes/msp_podcast/s2.yaml). Offline CPU scale: the Whisper-base encoder and SmolLM2-135M,
no BEATs (recipes/ravdess/s2.yaml). ST1 (``members/st1.py``) is this member with the transcript in the prompt.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from typing import Any, Sequence

import torch

from abhinaya.data.audio import AudioConfig, AudioDataset, collate_audio
from abhinaya.data.text import TextError, pad_token_ids, transcript_of
from abhinaya.labels import LabelSet
from abhinaya.manifest import Utterance
from abhinaya.members.base import Member, unwrap
from abhinaya.models.speech_llm import SpeechLLM, SpeechLLMConfig
from abhinaya.nn.losses import LossConfig
from abhinaya.recipes import Recipe, TrainConfig

SPEECH_PLACEHOLDER = "<SpeechHere>"


@dataclass
class PromptConfig:
    """The text around the speech tokens.

    - ``template``: SALMONN's prompt; ``<SpeechHere>`` is where the speech tokens go, ``{instruction}`` one of
      ``instructions`` and ``{text}`` the transcript (ST1).
    - ``instructions``: in training one is drawn per utterance and epoch; at inference the first is used. The
      defaults are SALMONN's two emotion-recognition instructions.
    - ``max_text_tokens``: transcripts are cut to this many tokens.
    - ``max_train_words``: training utterances whose transcript has more words are left out (reported); None keeps all.
    - ``label_words``: generative output: the answer word of each class (label name -> word); default the name.
    """

    template: str = "USER: <Speech><SpeechHere></Speech> {instruction}\nASSISTANT:"
    instructions: list[str] = field(
        default_factory=lambda: [
            "Describe the emotion of the speaker in one word.",
            "Use one word to describe the speaker's emotion.",
        ]
    )
    max_text_tokens: int = 128
    max_train_words: int | None = None
    label_words: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.template.count(SPEECH_PLACEHOLDER) != 1:
            raise ValueError(f"prompt.template must hold {SPEECH_PLACEHOLDER} exactly once: {self.template!r}")
        if not self.instructions:
            raise ValueError("prompt.instructions must hold at least one instruction")

    @property
    def uses_text(self) -> bool:
        return "{text}" in self.template


@dataclass
class S2TrainConfig(TrainConfig):
    """The shared training settings, plus ``connector_lr``: learning rate of the connector between the speech encoders
    and the LLM (LayerNorms, Q-Former, projection); null = ``head_lr``. LoRA trains at ``encoder_lr``, the pooling
    and classifier head at ``head_lr``.

    The connector's weights start small (the projection at the scale of the LLM's token embeddings, a few
    thousandths), and Adam moves every weight by about the learning rate per step whatever its gradient, so a rate
    made for a new head (1e-3) scrambles a connector trained from scratch within a few steps; it needs its own."""

    connector_lr: float | None = None

    def __post_init__(self):
        super().__post_init__()
        if self.connector_lr is not None and self.connector_lr < 0:
            raise ValueError(f"connector_lr must be >= 0, got {self.connector_lr}")


@dataclass
class S2Recipe(Recipe):
    member: str = "s2"
    train: S2TrainConfig = field(default_factory=S2TrainConfig)
    loss: LossConfig = field(default_factory=lambda: LossConfig(name="weighted_focal"))
    # No crop on the waveform: the model crops the cached encoder output (model.train_crop_seconds).
    audio: AudioConfig = field(default_factory=lambda: AudioConfig(train_crop_seconds=None))
    prompt: PromptConfig = field(default_factory=PromptConfig)
    model: SpeechLLMConfig = field(default_factory=SpeechLLMConfig)


class PromptedAudioDataset:
    """An ``AudioDataset`` whose items also carry the prompt's token ids around the speech."""

    def __init__(self, audio: AudioDataset, prompt: PromptConfig, tokenizer, train: bool, seed: int):
        self.audio = audio
        self.prompt = prompt
        self.tokenizer = tokenizer
        self.train = train
        self.seed = seed
        self.epoch = 0
        self.errors = list(audio.errors)
        before, after = prompt.template.split(SPEECH_PLACEHOLDER)
        self._before, self._after = before, after

    utterances = property(lambda self: self.audio.utterances)
    ids = property(lambda self: self.audio.ids)
    labels = property(lambda self: self.audio.labels)
    lengths = property(lambda self: self.audio.lengths)
    notes = property(lambda self: self.audio.notes)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        self.audio.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.audio)

    def _instruction(self, index: int) -> str:
        choices = self.prompt.instructions
        if not self.train or len(choices) == 1:
            return choices[0]
        return random.Random(f"{self.seed}:{self.epoch}:{index}").choice(choices)

    def prompt_ids(self, utt: Utterance, index: int) -> tuple[list[int], list[int], list[int]]:
        """Token ids before and after the speech tokens, and a 0/1 flag per suffix token (1 = transcript)."""
        fields = {"instruction": self._instruction(index), "text": "{text}"}
        before = self._before.format(**fields)
        after = self._after.format(**fields)
        prefix = self.tokenizer(before, add_special_tokens=True)["input_ids"]
        if "{text}" not in after:
            suffix = self.tokenizer(after, add_special_tokens=False)["input_ids"]
            return prefix, suffix, [0] * len(suffix)
        head, tail = after.split("{text}", 1)
        text = self.tokenizer(transcript_of(utt), add_special_tokens=False)["input_ids"][: self.prompt.max_text_tokens]
        head_ids = self.tokenizer(head, add_special_tokens=False)["input_ids"]
        tail_ids = self.tokenizer(tail, add_special_tokens=False)["input_ids"]
        return prefix, head_ids + text + tail_ids, [0] * len(head_ids) + [1] * len(text) + [0] * len(tail_ids)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = self.audio[index]
        item["prefix_ids"], item["suffix_ids"], item["suffix_content"] = self.prompt_ids(
            self.audio.utterances[index], index
        )
        return item


class S2Member(Member):
    name = "s2"
    recipe_class = S2Recipe
    inputs = ("audio",)
    saves_partial_state = True

    recipe: S2Recipe

    @property
    def llm_name(self) -> str:
        return self.recipe.model.llm

    def build(self, label_set: LabelSet, pretrained: bool) -> tuple[SpeechLLM, S2Recipe]:
        config = replace(self.recipe.model, num_labels=len(label_set))
        if config.feature_cache == "auto":
            from abhinaya.weights.feature_cache import default_feature_cache_dir

            config = replace(config, feature_cache=str(default_feature_cache_dir()))
        model = SpeechLLM.from_pretrained(config) if pretrained else SpeechLLM(config)
        if config.output == "generative":
            words = [self.recipe.prompt.label_words.get(name, name) for name in label_set.labels]
            model.set_label_tokens([self.tokenizer(" " + w, add_special_tokens=False)["input_ids"] for w in words])
        return model, replace(self.recipe, model=model.config)

    def _usable(self, utterances: Sequence[Utterance], train: bool) -> tuple[list[Utterance], list[str]]:
        """Utterances this member can use, and why the others cannot (ST1 needs transcripts)."""
        prompt = self.recipe.prompt
        if not prompt.uses_text:
            return list(utterances), []
        kept, errors = [], []
        for utt in utterances:
            try:
                text = transcript_of(utt)
            except TextError as err:
                errors.append(str(err))
                continue
            if train and prompt.max_train_words is not None and len(text.split()) > prompt.max_train_words:
                errors.append(
                    f"{utt.id}: transcript of {len(text.split())} words exceeds prompt.max_train_words="
                    f"{prompt.max_train_words}; left out of training"
                )
            else:
                kept.append(utt)
        return kept, errors

    def dataset(self, utterances: Sequence[Utterance], label_set: LabelSet | None, train: bool, on_error: str = "raise"):
        kept, problems = self._usable(utterances, train)
        if problems and on_error == "raise":
            raise ValueError(problems[0])
        audio = AudioDataset(kept, label_set, self.recipe.audio, train=train, seed=self.recipe.train.seed, on_error=on_error)
        data = PromptedAudioDataset(audio, self.recipe.prompt, self.tokenizer, train, self.recipe.train.seed)
        data.errors = problems + data.errors
        return data

    def collate(self, items: list[dict]) -> dict[str, Any]:
        batch = collate_audio(items)
        pad = self.tokenizer.pad_token_id
        for part in ("prefix", "suffix"):
            rows = [item[f"{part}_ids"] for item in items]
            batch[f"{part}_ids"] = pad_token_ids(rows, pad)[0]
            batch[f"{part}_lengths"] = torch.tensor([len(row) for row in rows], dtype=torch.long)
        batch["suffix_content"] = pad_token_ids([item["suffix_content"] for item in items], 0)[0].bool()
        return batch

    def param_groups(self, model: torch.nn.Module) -> list[dict[str, Any]]:
        train = self.recipe.train
        inner = unwrap(model)
        return inner.param_groups(train.encoder_lr, train.head_lr, train.weight_decay, connector_lr=train.connector_lr)

    def logits(self, model: SpeechLLM, batch: dict[str, Any]) -> torch.Tensor:
        return model(*(batch[k] for k in _MODEL_INPUTS))

    def embed(self, model: SpeechLLM, batch: dict[str, Any]) -> torch.Tensor:
        return unwrap(model).embed(*(batch[k] for k in _MODEL_INPUTS))

    def classify(self, model: SpeechLLM, embeddings: torch.Tensor) -> torch.Tensor:
        return unwrap(model).classify(embeddings)

    def pooled_mean(self, model: SpeechLLM) -> torch.Tensor:
        mean = unwrap(model).pooled_mean()
        if mean is None:
            config = unwrap(model).config
            raise ValueError(
                "predict.speaker_norm needs the training mean of the pooled vector, which model.head_norm 'running' "
                f"or 'batch' keeps with model.output 'classifier'; this model has output {config.output!r}, "
                f"head_norm {config.head_norm!r}"
            )
        return mean

    def saved_state(self, model: SpeechLLM) -> dict[str, torch.Tensor]:
        return model.trainable_state_dict()


# The batch entries a SpeechLLM takes, in the order of its forward / embed arguments.
_MODEL_INPUTS = (
    "waveforms", "lengths", "prefix_ids", "prefix_lengths", "suffix_ids", "suffix_lengths", "suffix_content"
)
