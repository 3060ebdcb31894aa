"""RAVDESS (Livingstone & Russo 2018), speech part.

Labels live in the file names only: ``MM-VV-EE-II-SS-RR-AA`` with modality
(``03`` audio-only), vocal channel (``01`` speech, ``02`` song), emotion,
intensity (``01``/``02``), statement (``01``/``02``), repetition (``01``/``02``)
and actor (odd male, even female). Any folder layout is accepted: audio files
are found recursively.

Song files (vocal channel ``02``) are valid RAVDESS recordings but not speech;
they are skipped and counted in a note, not reported as problems. The corpus
has no official splits: every utterance goes to ``train`` unless speakers are
assigned to dev/test or ``split`` is given.
"""

from __future__ import annotations

from pathlib import Path

from abhinaya.corpora.common import (
    PrepareResult,
    assign_splits,
    check_mode,
    check_split_options,
    check_utterance_audio,
    drop_duplicate_ids,
    list_audio_files,
    require_source,
)
from abhinaya.labels import RAVDESS_CODES
from abhinaya.manifest import Utterance

RAVDESS_STATEMENTS: dict[str, str] = {
    "01": "Kids are talking by the door",
    "02": "Dogs are sitting by the door",
}
_MODALITIES = {"01": "full audio-video", "02": "video-only", "03": "audio-only"}
_FIELDS = ("modality", "vocal channel", "emotion", "intensity", "statement", "repetition", "actor")


def parse_ravdess_name(stem: str) -> dict[str, str]:
    """The fields of a RAVDESS file stem (keys: modality, vocal channel,
    emotion, intensity, statement, repetition, actor; two-digit strings); a
    ``ValueError`` saying what is wrong when it does not parse."""
    parts = stem.split("-")
    if len(parts) != len(_FIELDS):
        raise ValueError(
            f"file name does not follow the RAVDESS pattern MM-VV-EE-II-SS-RR-AA "
            f"(expected {len(_FIELDS)} fields separated by '-', got {len(parts)})"
        )
    fields = dict(zip(_FIELDS, parts))
    for name, value in fields.items():
        if len(value) != 2 or not value.isdigit():
            raise ValueError(f"{name} field {value!r} is not a two-digit number")
    if fields["modality"] != "03":
        kind = _MODALITIES.get(fields["modality"], "unknown")
        raise ValueError(f"modality {fields['modality']} ({kind}) is not audio-only (03)")
    if fields["vocal channel"] not in ("01", "02"):
        raise ValueError(f"vocal channel {fields['vocal channel']} is neither speech (01) nor song (02)")
    if fields["emotion"] not in RAVDESS_CODES:
        raise ValueError(f"unknown emotion code {fields['emotion']} (known: {', '.join(RAVDESS_CODES)})")
    for name in ("intensity", "statement", "repetition"):
        if fields[name] not in ("01", "02"):
            raise ValueError(f"{name} {fields[name]} is not 01 or 02")
    if fields["actor"] == "00":
        raise ValueError("actor 00 does not exist (actors are numbered from 01)")
    return fields


def prepare_ravdess(
    src: str | Path,
    *,
    dev_speakers=(),
    test_speakers=(),
    split: str | None = None,
    check: str = "decode",
) -> PrepareResult:
    """Utterances of the RAVDESS speech files below ``src``.

    id: file stem; label: emotion code via ``labels.RAVDESS_CODES``; text: the
    statement; speaker: actor as two digits (``"01"``); gender from actor
    parity. Split ``train`` unless moved by ``dev_speakers`` / ``test_speakers``
    (actor numbers, ``"1"`` or ``"01"``) or forced by ``split``.
    """
    check_mode(check)
    check_split_options(dev_speakers, test_speakers, split)
    root = require_source(src, "folder")
    paths, hidden = list_audio_files(root)
    problems: list[str] = []
    notes: list[str] = []
    songs = 0
    candidates: list[Utterance] = []
    for path in paths:
        try:
            fields = parse_ravdess_name(path.stem)
        except ValueError as err:
            problems.append(f"{path}: {err}")
            continue
        if fields["vocal channel"] == "02":
            songs += 1
            continue
        actor = fields["actor"]
        candidates.append(
            Utterance(
                id=path.stem,
                audio=str(path),
                label=RAVDESS_CODES[fields["emotion"]],
                speaker=actor,
                split="train",
                text=RAVDESS_STATEMENTS[fields["statement"]],
                gender="male" if int(actor) % 2 else "female",
            )
        )
    candidates, duplicate_problems = drop_duplicate_ids(candidates)
    problems += duplicate_problems
    utterances, audio_problems = check_utterance_audio(candidates, check)
    problems += audio_problems
    problems += assign_splits(utterances, dev_speakers, test_speakers, split, source=root)
    if songs:
        notes.append(f"{root}: skipped {songs} song file(s) (vocal channel 02); only speech is used")
    if hidden:
        notes.append(f"{root}: ignored {hidden} hidden file(s) (names starting with '.', __MACOSX)")
    return PrepareResult(utterances, problems, notes)
