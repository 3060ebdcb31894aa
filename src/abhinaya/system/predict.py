"""Prediction with a system run folder: every member, then the ensemble the run chose.

``abhinaya predict DIR INPUT...`` on a folder written by ``abhinaya run`` gathers the inputs once (same contract
and errors as a member run), transcribes them when a member reads text and they have none, runs each member
(its model loaded once, batched, then freed) and combines the members' tables with the fitted ensemble of
``DIR/ensemble.json``. With segmentation (``predict_system_recordings``, ``--segment``), long recordings are cut
into utterances first (``predict/long_audio.py``) and every member predicts the same segments.
"""

from __future__ import annotations

import gc
import json
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Callable, Iterable, Sequence

from abhinaya.manifest import Utterance, read_manifest, write_manifest
from abhinaya.predictions import PredictionTable, write_predictions
from abhinaya.recipes import from_dict, read_yaml
from abhinaya.system.recipe import SystemRecipe
from abhinaya.system.runner import (
    ENSEMBLE_FILE,
    MEMBERS_FILE,
    SYSTEM_FILE,
    SystemRunError,
    apply_ensemble,
)


def is_system_run(path: str | Path) -> bool:
    """Whether ``path`` is a run folder written by ``abhinaya run``."""
    return (Path(path) / SYSTEM_FILE).is_file()


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise SystemRunError(f"{path.parent}: the system run is not finished ({path.name} is missing); "
                             "finish it with abhinaya run")
    return json.loads(path.read_text(encoding="utf-8"))


def _transcribe(utterances: list[Utterance], recipe: SystemRecipe, progress: bool, report) -> list[Utterance]:
    """``utterances`` with Whisper transcripts where they have none (every one with ``transcribe.overwrite``),
    as the text members were trained. An input whose audio cannot be read is reported once here and left out, rather
    than by every member in turn."""
    from abhinaya.asr.transcribe import TranscriptionConfig, transcribe_manifest
    from abhinaya.audio import AudioError, load_audio
    from abhinaya.recipes import to_dict

    spec = recipe.transcribe
    todo = [u for u in utterances if spec.overwrite or not (u.text and u.text.strip())]
    if not todo:
        return utterances
    config = TranscriptionConfig(**{k: v for k, v in to_dict(spec).items() if k != "overwrite"})
    report(f"transcribing {len(todo)} input(s) with {config.model} for the members that read text")
    with tempfile.TemporaryDirectory(prefix="abhinaya-transcripts-") as tmp:
        manifest = write_manifest(Path(tmp) / "inputs.jsonl", [replace(u, text=None) for u in todo])
        summary = transcribe_manifest(manifest, manifest, config, progress=progress, report=lambda message: None)
        texts = {u.id: u.text for u in read_manifest(manifest)}
    report(summary.line())
    unreadable = set()
    for utt in utterances:
        if utt.id in summary.failures:
            try:  # only the few that failed are decoded again, to tell bad audio from a failed transcription
                load_audio(utt.audio)
                report(f"failed: {utt.id}: {summary.failures[utt.id]} (the audio members still predict it)")
            except AudioError as err:
                report(f"skipped: {err}")
                unreadable.add(utt.id)
    return [replace(u, text=texts[u.id]) if u.id in texts else u for u in utterances if u.id not in unreadable]


def predict_system(
    run_dir: str | Path,
    inputs: Iterable[str | Path],
    *,
    split: str | None = None,
    batch_size: int | None = None,
    device: str | None = None,
    progress: bool = True,
    report: Callable[[str], None] = print,
    speaker_norm: bool | None = None,
    speaker_from: str | None = None,
    members_dir: str | Path | None = None,
) -> PredictionTable:
    """Predict ``inputs`` with the system in ``run_dir``: each member, then the chosen ensemble. ``members_dir``:
    also write each member's own table there as ``<member>.csv``. No segmentation (long files are cut to their
    beginning); see ``predict_system_recordings``."""
    return predict_system_recordings(
        run_dir, inputs, split=split, batch_size=batch_size, device=device, progress=progress, report=report,
        speaker_norm=speaker_norm, speaker_from=speaker_from, members_dir=members_dir, long_audio=None,
    ).table


class SystemPredictor:
    """A system run folder as ``abhinaya predict`` drives it: its recipes read at once (so the inputs are checked
    before any model loads), then ``predict_block`` on some inputs: segment the long recordings, transcribe where a
    member reads text, run each member (loaded, batched, freed) and apply the fitted ensemble."""

    default_block_size = 1024  # every member is loaded once per block

    def __init__(
        self,
        run_dir: str | Path,
        *,
        batch_size: int | None = None,
        device: str | None = None,
        report: Callable[[str], None] = print,
        speaker_norm: bool | None = None,
        speaker_from: str | None = None,
        long_audio=None,
        keep_members: bool = False,
        corrupt: str | None = None,
    ):
        from abhinaya.evaluation.combiners import FittedEnsemble
        from abhinaya.predict.stream import once
        from abhinaya.runs import CONFIG_FILE, recipe_from_dict

        self.run_dir = Path(run_dir)
        self.recipe = from_dict(SystemRecipe, read_yaml(self.run_dir / SYSTEM_FILE))
        members = _read_json(self.run_dir / MEMBERS_FILE)
        record = _read_json(self.run_dir / ENSEMBLE_FILE)
        self.ensemble = FittedEnsemble.from_dict(record["system"])
        self.chosen = record["chosen"]
        self.folders: dict[str, Path] = {}
        for name in self.ensemble.members:
            folder = Path(members[name]["run"])
            self.folders[name] = folder if folder.is_absolute() else self.run_dir / folder
        self.recipes = {name: recipe_from_dict(read_yaml(folder / CONFIG_FILE), str(folder / CONFIG_FILE))
                        for name, folder in self.folders.items()}
        self.batch_size = batch_size
        self.device = device
        self.report = once(report)  # block after block, the same note is said once
        self.speaker_norm = speaker_norm
        self.explicit_speakers = speaker_from
        self.speaker_from = speaker_from or next(iter(self.recipes.values())).predict.speaker_from
        self.long_audio = long_audio if long_audio is not None and long_audio.mode != "off" else None
        self.keep_members = keep_members
        self.corrupt = corrupt
        self.corruption = {}  # member name -> steps, checked before any model loads
        if corrupt:
            from abhinaya.predict.predictor import corruption_steps

            hearing = {name: r for name, r in self.recipes.items() if getattr(r, "audio", None) is not None}
            if not hearing:
                corruption_steps(next(iter(self.recipes.values())), corrupt)  # says why
            self.corruption = {name: corruption_steps(r, corrupt) for name, r in hearing.items()}

    @property
    def groups_speakers(self) -> bool:
        """Whether a speaker's inputs must be predicted together (some member normalises per speaker)."""
        if self.speaker_from == "none":
            return False
        if self.speaker_norm is not None:
            return self.speaker_norm
        return any(r.predict.speaker_norm for r in self.recipes.values())

    def fingerprint(self) -> dict:
        from abhinaya.recipes import to_dict

        return {
            "run": str(self.run_dir.resolve()),
            "speaker_from": self.speaker_from,
            "speaker_norm": self.speaker_norm,
            "long_audio": None if self.long_audio is None else to_dict(self.long_audio),
            "members": self.keep_members,
            "corrupt": self.corrupt,
        }

    def gather(self, inputs: Iterable[str | Path], split: str | None = None) -> list[Utterance]:
        """The inputs, checked and with their speakers, as for a member run."""
        from abhinaya.predict.inputs import gather_inputs

        return gather_inputs(inputs, split=split, corpus=self.recipe.data.corpus, speaker_from=self.speaker_from)

    def predict_block(self, utterances: Sequence[Utterance], progress: bool = True):
        """Every member on ``utterances``, then the ensemble: a ``predict.stream.BlockResult`` (each member's table
        in ``members`` with ``keep_members``)."""
        from abhinaya.members import get_member
        from abhinaya.predict.inputs import NothingToPredict, default_device, predict_utterances
        from abhinaya.predict.long_audio import model_input_limits, predict_chunked, segment_inputs, whole_recordings
        from abhinaya.predict.stream import BlockResult
        from abhinaya.runs import load_run

        report = self.report
        utterances = list(utterances)
        first = next(iter(self.recipes.values()))
        # Segments are cut for the members that hear audio: at the rate of the first, no longer than the shortest
        # input any of them takes.
        limits = [model_input_limits(r) for r in self.recipes.values() if "audio" in get_member(r.member).inputs]
        limits = limits or [model_input_limits(first)]
        max_seconds = min(seconds for _, seconds in limits)
        with tempfile.TemporaryDirectory(prefix="abhinaya-segments-") as segment_folder:
            segmented = None
            if self.long_audio is not None:
                segmented = segment_inputs(utterances, self.long_audio, segment_folder, sample_rate=limits[0][0],
                                           max_seconds=max_seconds, report=report)
                if segmented is not None:
                    if not segmented.utterances:
                        raise NothingToPredict()
                    utterances = segmented.utterances
            if any("text" in get_member(r.member).inputs for r in self.recipes.values()):
                utterances = _transcribe(utterances, self.recipe, progress, report)
                if not utterances:
                    raise NothingToPredict()
            device = self.device or default_device()
            tables: dict[str, PredictionTable] = {}
            for position, (name, folder) in enumerate(self.folders.items(), start=1):
                report(f"[{position}/{len(self.folders)}] {name}: {folder}")
                run = load_run(folder, device=device)
                if name in self.corruption:
                    from abhinaya.predict.predictor import with_corruption

                    with_corruption(run, self.corruption[name])
                if self.explicit_speakers is not None:
                    run.recipe = replace(run.recipe, predict=replace(run.recipe.predict,
                                                                     speaker_from=self.explicit_speakers))
                member_report = lambda message, name=name: report(f"  {name}: {message}")  # noqa: E731
                options = dict(batch_size=self.batch_size, progress=progress, report=member_report,
                               speaker_norm=self.speaker_norm)
                if segmented is None:
                    table = predict_utterances(run, utterances, **options)
                else:
                    table = predict_chunked(run, utterances, chunk_seconds=self.long_audio.chunk_seconds, **options)
                table.source = name
                tables[name] = table
                del run
                gc.collect()
        combined = apply_ensemble(self.ensemble, tables, report, "input")
        combined.source = self.chosen
        members = tables if self.keep_members else {}
        if segmented is not None:
            return BlockResult(combined, segmented.recordings, segmented=True, members=members)
        recordings = None if self.long_audio is None else whole_recordings(utterances, max_seconds)
        return BlockResult(combined, recordings, segmented=False, members=members)


def predict_system_recordings(
    run_dir: str | Path,
    inputs: Iterable[str | Path],
    *,
    split: str | None = None,
    batch_size: int | None = None,
    device: str | None = None,
    progress: bool = True,
    report: Callable[[str], None] = print,
    speaker_norm: bool | None = None,
    speaker_from: str | None = None,
    members_dir: str | Path | None = None,
    long_audio=None,
):
    """As ``predict_system``, with long recordings segmented first (``long_audio``: a
    ``predict.long_audio.LongAudioConfig``; None or mode ``off``: no segmentation), all inputs in one block
    (``predict/stream.py`` takes them a block at a time). Returns a ``RecordingPredictions`` (its ``recordings`` None
    when nothing was segmented, and its table then exactly ``predict_system``'s)."""
    from abhinaya.predict.long_audio import RecordingPredictions

    predictor = SystemPredictor(run_dir, batch_size=batch_size, device=device, report=report,
                                speaker_norm=speaker_norm, speaker_from=speaker_from, long_audio=long_audio,
                                keep_members=members_dir is not None)
    utterances = predictor.gather(inputs, split=split)  # checked before any model is loaded
    result = predictor.predict_block(utterances, progress=progress)
    for name, table in result.members.items():
        write_predictions(Path(members_dir) / f"{name}.csv", table)
    return RecordingPredictions(result.table, result.recordings if result.segmented else None)


__all__ = ["SystemPredictor", "is_system_run", "predict_system", "predict_system_recordings"]
