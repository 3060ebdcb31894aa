"""EmoDB, the Berlin Database of Emotional Speech (Burkhardt et al. 2005).

Labels live in the file names only: ``SSTTTEV`` (e.g. ``03a01Fa``) with
speaker (2 digits), text code (``a01`` ... ``b10``), emotion letter (German
initial, ``labels.EMODB_CODES``) and version letter. The release keeps its
audio in ``wav/``; any layout below ``src`` is accepted. No official splits:
every utterance goes to ``train`` unless moved by speaker or forced by
``split``.
"""

from __future__ import annotations

import re
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
from abhinaya.labels import EMODB_CODES
from abhinaya.manifest import Utterance

EMODB_TEXTS: dict[str, str] = {
    "a01": "Der Lappen liegt auf dem Eisschrank.",
    "a02": "Das will sie am Mittwoch abgeben.",
    "a04": "Heute abend könnte ich es ihm sagen.",
    "a05": "Das schwarze Stück Papier befindet sich da oben neben dem Holzstück.",
    "a07": "In sieben Stunden wird es soweit sein.",
    "b01": "Was sind denn das für Tüten, die da unter dem Tisch stehen?",
    "b02": "Sie haben es gerade hochgetragen und jetzt gehen sie wieder runter.",
    "b03": "An den Wochenenden bin ich jetzt immer nach Hause gefahren und habe Agnes besucht.",
    "b09": "Ich will das eben wegbringen und dann mit Karl was trinken gehen.",
    "b10": "Die wird auf dem Platz sein, wo wir sie immer hinlegen.",
}
EMODB_GENDERS: dict[str, str] = {
    "03": "male",
    "08": "female",
    "09": "female",
    "10": "male",
    "11": "male",
    "12": "male",
    "13": "female",
    "14": "female",
    "15": "male",
    "16": "female",
}
_NAME = re.compile(r"^(?P<speaker>\d\d)(?P<text>[a-z]\d\d)(?P<emotion>[A-Z])(?P<version>[a-z])$")


def parse_emodb_name(stem: str) -> dict[str, str]:
    """Fields ``speaker``, ``text``, ``emotion``, ``version`` of an EmoDB file
    stem; a ``ValueError`` saying what is wrong when it does not parse."""
    match = _NAME.match(stem)
    if match is None:
        raise ValueError(
            "file name does not follow the EmoDB pattern SSTTTEV "
            "(2-digit speaker, text code like a01, emotion letter, version letter; e.g. 03a01Fa)"
        )
    fields = match.groupdict()
    if fields["emotion"] not in EMODB_CODES:
        raise ValueError(f"unknown emotion letter {fields['emotion']!r} (known: {', '.join(EMODB_CODES)})")
    if fields["text"] not in EMODB_TEXTS:
        raise ValueError(f"unknown text code {fields['text']!r} (known: {', '.join(EMODB_TEXTS)})")
    return fields


def prepare_emodb(
    src: str | Path,
    *,
    dev_speakers=(),
    test_speakers=(),
    split: str | None = None,
    check: str = "decode",
) -> PrepareResult:
    """Utterances of the EmoDB files below ``src``.

    id: file stem; label via ``labels.EMODB_CODES``; text: the German
    sentence of the text code; speaker: two digits (``"03"``); gender from
    the corpus documentation (``None`` for a speaker it does not list).
    """
    check_mode(check)
    check_split_options(dev_speakers, test_speakers, split)
    root = require_source(src, "folder")
    paths, hidden = list_audio_files(root)
    problems: list[str] = []
    notes: list[str] = []
    candidates: list[Utterance] = []
    for path in paths:
        try:
            fields = parse_emodb_name(path.stem)
        except ValueError as err:
            problems.append(f"{path}: {err}")
            continue
        candidates.append(
            Utterance(
                id=path.stem,
                audio=str(path),
                label=EMODB_CODES[fields["emotion"]],
                speaker=fields["speaker"],
                split="train",
                text=EMODB_TEXTS[fields["text"]],
                gender=EMODB_GENDERS.get(fields["speaker"]),
            )
        )
    candidates, duplicate_problems = drop_duplicate_ids(candidates)
    problems += duplicate_problems
    utterances, audio_problems = check_utterance_audio(candidates, check)
    problems += audio_problems
    problems += assign_splits(utterances, dev_speakers, test_speakers, split, source=root)
    if hidden:
        notes.append(f"{root}: ignored {hidden} hidden file(s) (names starting with '.', __MACOSX)")
    return PrepareResult(utterances, problems, notes)
