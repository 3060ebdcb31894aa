"""A member's run folder as ``abhinaya predict`` drives it: loaded once, then given the inputs a block at a time.

``MemberPredictor.predict_block`` is everything a member does with some inputs: segment the long recordings among
them (``long_audio.py``), predict, and describe the recordings. ``predict/stream.py`` calls it block after block;
``predict_recordings`` calls it once with every input.
"""

from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Callable, Sequence

from abhinaya.data.corruption import describe_steps
from abhinaya.manifest import Utterance
from abhinaya.members import get_member
from abhinaya.predict.inputs import (
    InputError,
    NothingToPredict,
    load_run_for_prediction,
    predict_utterances,
    predict_utterances_and_dimensions,
)
from abhinaya.predict.long_audio import (
    LongAudioConfig,
    long_inputs,
    model_input_limits,
    predict_chunked_and_dimensions,
    segment_inputs,
    whole_recordings,
)
from abhinaya.predict.stream import BlockResult, once
from abhinaya.recipes import Recipe, to_dict


class MemberPredictor:
    """A member's run loaded for prediction. ``long_audio``: segmentation (None or mode ``off``: none, long files
    keep their beginning); ``speaker_norm``: None keeps the run's setting."""

    default_block_size = 256

    def __init__(
        self,
        run_dir: str | Path,
        recipe: Recipe,
        speaker_from: str,
        *,
        long_audio: LongAudioConfig | None = None,
        device: str | None = None,
        batch_size: int | None = None,
        speaker_norm: bool | None = None,
        report: Callable[[str], None] = print,
        corrupt: str | None = None,
    ):
        self.run_dir = Path(run_dir)
        self.recipe = recipe
        self.speaker_from = speaker_from
        self.long_audio = long_audio if long_audio is not None and long_audio.mode != "off" else None
        self.batch_size = batch_size
        self.speaker_norm = speaker_norm
        self.report = once(report)  # block after block, the same note is said once
        self.reads_text = "text" in get_member(recipe.member).inputs
        self.sample_rate, self.max_seconds = model_input_limits(recipe)
        self._noted_text = False
        self.corrupt = corrupt
        steps = corruption_steps(recipe, corrupt)  # checked before the model loads
        self.run = load_run_for_prediction(run_dir, device, speaker_from)
        if steps:
            with_corruption(self.run, steps)
            self.report(f"corrupting every input: {describe_steps(steps)}")
        self.label_set = self.run.label_set

    @property
    def groups_speakers(self) -> bool:
        """Whether a speaker's inputs must be predicted together (per-speaker normalisation is on)."""
        norm = self.run.recipe.predict.speaker_norm if self.speaker_norm is None else self.speaker_norm
        return bool(norm) and self.speaker_from != "none"

    def fingerprint(self) -> dict:
        """What decides the predictions besides the inputs (part files of other settings are not resumed)."""
        return {
            "run": str(self.run_dir.resolve()),
            "speaker_from": self.speaker_from,
            "speaker_norm": self.speaker_norm,
            "long_audio": None if self.long_audio is None else to_dict(self.long_audio),
            "corrupt": self.corrupt,
        }

    def predict_block(self, utterances: Sequence[Utterance], progress: bool = True) -> BlockResult:
        """Predict ``utterances``; a ``NothingToPredict`` when none could be used (each reported by name)."""
        options = dict(batch_size=self.batch_size, progress=progress, report=self.report,
                       speaker_norm=self.speaker_norm)
        if self.long_audio is None:
            table, dimensions = predict_utterances_and_dimensions(self.run, utterances, **options)
            return BlockResult(table, dimensions=dimensions)
        if self.reads_text:
            if not self._noted_text and (self.long_audio.mode == "always"
                                         or long_inputs(utterances, self.max_seconds)):
                self.report(f"note: {self.recipe.member} reads transcripts, which segments do not have; long files "
                            "are predicted whole (a system run transcribes the segments)")
                self._noted_text = True
            return BlockResult(predict_utterances(self.run, utterances, **options))
        with tempfile.TemporaryDirectory(prefix="abhinaya-segments-") as folder:
            segmented = segment_inputs(utterances, self.long_audio, folder, sample_rate=self.sample_rate,
                                       max_seconds=self.max_seconds, report=self.report)
            if segmented is None:
                table, dimensions = predict_utterances_and_dimensions(self.run, utterances, **options)
                return BlockResult(table, whole_recordings(utterances, self.max_seconds), segmented=False,
                                   dimensions=dimensions)
            if not segmented.utterances:
                raise NothingToPredict()
            table, dimensions = predict_chunked_and_dimensions(
                self.run, segmented.utterances, chunk_seconds=self.long_audio.chunk_seconds, **options)
            return BlockResult(table, segmented.recordings, segmented=True, dimensions=dimensions)


def corruption_steps(recipe: Recipe, spec: str | None) -> list:
    """The steps of ``--corrupt SPEC`` for a member's recipe (an ``InputError`` for a member that hears no audio or
    a spec that does not parse)."""
    if not spec:
        return []
    from abhinaya.data.corruption import parse_corruption

    if getattr(recipe, "audio", None) is None:
        raise InputError(f"--corrupt changes audio, and {recipe.member} reads text only")
    try:
        return parse_corruption(spec)
    except ValueError as err:
        raise InputError(f"--corrupt: {err}") from None


def with_corruption(run, steps: list) -> None:
    """``run`` (loaded) with ``steps`` applied to every waveform it is given (``audio.corrupt``)."""
    audio = replace(run.recipe.audio, corrupt=list(steps))
    run.recipe = replace(run.recipe, audio=audio)
    member_recipe = replace(run.member.recipe, audio=audio)
    model = getattr(member_recipe, "model", None)
    if getattr(model, "feature_cache", None) is not None:  # cached features are of the clean audio
        member_recipe = replace(member_recipe, model=replace(model, feature_cache=None))
    run.member.recipe = member_recipe


__all__ = ["MemberPredictor", "corruption_steps", "with_corruption"]
