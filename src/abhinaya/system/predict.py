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
from typing import Callable, Iterable

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
    ``predict.long_audio.LongAudioConfig``; None or mode ``off``: no segmentation): the segments are cut once,
    transcribed where a member reads text, and every member predicts them, a bounded amount of audio at a time.
    Returns a ``RecordingPredictions`` (its ``recordings`` None when nothing was segmented, and its table then
    exactly ``predict_system``'s)."""
    import torch

    from abhinaya.evaluation.combiners import FittedEnsemble
    from abhinaya.members import get_member
    from abhinaya.predict.inputs import InputError, gather_inputs, predict_utterances
    from abhinaya.predict.long_audio import (
        RecordingPredictions,
        model_input_limits,
        predict_chunked,
        segment_inputs,
    )
    from abhinaya.runs import CONFIG_FILE, load_run, recipe_from_dict

    run_dir = Path(run_dir)
    recipe = from_dict(SystemRecipe, read_yaml(run_dir / SYSTEM_FILE))
    members = _read_json(run_dir / MEMBERS_FILE)
    record = _read_json(run_dir / ENSEMBLE_FILE)
    ensemble = FittedEnsemble.from_dict(record["system"])
    folders = {}
    for name in ensemble.members:
        folder = Path(members[name]["run"])
        folders[name] = folder if folder.is_absolute() else run_dir / folder
    recipes = {name: recipe_from_dict(read_yaml(folder / CONFIG_FILE), str(folder / CONFIG_FILE))
               for name, folder in folders.items()}
    # The inputs are checked before any model is loaded.
    first = next(iter(recipes.values()))
    source = speaker_from or first.predict.speaker_from
    utterances = gather_inputs(inputs, split=split, corpus=recipe.data.corpus, speaker_from=source)
    with tempfile.TemporaryDirectory(prefix="abhinaya-segments-") as segment_folder:
        segmented = None
        if long_audio is not None:
            # Segments are cut for the members that hear audio: at the rate of the first, no longer than the shortest
            # input any of them takes.
            limits = [model_input_limits(r) for r in recipes.values() if "audio" in get_member(r.member).inputs]
            limits = limits or [model_input_limits(first)]
            segmented = segment_inputs(utterances, long_audio, segment_folder, sample_rate=limits[0][0],
                                       max_seconds=min(seconds for _, seconds in limits), report=report)
            if segmented is not None:
                if not segmented.utterances:
                    raise InputError("none of the inputs could be used (see the messages above)")
                utterances = segmented.utterances
        if any("text" in get_member(r.member).inputs for r in recipes.values()):
            utterances = _transcribe(utterances, recipe, progress, report)
            if not utterances:
                raise InputError("none of the inputs could be used (see the messages above)")
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        tables: dict[str, PredictionTable] = {}
        for position, (name, folder) in enumerate(folders.items(), start=1):
            report(f"[{position}/{len(folders)}] {name}: {folder}")
            run = load_run(folder, device=device)
            if speaker_from is not None:
                run.recipe = replace(run.recipe, predict=replace(run.recipe.predict, speaker_from=speaker_from))
            member_report = lambda message, name=name: report(f"  {name}: {message}")  # noqa: E731
            if segmented is None:
                table = predict_utterances(run, utterances, batch_size=batch_size, progress=progress,
                                           report=member_report, speaker_norm=speaker_norm)
            else:
                table = predict_chunked(run, utterances, chunk_seconds=long_audio.chunk_seconds,
                                        batch_size=batch_size, progress=progress, report=member_report,
                                        speaker_norm=speaker_norm)
            table.source = name
            tables[name] = table
            if members_dir is not None:
                write_predictions(Path(members_dir) / f"{name}.csv", table)
            del run
            gc.collect()
    combined = apply_ensemble(ensemble, tables, report, "input")
    combined.source = record["chosen"]
    return RecordingPredictions(combined, None if segmented is None else segmented.recordings)


__all__ = ["is_system_run", "predict_system", "predict_system_recordings"]
