"""ST1: the speech LLM of S2 given the speech and its transcript.

The transcript follows the speech tokens in the prompt (``<Transcript>`` and the text), as ABHINAYA does; training
utterances whose transcript exceeds 50 words are left out (reported). VS loss by default.

Paper scale: SALMONN-7B (recipes/msp_podcast/st1.yaml). Offline CPU scale: Whisper-base encoder and SmolLM2-135M with
transcripts from ``abhinaya transcribe`` (recipes/ravdess/st1.yaml).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from abhinaya.members.s2 import PromptConfig, S2Member, S2Recipe
from abhinaya.nn.losses import LossConfig


def _transcript_prompt() -> PromptConfig:
    return PromptConfig(
        template="USER: <Speech><SpeechHere></Speech> <Transcript> {text}\n{instruction}\nASSISTANT:",
        max_train_words=50,
    )


@dataclass
class ST1Recipe(S2Recipe):
    member: str = "st1"
    loss: LossConfig = field(default_factory=lambda: LossConfig(name="vs"))
    prompt: PromptConfig = field(default_factory=_transcript_prompt)


class ST1Member(S2Member):
    name = "st1"
    recipe_class = ST1Recipe
    inputs = ("audio", "text")

    recipe: ST1Recipe

    def __init__(self, recipe: ST1Recipe):
        if not recipe.prompt.uses_text:
            raise ValueError("ST1's prompt.template must hold {text} (the transcript); without it use member s2")
        super().__init__(recipe)
