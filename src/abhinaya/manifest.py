"""JSONL utterance manifests: one ``Utterance`` per line.

Fields (DESIGN.md section 3): ``id`` (unique; for audio corpora the audio file's
base name), ``audio`` (path, absolute or relative to the manifest; null for
text-only corpora), ``label`` (canonical name or null), ``speaker``, ``split``,
``text``, ``duration`` (seconds), optional ``gender``, ``attributes`` and
``context`` (the turns that came before this one in its conversation, oldest
first, one display line each such as ``"Monica: What?"``; MELD's preparer
fills it, and text members can put the last few in front of the transcript).

``read_manifest`` resolves relative audio paths against the manifest's folder;
``write_manifest`` writes them relative to it when they lie below it, so a
corpus folder with its manifest can be moved as a whole.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Iterable, Sequence

from abhinaya.labels import CANONICAL_LABELS


class ManifestError(ValueError):
    """A manifest that cannot be read or does not satisfy the contract."""


@dataclass
class Utterance:
    id: str
    audio: str | None = None
    label: str | None = None
    speaker: str | None = None
    split: str | None = None
    text: str | None = None
    duration: float | None = None
    gender: str | None = None
    attributes: dict[str, float] | None = field(default=None)
    context: list[str] | None = field(default=None)
    corpus: str | None = None  # the corpus it comes from, in a manifest of several (data.corpora)
    votes: dict[str, float] | None = field(default=None)  # annotator votes per class (MSP-Podcast labels_detailed)

    def to_dict(self) -> dict:
        record = asdict(self)
        # Optional fields are omitted when empty to keep manifests readable.
        for key in ("gender", "attributes", "context", "corpus", "votes"):
            if record[key] is None:
                del record[key]
        return record


_FIELD_NAMES = {f.name for f in fields(Utterance)}
_REQUIRED = ("id",)


def _utterance_from_record(record: object, where: str) -> Utterance:
    if not isinstance(record, dict):
        raise ManifestError(f"{where}: expected a JSON object, got {type(record).__name__}")
    unknown = sorted(set(record) - _FIELD_NAMES)
    if unknown:
        raise ManifestError(f"{where}: unknown field(s) {unknown}; allowed: {sorted(_FIELD_NAMES)}")
    if not record.get("id") or isinstance(record["id"], (bool, dict, list, float)):
        raise ManifestError(f"{where}: missing or empty 'id' (a string)")
    for key in ("audio", "label", "split", "text", "gender", "corpus"):
        if record.get(key) is not None and not isinstance(record[key], str):
            raise ManifestError(f"{where}: {key!r} must be a string or null, got {record[key]!r}")
    speaker = record.get("speaker")
    if speaker is not None and (isinstance(speaker, bool) or not isinstance(speaker, (str, int))):
        raise ManifestError(f"{where}: 'speaker' must be a string or null, got {record['speaker']!r}")
    attributes = record.get("attributes")
    if attributes is not None and not (
        isinstance(attributes, dict)
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in attributes.values())
    ):
        raise ManifestError(f"{where}: 'attributes' must map names to numbers, got {attributes!r}")
    votes = record.get("votes")
    if votes is not None and not (
        isinstance(votes, dict)
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= 0
                for v in votes.values())
    ):
        raise ManifestError(f"{where}: 'votes' must map class names to counts (numbers >= 0), got {votes!r}")
    utt = Utterance(**record)
    utt.id = str(utt.id)
    if utt.speaker is not None:
        utt.speaker = str(utt.speaker)
    if utt.duration is not None:
        try:
            if isinstance(utt.duration, bool):
                raise TypeError
            utt.duration = float(utt.duration)
        except (TypeError, ValueError):
            raise ManifestError(f"{where}: 'duration' must be a number, got {utt.duration!r}") from None
        if not math.isfinite(utt.duration) or utt.duration < 0:
            raise ManifestError(f"{where}: 'duration' must be a finite number of seconds, got {utt.duration!r}")
    if utt.context is not None:
        if not isinstance(utt.context, list) or not all(isinstance(turn, str) for turn in utt.context):
            raise ManifestError(f"{where}: 'context' must be a list of strings (earlier turns), got {utt.context!r}")
    return utt


def read_manifest(path: str | Path, resolve_audio: bool = True) -> list[Utterance]:
    """Read a JSONL manifest. Blank lines are allowed; anything else malformed is
    a ``ManifestError`` naming the file and line. Duplicate ids are errors."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"{path}: manifest not found")
    base = path.resolve().parent
    utterances: list[Utterance] = []
    seen: dict[str, int] = {}
    with path.open("rb") as handle:
        for lineno, raw in enumerate(handle, start=1):
            where = f"{path}:{lineno}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise ManifestError(f"{where}: not UTF-8 text (byte {err.start + 1} of the line)") from None
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise ManifestError(f"{where}: not valid JSON ({err.msg})") from None
            utt = _utterance_from_record(record, where)
            if utt.id in seen:
                raise ManifestError(f"{where}: duplicate id {utt.id!r} (first on line {seen[utt.id]})")
            seen[utt.id] = lineno
            if resolve_audio and utt.audio is not None and not os.path.isabs(utt.audio):
                utt.audio = str(base / utt.audio)
            utterances.append(utt)
    return utterances


def write_manifest(path: str | Path, utterances: Iterable[Utterance], relative_audio: bool = True) -> Path:
    """Write utterances as JSONL (atomically: a temporary file then a rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    base = path.resolve().parent
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        for utt in utterances:
            record = utt.to_dict()
            audio = record.get("audio")
            if relative_audio and audio:
                audio_path = Path(audio).resolve()
                if audio_path.is_relative_to(base):
                    record["audio"] = audio_path.relative_to(base).as_posix()
                else:
                    record["audio"] = str(audio_path)  # a relative path would be read against the manifest's folder
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    os.replace(tmp, path)
    return path


def validate_manifest(
    utterances: Sequence[Utterance],
    *,
    check_audio: bool = True,
    allowed_labels: Iterable[str] | None = None,
    source: str | Path | None = None,
) -> list[str]:
    """Check utterances against the contract; return every problem found.

    Problems: duplicate ids, unknown labels (outside ``allowed_labels``, by
    default the canonical names), missing audio files (``check_audio``),
    negative durations. An empty list means the manifest is valid.
    """
    prefix = f"{source}: " if source else ""
    allowed = set(allowed_labels) if allowed_labels is not None else set(CANONICAL_LABELS)
    problems: list[str] = []
    seen: set[str] = set()
    for utt in utterances:
        if utt.id in seen:
            problems.append(f"{prefix}duplicate id {utt.id!r}")
        seen.add(utt.id)
        if utt.label is not None and utt.label not in allowed:
            problems.append(f"{prefix}{utt.id}: unknown label {utt.label!r}")
        if check_audio and utt.audio is not None and not Path(utt.audio).is_file():
            problems.append(f"{prefix}{utt.id}: audio file not found: {utt.audio}")
        if utt.duration is not None and utt.duration < 0:
            problems.append(f"{prefix}{utt.id}: negative duration {utt.duration}")
    return problems


def split_utterances(utterances: Sequence[Utterance], split: str) -> list[Utterance]:
    """The utterances of one split (``train``, ``dev``, ``test``, ...)."""
    return [utt for utt in utterances if utt.split == split]
