"""Pieces shared by the corpus preparers: the result type, audio checks and
speaker-based split assignment.

Every problem a preparer finds is a string ``"PATH: what is wrong"`` (for
table rows ``"FILE:LINE: what is wrong"``); the utterance concerned is left
out and everything else is kept. ``notes`` are informational lines (files
skipped on purpose, classes dropped by design) that are not problems.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from abhinaya.audio import AudioError, audio_info, find_audio_files, load_audio
from abhinaya.manifest import Utterance

CHECK_MODES: tuple[str, ...] = ("decode", "header", "none")
"""``decode``: decode every sample (catches corrupt or cut-off compressed files, NaN,
empty audio; slowest). ``header``: read the header only (fast enough for
corpora of hundreds of thousands of files). ``none``: do not open the files
(no durations)."""


class PrepareError(ValueError):
    """A corpus that cannot be prepared at all (missing source, nothing usable,
    or any problem in strict mode)."""


@dataclass
class PrepareResult:
    """What a preparer found: the usable utterances, the problems (each
    ``"PATH: what is wrong"``) and informational notes."""

    utterances: list[Utterance]
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def require_source(src: str | Path, kind: str = "folder") -> Path:
    """``src`` as an absolute ``Path`` (so that manifests never hold paths
    relative to the working directory); a ``PrepareError`` naming it when it
    does not exist or is not a ``kind`` (``"folder"``, ``"file"`` or ``"any"``)."""
    path = Path(src).expanduser().absolute()
    if not path.exists():
        raise PrepareError(f"{path}: source does not exist")
    if kind == "folder" and not path.is_dir():
        raise PrepareError(f"{path}: expected a folder, got a file")
    if kind == "file" and not path.is_file():
        raise PrepareError(f"{path}: expected a file, got a folder")
    return path


def check_mode(check: str) -> str:
    if check not in CHECK_MODES:
        raise ValueError(f"unknown audio check {check!r}; choose one of {', '.join(CHECK_MODES)}")
    return check


def list_audio_files(folder: Path) -> tuple[list[Path], int]:
    """Audio files below ``folder`` (recursive, sorted) and the number of hidden
    ones left out (names or folders starting with ``.``, ``__MACOSX``), which
    archive tools leave behind and which are not recordings."""
    found = find_audio_files(folder)
    kept = []
    for path in found:
        parts = path.relative_to(folder).parts
        if any(part.startswith(".") or part == "__MACOSX" for part in parts):
            continue
        kept.append(path)
    return kept, len(found) - len(kept)


def check_audio_file(path: str | Path, mode: str = "decode") -> tuple[float | None, str | None]:
    """Check one audio file; return ``(duration_seconds, None)`` or
    ``(None, "PATH: what is wrong")``. Mode ``"none"`` returns ``(None, None)``
    without touching the file."""
    check_mode(mode)
    if mode == "none":
        return None, None
    path = Path(path)
    try:
        if path.is_file() and path.stat().st_size == 0:
            raise AudioError(path, "file is empty (0 bytes)")
        info = audio_info(path)
        if mode == "header":
            if info.frames <= 0:
                raise AudioError(path, "contains no audio samples")
            return round(info.duration, 6), None
        wave = load_audio(path, sample_rate=None)
        return round(wave.shape[0] / info.sample_rate, 6), None
    except AudioError as err:
        return None, str(err)
    except OSError as err:
        return None, f"{path}: cannot be read ({err.strerror or err})"


def check_audio_files(paths: Sequence[str | Path], mode: str = "decode") -> list[tuple[float | None, str | None]]:
    """``check_audio_file`` for many files, in the order given. Decoding runs
    on a few threads (libsndfile releases the GIL)."""
    check_mode(mode)
    if mode == "none":
        return [(None, None)] * len(paths)
    workers = min(4, os.cpu_count() or 1, max(1, len(paths)))
    if workers == 1 or mode == "header":
        return [check_audio_file(p, mode) for p in paths]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda p: check_audio_file(p, mode), paths))


def speaker_list(speakers: str | int | Iterable[str | int] | None) -> list[str]:
    """Speaker names from a list, or from one comma-separated string."""
    if speakers is None:
        return []
    if isinstance(speakers, (str, int)):
        speakers = str(speakers).split(",")
    names = [str(s).strip() for s in speakers]
    return [name for name in names if name]


def check_split_options(dev_speakers=(), test_speakers=(), split: str | None = None) -> tuple[list[str], list[str]]:
    """Validate the split options a preparer takes; return the two speaker lists.

    A speaker in both lists, or ``split`` together with speaker lists, is a
    ``ValueError``.
    """
    dev, test = speaker_list(dev_speakers), speaker_list(test_speakers)
    both = sorted(set(dev) & set(test))
    if both:
        raise ValueError(f"speaker(s) {', '.join(both)} named in both dev_speakers and test_speakers")
    if split is not None and (dev or test):
        raise ValueError("split= puts every utterance in one split; it cannot be combined with dev/test speakers")
    if split is not None and not str(split).strip():
        raise ValueError("split= must be a non-empty name")
    return dev, test


def _match_speaker(name: str, speakers: set[str]) -> str | None:
    """The corpus speaker ``name`` refers to: an exact match, else the same
    number (``"1"`` matches ``"01"``)."""
    if name in speakers:
        return name
    if name.isdigit():
        same = [s for s in speakers if s.isdigit() and int(s) == int(name)]
        if len(same) == 1:
            return same[0]
    return None


def assign_splits(
    utterances: Sequence[Utterance],
    dev_speakers=(),
    test_speakers=(),
    split: str | None = None,
    *,
    source: str | Path | None = None,
) -> list[str]:
    """Set ``utt.split`` in place; return the problems found.

    ``split`` forces every utterance into that split. Otherwise utterances of
    the speakers listed move to ``dev`` / ``test`` and the others keep the split
    the preparer gave them. A listed speaker the corpus does not have is a
    problem (named with ``source``); a speaker in both lists is a ``ValueError``.
    """
    dev, test = check_split_options(dev_speakers, test_speakers, split)
    if split is not None:
        for utt in utterances:
            utt.split = str(split).strip()
        return []
    speakers = {utt.speaker for utt in utterances if utt.speaker is not None}
    prefix = f"{source}: " if source is not None else ""
    problems: list[str] = []
    target: dict[str, str] = {}
    for names, name_of_list, split_name in ((dev, "dev_speakers", "dev"), (test, "test_speakers", "test")):
        for name in names:
            match = _match_speaker(name, speakers)
            if match is None:
                known = ", ".join(sorted(speakers)[:30]) + (" ..." if len(speakers) > 30 else "")
                problems.append(f"{prefix}speaker {name!r} named in {name_of_list} is not in the corpus (speakers: {known or 'none'})")
            elif match in target and target[match] != split_name:
                raise ValueError(f"speaker {match!r} named in both dev_speakers and test_speakers")
            else:
                target[match] = split_name
    for utt in utterances:
        if utt.speaker in target:
            utt.split = target[utt.speaker]
    return problems


def drop_duplicate_ids(utterances: Sequence[Utterance]) -> tuple[list[Utterance], list[str]]:
    """Keep the first utterance of each id; a later one is a problem naming
    both audio files."""
    first: dict[str, Utterance] = {}
    kept: list[Utterance] = []
    problems: list[str] = []
    for utt in utterances:
        if utt.id in first:
            other = first[utt.id].audio or first[utt.id].id
            problems.append(f"{utt.audio or utt.id}: duplicate id {utt.id!r} (also {other}); left out")
            continue
        first[utt.id] = utt
        kept.append(utt)
    return kept, problems


def check_utterance_audio(utterances: Sequence[Utterance], mode: str) -> tuple[list[Utterance], list[str]]:
    """Check the audio of each utterance (``mode`` as in ``CHECK_MODES``), fill
    ``duration``; return the usable utterances and the problems."""
    results = check_audio_files([utt.audio for utt in utterances], mode)
    kept: list[Utterance] = []
    problems: list[str] = []
    for utt, (duration, problem) in zip(utterances, results):
        if problem is not None:
            problems.append(problem)
            continue
        utt.duration = duration
        kept.append(utt)
    return kept, problems
