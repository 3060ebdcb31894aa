"""MSP-Podcast (Lotfian & Busso; release 1.12 used by the Interspeech 2025
Naturalistic SER Challenge).

Layout::

    SRC/Labels/labels_consensus.csv   FileName, EmoClass, EmoAct, EmoVal, EmoDom,
                                      SpkrID, Gender, Split_Set
    SRC/Audios/<FileName>             the recordings
    SRC/Transcripts/<stem>.txt        optional transcripts

Official splits are kept: Train -> train, Development -> dev, Test1 -> test1,
Test2 -> test2, Test3 -> test3. EmoClass letters map through
``labels.MSP_PODCAST_CODES``; O (other) and X (no agreement) are not classes:
those utterances are dropped (counted in a note) unless ``keep_unlabelled``
keeps them with a null label. Test rows without an EmoClass are kept with a
null label. Audio files in ``Audios/`` that the csv does not list (a test set
distributed without labels) are ignored and counted in a note, or kept with
``include_unlisted=True`` in split ``split`` or ``test``.
"""

from __future__ import annotations

import csv
import os
from dataclasses import replace
from pathlib import Path

from abhinaya.audio import AUDIO_EXTENSIONS
from abhinaya.corpora.common import (
    PrepareError,
    PrepareResult,
    assign_splits,
    check_mode,
    check_split_options,
    check_utterance_audio,
    require_source,
)
from abhinaya.labels import MSP_PODCAST_CODES, MSP_PODCAST_NON_CLASSES, canonical_label
from abhinaya.manifest import Utterance

MSP_PODCAST_SPLITS: dict[str, str] = {
    "train": "train",
    "development": "dev",
    "test1": "test1",
    "test2": "test2",
    "test3": "test3",
}
_ATTRIBUTES = (("EmoAct", "arousal"), ("EmoVal", "valence"), ("EmoDom", "dominance"))
_UNKNOWN = {"", "unknown", "nan", "none", "n/a"}


def _optional(value: str | None) -> str | None:
    value = (value or "").strip()
    return None if value.lower() in _UNKNOWN else value


def _read_transcript(path: Path) -> tuple[str | None, str | None]:
    """(text, problem) for a transcript file that may not exist."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        return None, None
    except UnicodeDecodeError:
        return None, f"{path}: transcript is not UTF-8 text; left out"
    except OSError as err:
        return None, f"{path}: transcript cannot be read ({err.strerror or err}); left out"
    text = " ".join(text.split())
    return (text or None), None


def _read_votes(path: Path, notes: list[str]) -> dict[str, dict[str, float]]:
    """Annotator votes per utterance id from ``labels_detailed.csv`` (one row per judgement: ``FileName``,
    ``EmoClass_Major``), counted per canonical class; judgements outside the eight classes (Other, ...) are not
    counted. Empty when the file is absent."""
    if not path.is_file():
        return {}
    counts: dict[str, dict[str, float]] = {}
    judged = outside = 0
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle)
        missing = sorted({"FileName", "EmoClass_Major"} - set(reader.fieldnames or ()))
        if missing:
            raise PrepareError(f"{path}: missing column(s) {', '.join(missing)} (found: "
                               f"{', '.join(reader.fieldnames or ())})")
        for row in reader:
            stem = Path((row.get("FileName") or "").strip()).stem
            name = (row.get("EmoClass_Major") or "").strip()
            if not stem or not name:
                continue
            judged += 1
            try:
                label = canonical_label(name)
            except ValueError:
                label = None
            if label is None or label not in MSP_PODCAST_CODES.values():
                outside += 1
                continue
            votes = counts.setdefault(stem, {})
            votes[label] = votes.get(label, 0.0) + 1.0
    notes.append(f"{path}: {judged} judgements of {len(counts)} utterances ({outside} outside the eight classes, "
                 "not counted) kept as each utterance's votes")
    return counts


def prepare_msp_podcast(
    src: str | Path,
    *,
    dev_speakers=(),
    test_speakers=(),
    split: str | None = None,
    check: str = "header",
    keep_unlabelled: bool = False,
    include_unlisted: bool = False,
) -> PrepareResult:
    """Utterances of an MSP-Podcast release at ``src``.

    id: FileName without extension; label: EmoClass letter or null; speaker:
    SpkrID (``Unknown`` -> null); gender lower-cased (``Unknown`` -> null);
    attributes: arousal / valence / dominance from EmoAct / EmoVal / EmoDom;
    text: ``Transcripts/<stem>.txt`` where present; votes: the annotator
    judgements of ``Labels/labels_detailed.csv`` per class, where present (not
    for O rows, whose consensus is a class outside the eight). With
    ``keep_unlabelled`` the O and X rows are kept without a label (X: no
    agreement; its votes are what soft-label training uses). Default check is
    ``header`` (the corpus has hundreds of thousands of files).
    """
    check_mode(check)
    check_split_options(dev_speakers, test_speakers, split)
    root = require_source(src, "folder")
    labels_csv = root / "Labels" / "labels_consensus.csv"
    audio_dir = root / "Audios"
    transcript_dir = root / "Transcripts"
    if not labels_csv.is_file():
        raise PrepareError(f"{labels_csv}: label file not found (expected SRC/Labels/labels_consensus.csv)")
    if not audio_dir.is_dir():
        raise PrepareError(f"{audio_dir}: audio folder not found (expected SRC/Audios/)")
    has_transcripts = transcript_dir.is_dir()

    problems: list[str] = []
    notes: list[str] = []
    candidates: list[Utterance] = []
    listed: set[str] = set()
    first_line: dict[str, int] = {}
    dropped = {code: 0 for code in sorted(MSP_PODCAST_NON_CLASSES)}
    outside_consensus: set[str] = set()
    with labels_csv.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle)
        columns = set(reader.fieldnames or ())
        needed = {"FileName"} | ({"Split_Set"} if split is None else set())
        missing = sorted(needed - columns)
        if missing:
            raise PrepareError(f"{labels_csv}: missing column(s) {', '.join(missing)} (found: {', '.join(sorted(columns))})")
        line_end = 1
        for row in reader:
            line, line_end = line_end + 1, reader.line_num
            where = f"{labels_csv}:{line}"
            file_name = (row.get("FileName") or "").strip()
            if not file_name:
                problems.append(f"{where}: empty FileName")
                continue
            stem = Path(file_name).stem
            if stem in first_line:
                problems.append(f"{where}: {file_name} listed again (first on line {first_line[stem]}); left out")
                continue
            first_line[stem] = line
            listed.add(file_name)

            split_set = (row.get("Split_Set") or "").strip()
            row_split = MSP_PODCAST_SPLITS.get(split_set.lower())
            if row_split is None and split is None:
                problems.append(
                    f"{where}: {file_name}: unknown Split_Set {split_set!r} "
                    f"(known: Train, Development, Test1, Test2, Test3)"
                )
                continue

            code = (row.get("EmoClass") or "").strip().upper()
            if code in MSP_PODCAST_CODES:
                label = MSP_PODCAST_CODES[code]
            elif code in MSP_PODCAST_NON_CLASSES:
                if not keep_unlabelled:
                    dropped[code] += 1
                    continue
                label = None
                if code == "O":  # most annotators chose a class outside the eight: its few in-class votes are noise
                    outside_consensus.add(stem)
            elif not code:
                if not (row_split or "").startswith("test") and not keep_unlabelled:
                    problems.append(f"{where}: {file_name}: no EmoClass for a {split_set} utterance; left out")
                    continue
                label = None
            else:
                problems.append(f"{where}: {file_name}: unknown EmoClass {code!r} (known: {', '.join(MSP_PODCAST_CODES)}, O, X)")
                continue

            attributes: dict[str, float] = {}
            for column, name in _ATTRIBUTES:
                value = _optional(row.get(column))
                if value is None:
                    continue
                try:
                    attributes[name] = float(value)
                except ValueError:
                    problems.append(f"{where}: {file_name}: {column} {value!r} is not a number; attribute left out")
            gender = _optional(row.get("Gender"))
            text = None
            if has_transcripts:
                text, problem = _read_transcript(transcript_dir / f"{stem}.txt")
                if problem:
                    problems.append(problem)
            candidates.append(
                Utterance(
                    id=stem,
                    audio=str(audio_dir / file_name),
                    label=label,
                    speaker=_optional(row.get("SpkrID")),
                    split=row_split,
                    text=text,
                    gender=gender.lower() if gender else None,
                    attributes=attributes or None,
                )
            )

    votes = _read_votes(root / "Labels" / "labels_detailed.csv", notes)
    if votes:
        candidates = [replace(u, votes=votes.get(u.id)) if u.id not in outside_consensus else u for u in candidates]

    unlisted = sorted(
        entry.name
        for entry in os.scandir(audio_dir)
        if entry.is_file() and Path(entry.name).suffix.lower() in AUDIO_EXTENSIONS
        and not entry.name.startswith(".") and entry.name not in listed
    )
    if unlisted and include_unlisted:
        for name in unlisted:
            stem = Path(name).stem
            if stem in first_line:
                problems.append(f"{audio_dir / name}: same id as the listed {stem} (another extension); left out")
                continue
            text = None
            if has_transcripts:
                text, problem = _read_transcript(transcript_dir / f"{stem}.txt")
                if problem:
                    problems.append(problem)
            candidates.append(Utterance(id=stem, audio=str(audio_dir / name), split="test", text=text))
        notes.append(f"{audio_dir}: {len(unlisted)} audio file(s) not in {labels_csv.name} kept unlabelled")
    elif unlisted:
        notes.append(
            f"{audio_dir}: {len(unlisted)} audio file(s) not in {labels_csv.name} ignored "
            f"(include_unlisted=True keeps them unlabelled)"
        )

    utterances, audio_problems = check_utterance_audio(candidates, check)
    problems += audio_problems
    problems += assign_splits(utterances, dev_speakers, test_speakers, split, source=labels_csv)
    n_dropped = sum(dropped.values())
    if n_dropped:
        notes.append(
            f"{labels_csv}: dropped {n_dropped} utterance(s) without a class "
            f"(O other: {dropped['O']}, X no agreement: {dropped['X']}); keep_unlabelled=True keeps them"
        )
    return PrepareResult(utterances, problems, notes)
