"""A user's own corpus described by a csv file.

Header: ``path,label`` and optionally ``speaker``, ``split``, ``text``,
``gender`` (other columns are ignored and named in a note). ``path`` is
absolute or relative to the csv's folder. ``label`` is any spelling
``labels.canonical_label`` knows, or with ``custom_labels=True`` any name
(kept lower-cased); an empty label means unlabelled (null). The id is the
audio file's base name without extension, so two files with the same stem
are a problem. The split is the ``split`` column (lower-cased), else ``train``.
"""

from __future__ import annotations

import csv
from pathlib import Path

from abhinaya.corpora.common import (
    PrepareError,
    PrepareResult,
    assign_splits,
    check_mode,
    check_split_options,
    check_utterance_audio,
    require_source,
)
from abhinaya.labels import canonical_label
from abhinaya.manifest import Utterance

CSV_COLUMNS: tuple[str, ...] = ("path", "label", "speaker", "split", "text", "gender")
_GENDERS = {"m": "male", "male": "male", "f": "female", "female": "female"}


def prepare_csv(
    src: str | Path,
    *,
    dev_speakers=(),
    test_speakers=(),
    split: str | None = None,
    check: str = "decode",
    custom_labels: bool = False,
) -> PrepareResult:
    """Utterances listed in the csv file ``src``."""
    check_mode(check)
    check_split_options(dev_speakers, test_speakers, split)
    table = require_source(src, "file")
    base = table.resolve().parent
    problems: list[str] = []
    notes: list[str] = []
    candidates: list[Utterance] = []
    first: dict[str, tuple[Path, int]] = {}
    try:
        handle = table.open(encoding="utf-8-sig", newline="")
    except OSError as err:
        raise PrepareError(f"{table}: cannot be read ({err.strerror or err})") from None
    with handle:
        # strict: an unterminated quote is an error at its line, not a field swallowing the rest of the file
        reader = csv.DictReader(handle, strict=True)
        try:
            header = [name.strip().lower() for name in reader.fieldnames or []]
        except UnicodeDecodeError:
            raise PrepareError(f"{table}: not UTF-8 text") from None
        if not header:
            raise PrepareError(f"{table}: empty file (expected a header path,label[,speaker,split,text] and a row "
                               "per audio file)")
        missing = [c for c in ("path", "label") if c not in header]
        if missing:
            raise PrepareError(
                f"{table}: missing column(s) {', '.join(missing)}; the header must be path,label[,speaker,split,text]"
            )
        extra = [c for c in header if c not in CSV_COLUMNS]
        if extra:
            notes.append(f"{table}: ignored column(s) {', '.join(extra)}")
        reader.fieldnames = header
        line_end = 1
        try:
            for row in reader:
                line, line_end = line_end + 1, reader.line_num
                where = f"{table}:{line}"
                fields = len(header) + len(row.get(None) or []) - sum(1 for k, v in row.items() if k and v is None)
                if fields != len(header) and any(v for k, v in row.items() if k is not None):
                    problems.append(f"{where}: {fields} field(s), the header has {len(header)}; left out")
                    continue
                row = {key: (value or "").strip() for key, value in row.items() if key is not None}
                if not any(row.values()):
                    continue
                if not row["path"]:
                    problems.append(f"{where}: empty path")
                    continue
                path = Path(row["path"]).expanduser()
                if not path.is_absolute():
                    path = base / path
                raw_label = row["label"]
                if not raw_label:
                    label = None
                elif custom_labels:
                    label = raw_label.lower()
                else:
                    try:
                        label = canonical_label(raw_label)
                    except ValueError as err:
                        problems.append(f"{where}: {path}: {err}")
                        continue
                stem = path.stem
                if stem in first:
                    other, other_line = first[stem]
                    problems.append(
                        f"{where}: {path}: same id {stem!r} as {other} (line {other_line}); "
                        f"ids are file base names and must be unique; left out"
                    )
                    continue
                first[stem] = (path, line)
                gender = row.get("gender", "")
                if gender and gender.lower() not in _GENDERS:
                    problems.append(f"{where}: {path}: gender {gender!r} is not male/female (m/f); left empty")
                candidates.append(
                    Utterance(
                        id=stem,
                        audio=str(path),
                        label=label,
                        speaker=row.get("speaker") or None,
                        split=(row.get("split") or "train").lower(),
                        text=row.get("text") or None,
                        gender=_GENDERS.get(gender.lower()) if gender else None,
                    )
                )
        except UnicodeDecodeError:
            raise PrepareError(f"{table}: not UTF-8 text (after line {line_end})") from None
        except csv.Error as err:
            reason = "a quote is opened and never closed" if "end of data" in str(err) else str(err)
            raise PrepareError(f"{table}:{line_end + 1}: malformed csv ({reason})") from None
    utterances, audio_problems = check_utterance_audio(candidates, check)
    problems += audio_problems
    problems += assign_splits(utterances, dev_speakers, test_speakers, split, source=table)
    return PrepareResult(utterances, problems, notes)
