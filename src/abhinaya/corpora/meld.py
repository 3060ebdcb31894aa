"""MELD (Poria et al. 2019): utterance transcripts from *Friends* with
emotion labels. Text only here: ``audio`` is null.

``src`` is one MELD csv or a folder holding any of ``train_sent_emo.csv``,
``dev_sent_emo.csv``, ``test_sent_emo.csv`` (the split comes from the file
name). A folder with none of these but exactly one other csv, or a single csv
with another name, goes to ``split`` or ``train``.

Ids: ``dia{Dialogue_ID}_utt{Utterance_ID}``. Dialogue ids restart in every
split, so when more than one csv is read every id gets its file's split as a
prefix: ``train_dia0_utt0``, ``dev_dia0_utt0``.

Each utterance's ``context`` holds the turns before it in its dialogue (same
csv, ordered by ``Utterance_ID``), oldest first, as ``"Speaker: text"`` lines;
the first turn of a dialogue has none.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from abhinaya.corpora.common import (
    PrepareError,
    PrepareResult,
    assign_splits,
    check_mode,
    check_split_options,
    require_source,
)
from abhinaya.labels import MELD_NAMES
from abhinaya.manifest import Utterance

MELD_FILES: dict[str, str] = {
    "train_sent_emo.csv": "train",
    "dev_sent_emo.csv": "dev",
    "test_sent_emo.csv": "test",
}
_REQUIRED_COLUMNS = ("Utterance", "Speaker", "Emotion", "Dialogue_ID", "Utterance_ID")

# UTF-8 typographic characters read as Windows-1252, as found in copies of MELD.
_MOJIBAKE: dict[str, str] = {
    "â€™": "’",
    "â€˜": "‘",
    "â€œ": "“",
    "â€\x9d": "”",
    "â€": "”",
    "â€¦": "…",
    "â€”": "—",
    "â€“": "–",
    "Ã©": "é",
    "Ã¨": "è",
    "Ã³": "ó",
    "Ã¡": "á",
    "Ã±": "ñ",
    "Â ": " ",
    "\xa0": " ",
}


def fix_mojibake(text: str) -> str:
    """Undo the common mis-decoding of typographic characters (``â€™`` -> ``’``)."""
    if "â€" not in text and "Ã" not in text and "Â" not in text and "\xa0" not in text:
        return text
    for bad in sorted(_MOJIBAKE, key=len, reverse=True):
        text = text.replace(bad, _MOJIBAKE[bad])
    return text


def _sources(root: Path, split: str | None) -> list[tuple[Path, str]]:
    if root.is_file():
        return [(root, MELD_FILES.get(root.name.lower(), split or "train"))]
    standard = [(root / name, name_split) for name, name_split in MELD_FILES.items() if (root / name).is_file()]
    if standard:
        return standard
    others = sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() == ".csv")
    if len(others) == 1:
        return [(others[0], split or "train")]
    if not others:
        raise PrepareError(f"{root}: no MELD csv found (expected {', '.join(MELD_FILES)})")
    raise PrepareError(
        f"{root}: none of {', '.join(MELD_FILES)} but several other csv files "
        f"({', '.join(p.name for p in others[:5])}); name the file to use"
    )


def _read_text(path: Path) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")


def _fill_context(utterances: list[Utterance], dialogue_of: dict[str, int], turn_of: dict[str, int]) -> None:
    """Set each utterance's ``context`` to the earlier turns of its dialogue (one csv's utterances)."""
    dialogues: dict[int, list[Utterance]] = {}
    for utt in utterances:
        dialogues.setdefault(dialogue_of[utt.id], []).append(utt)
    for turns in dialogues.values():
        turns.sort(key=lambda u: turn_of[u.id])
        lines = [f"{u.speaker}: {u.text}" if u.speaker else str(u.text) for u in turns]
        for k, utt in enumerate(turns):
            utt.context = lines[:k] or None


def prepare_meld(
    src: str | Path,
    *,
    dev_speakers=(),
    test_speakers=(),
    split: str | None = None,
    check: str = "none",
) -> PrepareResult:
    """Utterances of MELD csv file(s) at ``src``.

    text: ``Utterance`` (whitespace-normalised, common mojibake fixed); label
    via ``labels.MELD_NAMES``; speaker: ``Speaker``. ``check`` is accepted
    for a uniform interface; MELD has no audio here.
    """
    check_mode(check)
    check_split_options(dev_speakers, test_speakers, split)
    root = require_source(src, "any")
    sources = _sources(root, split)
    prefixed = len(sources) > 1
    problems: list[str] = []
    utterances: list[Utterance] = []
    dialogue_of: dict[str, int] = {}
    turn_of: dict[str, int] = {}
    for path, file_split in sources:
        first_of_file = len(utterances)
        reader = csv.DictReader(io.StringIO(_read_text(path), newline=""))
        columns = reader.fieldnames or []
        missing = [c for c in _REQUIRED_COLUMNS if c not in columns]
        if missing:
            problems.append(f"{path}: not a MELD csv: missing column(s) {', '.join(missing)}")
            continue
        seen: dict[str, int] = {}
        line_end = 1
        for row in reader:
            line, line_end = line_end + 1, reader.line_num
            where = f"{path}:{line}"
            emotion = (row.get("Emotion") or "").strip().lower()
            if emotion not in MELD_NAMES:
                problems.append(f"{where}: unknown emotion {row.get('Emotion')!r} (known: {', '.join(MELD_NAMES)})")
                continue
            ids = []
            for column in ("Dialogue_ID", "Utterance_ID"):
                value = (row.get(column) or "").strip()
                if not value.isdigit():
                    problems.append(f"{where}: {column} {value!r} is missing or not a whole number")
                    break
                ids.append(int(value))
            if len(ids) != 2:
                continue
            utt_id = f"dia{ids[0]}_utt{ids[1]}"
            if prefixed:
                utt_id = f"{file_split}_{utt_id}"
            if utt_id in seen:
                problems.append(f"{where}: duplicate dialogue/utterance id {utt_id} (first on line {seen[utt_id]}); left out")
                continue
            seen[utt_id] = line
            text = " ".join(fix_mojibake(row.get("Utterance") or "").split())
            if not text:
                problems.append(f"{where}: {utt_id} has an empty Utterance; left out")
                continue
            speaker = " ".join(fix_mojibake(row.get("Speaker") or "").split()) or None
            dialogue_of[utt_id], turn_of[utt_id] = ids
            utterances.append(
                Utterance(id=utt_id, audio=None, label=MELD_NAMES[emotion], speaker=speaker, split=file_split, text=text)
            )
        _fill_context(utterances[first_of_file:], dialogue_of, turn_of)
    problems += assign_splits(utterances, dev_speakers, test_speakers, split, source=root)
    return PrepareResult(utterances, problems, [])
