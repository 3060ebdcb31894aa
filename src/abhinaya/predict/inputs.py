"""Prediction with a trained run folder.

Inputs may be manifests (``.jsonl``), audio files, or folders of audio files
(searched recursively). Unusable inputs — an unreadable audio file, a row
without the text a text member needs — are reported by name and skipped;
everything else is predicted, in batches formed by length. Audio longer than
the member's ``audio.max_eval_seconds`` is reported: only its beginning is used.

Speakers, for per-speaker normalisation (``predict.speaker_norm``), come from
one explicit source, ``predict.speaker_from`` or ``--speaker-from``:

- ``manifest`` (default): a manifest row's ``speaker``; audio files given
  directly or in folders have none;
- ``filename``: the speaker the file name carries under the naming of the
  run's corpus (RAVDESS actor, EmoDB speaker);
- ``folder``: the folder holding the audio file, refused where folder names
  read as emotion labels (data filed ``Angry/ Happy/``: grouping by them would
  remove the emotion itself);
- ``none``: no grouping.

An utterance without a speaker keeps its pooled vector, so its prediction does
not depend on which other inputs were given.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import torch

from abhinaya.audio import AUDIO_EXTENSIONS, find_audio_files
from abhinaya.labels import MSP_PODCAST_CODES, canonical_label
from abhinaya.manifest import Utterance, read_manifest
from abhinaya.predict.engine import predict_with_dimensions
from abhinaya.predict.speaker_norm import speaker_counts
from abhinaya.predictions import DimensionTable, PredictionTable, table_from_probs
from abhinaya.recipes import SPEAKER_SOURCES, PredictConfig, Recipe
from abhinaya.runs import REFERENCE_MEAN_FILE, LoadedRun, load_run, load_run_recipe


class InputError(ValueError):
    """An input path that is neither a manifest, an audio file nor a folder, or speakers that cannot be used."""


class NothingToPredict(InputError):
    """None of the inputs given could be used (each was reported by name)."""

    def __init__(self, message: str = "none of the inputs could be used (see the messages above)"):
        super().__init__(message)


def reads_as_emotion(name: str | None) -> bool:
    """Whether a speaker or folder name reads as an emotion label: a canonical name, a common synonym (Anger, Joy,
    Sadness, Fearful, Surprised, ...) or an MSP-Podcast letter, in any case."""
    if not name:
        return False
    key = str(name).strip()
    if key.upper() in MSP_PODCAST_CODES:
        return True
    try:
        canonical_label(key)
    except ValueError:
        return False
    return True


def gather_inputs(
    inputs: Iterable[str | Path],
    split: str | None = None,
    corpus: str | None = None,
    speaker_from: str = "manifest",
) -> list[Utterance]:
    """Utterances from manifests, audio files and folders, with speakers from ``speaker_from`` (see the module
    docstring; ``corpus``: the naming that ``filename`` reads). Ids must be unique across inputs (audio files are
    identified by their base name)."""
    if speaker_from not in SPEAKER_SOURCES:
        raise InputError(f"speakers from {speaker_from!r}: choose one of {', '.join(SPEAKER_SOURCES)}")
    utterances: list[Utterance] = []
    for item in inputs:
        path = Path(item)
        if not path.exists():
            raise InputError(f"{path}: no such file or folder")
        if path.is_dir():
            files = find_audio_files(path)
            if not files:
                raise InputError(f"{path}: no audio files ({', '.join(AUDIO_EXTENSIONS)}) in this folder")
            utterances += [Utterance(id=f.stem, audio=str(f)) for f in files]
        elif path.suffix.lower() in (".jsonl", ".json"):
            rows = [u for u in read_manifest(path) if split is None or u.split == split]
            if not rows:
                raise InputError(f"{path}: no utterances" + (f" in split {split!r}" if split else ""))
            utterances += rows
        elif path.suffix.lower() in AUDIO_EXTENSIONS:
            utterances.append(Utterance(id=path.stem, audio=str(path)))
        else:
            raise InputError(f"{path}: not a manifest (.jsonl), an audio file ({', '.join(AUDIO_EXTENSIONS)}) or a folder")
    seen: dict[str, str] = {}
    for utt in utterances:
        if utt.id in seen:
            raise InputError(f"id {utt.id!r} occurs twice among the inputs ({seen[utt.id]} and {utt.audio or utt.id})")
        seen[utt.id] = utt.audio or utt.id
    return assign_speakers(utterances, speaker_from, corpus)


def assign_speakers(utterances: list[Utterance], speaker_from: str, corpus: str | None) -> list[Utterance]:
    """``utterances`` with their speakers taken from ``speaker_from`` (manifest rows keep theirs under
    ``manifest``; audio files from paths have none there)."""
    if speaker_from == "manifest":
        return utterances
    if speaker_from == "none":
        return [replace(u, speaker=None) for u in utterances]
    if speaker_from == "filename":
        from abhinaya.corpora import speaker_from_file_name

        named = [
            replace(u, speaker=speaker_from_file_name(corpus, Path(u.audio).stem if u.audio else u.id))
            for u in utterances
        ]
        if not any(u.speaker is not None for u in named):
            raise InputError(
                f"--speaker-from filename: no input's file name carries a speaker under the naming of the run's "
                f"corpus ({corpus or 'none'}); give a manifest with a speaker field instead"
            )
        return named
    folders = [Path(u.audio).parent if u.audio else None for u in utterances]
    emotional = sorted({f.name for f in folders if f is not None and reads_as_emotion(f.name)})
    if emotional:
        raise InputError(
            f"--speaker-from folder: the folders {', '.join(emotional)} are named as emotions, and normalising per "
            "folder would remove the emotion itself; give speakers in a manifest or use --speaker-from none"
        )
    return [replace(u, speaker=str(f) if f is not None else None) for u, f in zip(utterances, folders)]


def predict_utterances(run: LoadedRun, utterances: Sequence[Utterance], **options) -> PredictionTable:
    """The prediction table of ``predict_utterances_and_dimensions`` (same options), without the dimensions."""
    return predict_utterances_and_dimensions(run, utterances, **options)[0]


def predict_utterances_and_dimensions(
    run: LoadedRun,
    utterances: Sequence[Utterance],
    *,
    batch_size: int | None = None,
    progress: bool = True,
    report: Callable[[str], None] = print,
    speaker_norm: bool | None = None,
) -> tuple[PredictionTable, DimensionTable | None]:
    """Predict ``utterances`` (speakers already assigned, see ``gather_inputs``) with a loaded run; unusable ones are
    reported and left out of the table, audio cut to its first ``max_eval_seconds`` is reported too.
    ``speaker_norm``: per-speaker normalisation on or off, whatever the run's ``predict.speaker_norm`` says (None:
    as the run). Speakers are moved to the run's reference mean (``LoadedRun.reference_mean``). Returns the table
    and, for a run whose model has a dimension head, the dimensions of the same rows from the same pass over the
    audio (None otherwise)."""
    dataset = run.member.dataset(utterances, None, train=False, on_error="skip")
    for problem in dataset.errors:
        report(f"skipped: {problem}")
    for note in dataset_notes(dataset):
        report(note)
    if len(dataset) == 0:
        raise NothingToPredict()
    batch = batch_size or run.recipe.train.eval_batch_size or 2 * run.recipe.train.batch_size
    config, reference = prediction_settings(run, [u.speaker for u in dataset.utterances], speaker_norm, report)
    predicted = predict_with_dimensions(
        run.member, run.model, dataset, batch, progress=progress, desc="predict", predict=config, reference=reference
    )
    table = table_from_probs(predicted.ids, predicted.probs, run.label_set, source=str(run.run_dir))
    return table, dimension_table(run, predicted.ids, predicted.dimensions)


def dimension_table(run: LoadedRun, ids: Sequence[str], values: np.ndarray | None) -> DimensionTable | None:
    """The dimensions of ``ids`` as a table named by the run's dimension head (None without one)."""
    if values is None:
        return None
    return DimensionTable(list(ids), run.member.dimension_names(), values)


def prediction_settings(
    run: LoadedRun,
    speakers: Sequence[str | None],
    speaker_norm: bool | None,
    report: Callable[[str], None],
) -> tuple[PredictConfig, torch.Tensor | None]:
    """The run's ``predict`` settings with ``speaker_norm`` applied (None: as the run), and the reference mean that
    per-speaker normalisation needs (None without it). ``speakers``: one per utterance to predict; said in one line
    (how many speakers, how many utterances each), and normalisation is turned off with a warning where speakers are
    named as emotions."""
    config = run.recipe.predict
    if speaker_norm is not None and speaker_norm != config.speaker_norm:
        config = replace(config, speaker_norm=speaker_norm)
    if not config.speaker_norm:
        return config, None
    reference = reference_of(run, report)
    emotional = sorted({s for s in speakers if reads_as_emotion(s)})
    if emotional:
        report(
            f"warning: the speakers {', '.join(emotional)} are named as emotions; per-speaker normalisation is "
            "off, as it would remove the emotion itself"
        )
        return replace(config, speaker_norm=False), reference
    counts = speaker_counts(speakers)
    alone = len(speakers) - sum(counts.values())
    if not counts:
        report(
            "per-speaker normalisation: no input has a speaker (see --speaker-from), so every utterance is "
            "predicted on its own"
        )
    else:
        report(
            f"per-speaker normalisation: {len(counts)} speaker(s), {min(counts.values())}-"
            f"{max(counts.values())} utterances each"
            + (f"; {alone} utterance(s) without a speaker are predicted on their own" if alone else "")
        )
    return config, reference


def reference_of(run: LoadedRun, report: Callable[[str], None]) -> torch.Tensor:
    """The mean that per-speaker normalisation moves speakers to: the run's reference mean, or, for a run trained
    before it was saved, the head's running mean (with a note)."""
    try:
        running = run.member.pooled_mean(run.model)
    except ValueError as err:
        raise InputError(f"{run.run_dir}: {err}") from None
    if run.reference_mean is not None:
        return run.reference_mean
    report(f"note: {run.run_dir} has no {REFERENCE_MEAN_FILE} (trained before it was saved); speakers are moved to "
           "the head's running mean instead")
    return running


def dataset_notes(dataset) -> list[str]:
    """What a dataset reports about inputs it uses only in part (``notes``: audio cut to its first seconds)."""
    return list(getattr(dataset, "notes", None) or [])  # text datasets cut nothing and have none


def inputs_for_run(
    run_dir: str | Path, inputs: Iterable[str | Path], *, split: str | None, speaker_from: str | None
) -> tuple[Recipe, str, list[Utterance]]:
    """``(recipe, speaker source, utterances)``: the inputs gathered and checked from the run's recipe alone, before
    any model is loaded (that takes seconds for large models; a mistyped path should not)."""
    recipe = load_run_recipe(run_dir)
    source = speaker_from or recipe.predict.speaker_from
    return recipe, source, gather_inputs(inputs, split=split, corpus=recipe.data.corpus, speaker_from=source)


def default_device() -> str:
    """CUDA when there is a GPU (in a launch of several processes, the one of this process's ``LOCAL_RANK``), else
    the CPU."""
    if not torch.cuda.is_available():
        return "cpu"
    local = os.environ.get("LOCAL_RANK")
    return f"cuda:{int(local) % torch.cuda.device_count()}" if local and local.isdigit() else "cuda"


def load_run_for_prediction(run_dir: str | Path, device: str | None, speaker_from: str) -> LoadedRun:
    """The run loaded on ``device`` (None: CUDA when available), its speakers taken from ``speaker_from``."""
    run = load_run(run_dir, device=device or default_device())
    if speaker_from != run.recipe.predict.speaker_from:
        run.recipe = replace(run.recipe, predict=replace(run.recipe.predict, speaker_from=speaker_from))
    return run


def predict(
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
) -> PredictionTable:
    """Predict ``inputs`` with the run in ``run_dir``. ``speaker_from``: where speakers come from (None: the run's
    ``predict.speaker_from``); ``speaker_norm``: as in ``predict_utterances``."""
    recipe, source, utterances = inputs_for_run(run_dir, inputs, split=split, speaker_from=speaker_from)
    run = load_run_for_prediction(run_dir, device, source)
    return predict_utterances(
        run, utterances, batch_size=batch_size, progress=progress, report=report, speaker_norm=speaker_norm
    )
