"""Prediction on recordings of any length: cut into utterances, every utterance predicted, a timeline per recording.

``abhinaya predict`` keeps only the first ``audio.max_eval_seconds`` (30 s) of a file. With segmentation
(``LongAudioConfig.mode``):

- ``auto`` (default): a file longer than the model's maximum input is cut into utterances by a voice-activity
  detector (``segments.py``); shorter files are predicted exactly as without segmentation, and when no file is
  long the whole prediction is exactly today's (same table, no other file);
- ``always``: every audio file is cut (leading and trailing silence dropped, long speech split);
- ``off``: no segmentation (long files are cut to their beginning, with a note per file).

Each recording is read in blocks, twice (``find_segments`` for the timestamps, then ``cut_segments``); each
segment's samples are written as a float32 WAV at the model's rate to a temporary folder (removed afterwards;
about 230 MB per hour of speech at 16 kHz) and predicted like any other input, by every member of a system. The
segments are predicted ``chunk_seconds`` of audio at a time, so memory stays bounded however long the inputs are;
per-speaker normalisation still sees every segment of a speaker (the pooled vectors are gathered first).

The table keeps the prediction-table contract (one row per utterance; a segment's ``FileName`` is
``<recording>_<start_ms>_<end_ms>``). ``write_recording_outputs`` adds, next to ``OUT.csv``:

- ``OUT.segments.csv``: ``recording,start,end,FileName,EmoClass,prob_*`` (seconds; short files are one row from 0);
- ``OUT.summary.csv``: per recording ``recording,duration,speech_seconds,segments,dominant,share_<label>...``,
  the share of the predicted speech time per class (summing to 1 where there is speech);
- with ``plot``, ``OUT.timeline.png``: the emotion over time, one row per segmented recording.
"""

from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import soundfile as sf

from abhinaya.audio import AudioError, audio_info
from abhinaya.manifest import Utterance
from abhinaya.predict.engine import (
    classify_pooled,
    dimensions_of_pooled,
    predict_pooled,
    predict_probabilities,
    speakers_of,
)
from abhinaya.predict.inputs import (
    InputError,
    NothingToPredict,
    dataset_notes,
    inputs_for_run,
    prediction_settings,
)
from abhinaya.predict.segments import (
    SegmentConfig,
    cut_segments,
    find_segments,
    make_detector,
)
from abhinaya.predictions import (
    DimensionTable,
    PredictionTable,
    table_from_probs,
    write_predictions,
)

SEGMENT_MODES: tuple[str, ...] = ("auto", "always", "off")
DEFAULT_MAX_INPUT = 30.0  # seconds, for members without an audio section (AudioConfig.max_eval_seconds)


@dataclass
class LongAudioConfig:
    """Segmentation at prediction. ``mode``: ``auto``, ``always`` or ``off`` (module docstring); ``segment``: how
    recordings are cut; ``chunk_seconds``: seconds of segments decoded and predicted at a time (bounds memory)."""

    mode: str = "auto"
    segment: SegmentConfig = field(default_factory=SegmentConfig)
    chunk_seconds: float = 600.0

    def __post_init__(self) -> None:
        if self.mode not in SEGMENT_MODES:
            raise ValueError(f"segmentation mode must be one of {', '.join(SEGMENT_MODES)}, got {self.mode!r}")
        if not self.chunk_seconds > 0:
            raise ValueError(f"chunk_seconds must be positive, got {self.chunk_seconds}")


@dataclass
class Recording:
    """One input as the outputs describe it. ``rows``: ``(FileName, start, end)`` of its rows in the table
    (seconds): its segments, or the whole file (from 0) when it was not segmented."""

    id: str
    audio: str | None
    duration: float | None
    segmented: bool
    rows: list[tuple[str, float, float]] = field(default_factory=list)
    detector: str | None = None


@dataclass
class SegmentedInputs:
    """``utterances`` to predict (short files as given, long recordings as their segments) and the
    ``recordings`` they came from, in input order."""

    utterances: list[Utterance]
    recordings: list[Recording]


@dataclass
class RecordingPredictions:
    """A prediction table and, when anything was segmented, the recordings its rows belong to (None otherwise: the
    table is then exactly what prediction without segmentation gives)."""

    table: PredictionTable
    recordings: list[Recording] | None = None


# ----------------------------------------------------------------------------- segmenting the inputs
def _durations(utterances: Sequence[Utterance]) -> dict[str, float | None]:
    """Seconds per audio file from its header (None where it cannot be read: prediction names the problem)."""
    found = {}
    for utt in utterances:
        if utt.audio is None:
            continue
        try:
            found[utt.id] = audio_info(utt.audio).duration
        except AudioError:
            found[utt.id] = None
    return found


def whole_recording(utt: Utterance, duration: float | None, max_seconds: float) -> Recording:
    """A file predicted whole, as the outputs describe it: one row from 0 to its end (or to ``max_seconds``, what the
    model hears), none where its length is unknown (it cannot be read)."""
    end = min(duration, max_seconds) if duration is not None else None
    return Recording(utt.id, utt.audio, duration, False, [(utt.id, 0.0, end)] if end else [])


def whole_recordings(utterances: Sequence[Utterance], max_seconds: float) -> list[Recording]:
    """``whole_recording`` of each of ``utterances`` (lengths from the file headers)."""
    durations = _durations(utterances)
    return [whole_recording(u, durations.get(u.id), max_seconds) for u in utterances]


def long_inputs(utterances: Sequence[Utterance], max_seconds: float) -> list[Utterance]:
    """The utterances whose audio is longer than ``max_seconds`` (by the file header)."""
    durations = _durations(utterances)
    return [u for u in utterances if (durations.get(u.id) or 0.0) > max_seconds]


def segment_inputs(
    utterances: Sequence[Utterance],
    config: LongAudioConfig,
    folder: str | Path,
    *,
    sample_rate: int = 16_000,
    max_seconds: float = DEFAULT_MAX_INPUT,
    report: Callable[[str], None] = print,
) -> SegmentedInputs | None:
    """Cut the recordings among ``utterances`` that ``config.mode`` selects (``auto``: longer than ``max_seconds``,
    the model's maximum input) into segments, written to ``folder`` as float32 WAV files at ``sample_rate``. None
    when nothing is to be cut (prediction is then exactly as without segmentation).

    A recording that cannot be read is reported (``skipped: PATH: reason``, one line) and left out; so is one
    without speech. Segments are at most ``min(segment.max_segment, max_seconds)`` long."""
    if config.mode == "off":
        return None
    durations = _durations(utterances)
    chosen = {
        u.id for u in utterances
        if u.audio is not None and durations.get(u.id) is not None
        and (config.mode == "always" or durations[u.id] > max_seconds)
    }
    if not chosen:
        return None
    segment = config.segment
    if segment.max_segment > max_seconds:
        report(f"note: segments are cut at {max_seconds:g} s, the model's longest input "
               f"(not {segment.max_segment:g} s)")
        segment = replace(segment, max_segment=max_seconds)
    detector = make_detector(segment, report)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    taken = {u.id for u in utterances if u.id not in chosen}
    out: list[Utterance] = []
    recordings: list[Recording] = []
    written = 0
    for utt in utterances:
        if utt.id not in chosen:
            out.append(utt)
            recordings.append(whole_recording(utt, durations.get(utt.id), max_seconds))
            continue
        pieces: list[Utterance] = []
        try:
            found = find_segments(utt.audio, utt.id, segment, detector)
            for seg, wave in cut_segments(utt.audio, found.segments, sample_rate, segment.block_seconds):
                path = folder / f"{written:07d}.wav"
                written += 1
                sf.write(str(path), wave, sample_rate, subtype="FLOAT")
                pieces.append(Utterance(
                    id=seg.id, audio=str(path), speaker=utt.speaker, split=utt.split, gender=utt.gender,
                    duration=wave.shape[0] / sample_rate,
                ))
        except AudioError as err:
            report(f"skipped: {err}")
            continue
        clash = sorted(p.id for p in pieces if p.id in taken)
        if clash:
            raise InputError(f"segment id(s) {', '.join(clash[:3])} of {utt.audio} are also ids of other inputs; "
                             "rename the file")
        taken.update(p.id for p in pieces)
        kept = {p.id for p in pieces}
        rows = [(s.id, s.start, s.end) for s in found.segments if s.id in kept]
        if rows:
            report(f"{utt.audio}: {found.duration:.1f} s cut into {len(rows)} segment(s), {found.speech_seconds:.1f} s "
                   f"of speech ({found.detector} VAD, at most {segment.max_segment:g} s each)")
        else:
            report(f"{utt.audio}: no speech found in {found.duration:.1f} s ({found.detector} VAD); nothing to predict")
        out += pieces
        recordings.append(Recording(utt.id, utt.audio, found.duration, True, rows, found.detector))
    return SegmentedInputs(out, recordings)


# ----------------------------------------------------------------------------- predicting in chunks
def chunks_of(utterances: Sequence[Utterance], seconds: float, fallback: float) -> Iterable[list[Utterance]]:
    """``utterances`` in order, in consecutive lists of at most ``seconds`` of audio (by ``duration``; ``fallback``
    where it is unknown); an utterance longer than ``seconds`` is a list of its own."""
    chunk: list[Utterance] = []
    total = 0.0
    for utt in utterances:
        length = utt.duration if utt.duration is not None else fallback
        if chunk and total + length > seconds:
            yield chunk
            chunk, total = [], 0.0
        chunk.append(utt)
        total += length
    if chunk:
        yield chunk


def _segment_member(member):
    """The member as segments are best predicted with: without an on-disk feature cache, which would only fill with
    the features of temporary files."""
    model = getattr(member.recipe, "model", None)
    if getattr(model, "feature_cache", None) is None:
        return member
    return type(member)(replace(member.recipe, model=replace(model, feature_cache=None)))


def predict_chunked(run, utterances: Sequence[Utterance], **options) -> PredictionTable:
    """The prediction table of ``predict_chunked_and_dimensions`` (same options), without the dimensions."""
    return predict_chunked_and_dimensions(run, utterances, **options)[0]


def predict_chunked_and_dimensions(
    run,
    utterances: Sequence[Utterance],
    *,
    chunk_seconds: float = 600.0,
    batch_size: int | None = None,
    progress: bool = True,
    report: Callable[[str], None] = print,
    speaker_norm: bool | None = None,
) -> tuple[PredictionTable, DimensionTable | None]:
    """As ``predict_utterances_and_dimensions``, but ``chunk_seconds`` of audio at a time (each chunk's dataset
    decoded, predicted and freed before the next), so memory stays bounded for hours of segments. Per-speaker
    normalisation gathers every pooled vector before the head, so a speaker's segments are normalised together
    whatever the chunks; so does a dimension head, whose values come from the same pooled vectors."""
    member = _segment_member(run.member)
    with_dimensions = bool(member.dimension_names())
    config, reference = prediction_settings(run, [u.speaker for u in utterances], speaker_norm, report)
    batch = batch_size or run.recipe.train.eval_batch_size or 2 * run.recipe.train.batch_size
    ids: list[str] = []
    parts: list[np.ndarray] = []
    speakers: list[str | None] = []
    for chunk in chunks_of(utterances, chunk_seconds, DEFAULT_MAX_INPUT):
        dataset = member.dataset(chunk, None, train=False, on_error="skip")
        for problem in dataset.errors:
            report(f"skipped: {problem}")
        for note in dataset_notes(dataset):
            report(note)
        if len(dataset) == 0:
            continue
        if config.speaker_norm or with_dimensions:
            chunk_ids, values = predict_pooled(member, run.model, dataset, batch, progress=progress)
            speakers += speakers_of(dataset, config)
        else:
            chunk_ids, values = predict_probabilities(
                member, run.model, dataset, batch, progress=progress, desc="predict", predict=config
            )
        ids += chunk_ids
        parts.append(values)
        del dataset
        release_memory()
    if not ids:
        raise NothingToPredict()
    values = np.concatenate(parts)
    dimensions = None
    if with_dimensions:
        dimensions = DimensionTable(ids, member.dimension_names(), dimensions_of_pooled(member, run.model, values))
    if config.speaker_norm or with_dimensions:
        values = classify_pooled(member, run.model, values, speakers, config, reference)
    return table_from_probs(ids, values, run.label_set, source=str(run.run_dir)), dimensions


def release_memory() -> None:
    """Give the freed memory of a chunk back to the system. glibc keeps freed blocks of the decoded audio and
    activations in its heap (after large frees it raises its threshold for mapping memory directly), so without a trim
    the resident size climbs chunk after chunk (measured: 780 MB at 1 h, 920 MB at 2 h of audio with S1)."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (macOS, musl, Windows): nothing to trim
        pass


def model_input_limits(recipe) -> tuple[int, float]:
    """``(sample_rate, max_eval_seconds)`` of a member's recipe (16 kHz and 30 s for members without audio)."""
    audio = getattr(recipe, "audio", None)
    return int(getattr(audio, "sample_rate", 16_000)), float(getattr(audio, "max_eval_seconds", DEFAULT_MAX_INPUT))


def predict_recordings(
    run_dir: str | Path,
    inputs: Iterable[str | Path],
    *,
    long_audio: LongAudioConfig | None = None,
    split: str | None = None,
    batch_size: int | None = None,
    device: str | None = None,
    progress: bool = True,
    report: Callable[[str], None] = print,
    speaker_norm: bool | None = None,
    speaker_from: str | None = None,
) -> RecordingPredictions:
    """``abhinaya predict`` with a member's run folder and segmentation (``long_audio``; default ``auto``), all
    inputs at once (``predict/stream.py`` takes them a block at a time). Without anything to segment the result is
    ``predict``'s, exactly. A member that reads text cannot predict segments (they have no transcripts; a system run
    transcribes them): it predicts as without segmentation, with a note."""
    from abhinaya.predict.predictor import MemberPredictor

    recipe, source, utterances = inputs_for_run(run_dir, inputs, split=split, speaker_from=speaker_from)
    predictor = MemberPredictor(run_dir, recipe, source, long_audio=long_audio or LongAudioConfig(), device=device,
                                batch_size=batch_size, speaker_norm=speaker_norm, report=report)
    result = predictor.predict_block(utterances, progress=progress)
    return RecordingPredictions(result.table, result.recordings if result.segmented else None)


# ----------------------------------------------------------------------------- outputs
def summarize_recordings(table: PredictionTable, recordings: Sequence[Recording]) -> list[dict]:
    """Per recording: ``recording``, ``duration``, ``speech_seconds`` (of its predicted rows), ``segments``,
    ``dominant`` (the class with the most time; empty without speech) and ``share_<label>`` for every class of the
    table: the share of that time predicted as the class (the shares sum to 1 where there is speech)."""
    labels = list(table.label_set) if table.label_set is not None else sorted(set(table.labels))
    index = table.by_id()
    rows = []
    for rec in recordings:
        time = dict.fromkeys(labels, 0.0)
        count = 0
        for row_id, start, end in rec.rows:
            if row_id not in index or end is None:
                continue
            time[table.labels[index[row_id]]] += end - start
            count += 1
        speech = sum(time.values())
        row = {
            "recording": rec.id,
            "duration": rec.duration,
            "speech_seconds": speech,
            "segments": count,
            "dominant": max(labels, key=lambda label: time[label]) if speech > 0 else "",
        }
        row.update({f"share_{label}": (time[label] / speech if speech > 0 else 0.0) for label in labels})
        rows.append(row)
    return rows


def _write_csv(path: Path, header: list[str], rows: Iterable[list]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    os.replace(tmp, path)
    return path


def _number(value: float | None, digits: int = 3) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def output_paths(output: str | Path) -> dict[str, Path]:
    """``segments``, ``summary`` and ``timeline`` files next to the table ``output`` (``OUT.csv`` ->
    ``OUT.segments.csv``, ``OUT.summary.csv``, ``OUT.timeline.png``)."""
    output = Path(output)
    stem = output.with_suffix("") if output.suffix.lower() == ".csv" else output
    return {
        "segments": stem.with_name(stem.name + ".segments.csv"),
        "summary": stem.with_name(stem.name + ".summary.csv"),
        "timeline": stem.with_name(stem.name + ".timeline.png"),
    }


def write_recording_outputs(
    output: str | Path, result: RecordingPredictions, *, plot: bool = False, format: str = "csv"
) -> list[Path]:
    """Write the table to ``output`` and, when recordings were segmented, the segment and summary tables (and with
    ``plot`` the timeline) next to it. Returns the paths written."""
    written = [write_predictions(output, result.table, format=format)]
    if result.recordings is None:
        return written
    table, paths = result.table, output_paths(output)
    labels = list(table.label_set) if table.label_set is not None else []
    index = table.by_id()
    segment_rows = []
    for rec in result.recordings:
        for row_id, start, end in rec.rows:
            if row_id not in index:
                continue
            i = index[row_id]
            probs = [f"{p:.6f}" for p in table.probs[i]] if table.probs is not None else []
            segment_rows.append([rec.id, _number(start), _number(end), row_id, table.labels[i], *probs])
    written.append(_write_csv(paths["segments"], ["recording", "start", "end", "FileName", "EmoClass"]
                              + [f"prob_{label}" for label in labels], segment_rows))
    summary = summarize_recordings(table, result.recordings)
    header = ["recording", "duration", "speech_seconds", "segments", "dominant"]
    header += [f"share_{label}" for label in labels]
    written.append(_write_csv(paths["summary"], header, [
        [row["recording"], _number(row["duration"]), _number(row["speech_seconds"]), row["segments"], row["dominant"]]
        + [_number(row[f"share_{label}"], 4) for label in labels]
        for row in summary
    ]))
    if plot:
        written += plot_recordings(paths["timeline"], result)
    return written


def plot_recordings(path: str | Path, result: RecordingPredictions, per_figure: int = 8) -> list[Path]:
    """Timeline PNGs of ``result``'s segmented recordings: ``path`` for the first ``per_figure``, then
    ``<stem>-2.png``..."""
    from abhinaya.evaluation.plots import plot_emotion_timeline

    table = result.table
    index = table.by_id()
    labels = list(table.label_set) if table.label_set is not None else sorted(set(table.labels))
    tracks: dict[str, list[tuple[float, float, str, float]]] = {}
    durations: dict[str, float] = {}
    for rec in result.recordings or []:
        if not rec.segmented:
            continue
        spans = []
        for row_id, start, end in rec.rows:
            if row_id in index and end is not None:
                i = index[row_id]
                label = table.labels[i]
                confidence = float(table.probs[i][labels.index(label)]) if table.probs is not None else 1.0
                spans.append((start, end, label, confidence))
        tracks[rec.id] = spans
        durations[rec.id] = rec.duration or (max((s[1] for s in spans), default=0.0))
    names = list(tracks)
    path = Path(path)
    written = []
    for page, first in enumerate(range(0, len(names), per_figure), start=1):
        target = path if page == 1 else path.with_name(f"{path.stem}-{page}{path.suffix}")
        chosen = names[first:first + per_figure]
        written.append(plot_emotion_timeline({n: tracks[n] for n in chosen}, labels, target,
                                             durations={n: durations[n] for n in chosen}))
    return written


__all__ = [
    "SEGMENT_MODES",
    "LongAudioConfig",
    "chunks_of",
    "Recording",
    "RecordingPredictions",
    "SegmentedInputs",
    "long_inputs",
    "model_input_limits",
    "output_paths",
    "plot_recordings",
    "predict_chunked",
    "predict_recordings",
    "release_memory",
    "segment_inputs",
    "summarize_recordings",
    "write_recording_outputs",
]
