"""Prediction with a trained run folder.

Inputs may be manifests (``.jsonl``), audio files, or folders of audio files
(searched recursively). Unusable inputs — an unreadable audio file, a row
without the text a text member needs — are reported by name and skipped;
everything else is predicted, in batches formed by length.

Speakers, for a run with ``predict.speaker_norm``: a manifest row's ``speaker``;
for an audio file, the speaker its name carries where it follows the naming of
the run's corpus (RAVDESS, EmoDB), else the folder it was found in; an audio
file given by itself with no speaker in its name has none (the training mean is
used for it).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Callable, Iterable, Sequence

import torch

from abhinaya.audio import AUDIO_EXTENSIONS, find_audio_files
from abhinaya.manifest import Utterance, read_manifest
from abhinaya.predict.engine import predict_probabilities
from abhinaya.predict.speaker_norm import speaker_counts
from abhinaya.predictions import PredictionTable, table_from_probs
from abhinaya.runs import LoadedRun, load_run


class InputError(ValueError):
    """An input path that is neither a manifest, an audio file nor a folder."""


def gather_inputs(
    inputs: Iterable[str | Path], split: str | None = None, corpus: str | None = None
) -> list[Utterance]:
    """Utterances from manifests, audio files and folders. Ids must be unique
    across inputs (audio files are identified by their base name). ``corpus``:
    audio files named as that corpus names them get the speaker of the name."""
    from abhinaya.corpora import speaker_from_file_name

    def audio(path: Path, folder: Path | None) -> Utterance:
        speaker = speaker_from_file_name(corpus, path.stem)
        if speaker is None and folder is not None:
            speaker = str(path.parent)
        return Utterance(id=path.stem, audio=str(path), speaker=speaker)

    utterances: list[Utterance] = []
    for item in inputs:
        path = Path(item)
        if not path.exists():
            raise InputError(f"{path}: no such file or folder")
        if path.is_dir():
            files = find_audio_files(path)
            if not files:
                raise InputError(f"{path}: no audio files ({', '.join(AUDIO_EXTENSIONS)}) in this folder")
            utterances += [audio(f, path) for f in files]
        elif path.suffix.lower() in (".jsonl", ".json"):
            rows = [u for u in read_manifest(path) if split is None or u.split == split]
            if not rows:
                raise InputError(f"{path}: no utterances" + (f" in split {split!r}" if split else ""))
            utterances += rows
        elif path.suffix.lower() in AUDIO_EXTENSIONS:
            utterances.append(audio(path, None))
        else:
            raise InputError(f"{path}: not a manifest (.jsonl), an audio file ({', '.join(AUDIO_EXTENSIONS)}) or a folder")
    seen: dict[str, str] = {}
    for utt in utterances:
        if utt.id in seen:
            raise InputError(f"id {utt.id!r} occurs twice among the inputs ({seen[utt.id]} and {utt.audio or utt.id})")
        seen[utt.id] = utt.audio or utt.id
    return utterances


def predict_utterances(
    run: LoadedRun,
    utterances: Sequence[Utterance],
    *,
    batch_size: int | None = None,
    progress: bool = True,
    report: Callable[[str], None] = print,
    speaker_norm: bool | None = None,
) -> PredictionTable:
    """Predict ``utterances`` with a loaded run; unusable ones are reported and
    left out of the table. ``speaker_norm``: per-speaker normalisation on or
    off, whatever the run's ``predict.speaker_norm`` says (None: as the run)."""
    dataset = run.member.dataset(utterances, None, train=False, on_error="skip")
    for problem in dataset.errors:
        report(f"skipped: {problem}")
    if len(dataset) == 0:
        raise InputError("none of the inputs could be used (see the messages above)")
    batch = batch_size or run.recipe.train.eval_batch_size or 2 * run.recipe.train.batch_size
    config = run.recipe.predict
    if speaker_norm is not None and speaker_norm != config.speaker_norm:
        config = replace(config, speaker_norm=speaker_norm)
    if config.speaker_norm:
        try:
            run.member.pooled_mean(run.model)
        except ValueError as err:
            raise InputError(f"{run.run_dir}: {err}") from None
        counts = speaker_counts([u.speaker for u in dataset.utterances])
        alone = len(dataset) - sum(counts.values())
        if not counts:
            report(
                "per-speaker normalisation: no input has a speaker (a manifest's speaker field, a corpus file name "
                "or a folder gives one), so every utterance keeps the training mean"
            )
        else:
            report(
                f"per-speaker normalisation: {len(counts)} speaker(s), {min(counts.values())}-"
                f"{max(counts.values())} utterances each"
                + (f"; {alone} utterance(s) without a speaker keep the training mean" if alone else "")
            )
    ids, probs = predict_probabilities(
        run.member, run.model, dataset, batch, progress=progress, desc="predict", predict=config
    )
    return table_from_probs(ids, probs, run.label_set, source=str(run.run_dir))


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
) -> PredictionTable:
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    run = load_run(run_dir, device=device)
    utterances = gather_inputs(inputs, split=split, corpus=run.recipe.data.corpus)
    return predict_utterances(
        run, utterances, batch_size=batch_size, progress=progress, report=report, speaker_norm=speaker_norm
    )
