"""Corpus preparers: one ``prepare_<corpus>`` function per corpus, each turning
a corpus in its released layout into manifest utterances plus a list of
problems (``"PATH: what is wrong"``), and ``prepare_corpus`` which runs one,
validates the result and writes the manifest.

Every preparer takes ``src`` and the keywords ``dev_speakers``,
``test_speakers``, ``split`` and ``check`` (see ``common``); some take more
(``keep_unlabelled`` and ``include_unlisted`` for MSP-Podcast,
``custom_labels`` for csv corpora). Test dummies of each corpus's layout are
in ``corpora.dummies``.
"""

from __future__ import annotations

import inspect
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from abhinaya.corpora.common import (
    PrepareError,
    PrepareResult,
    assign_splits,
    check_audio_file,
)
from abhinaya.corpora.emodb import parse_emodb_name, prepare_emodb
from abhinaya.corpora.generic_csv import prepare_csv
from abhinaya.corpora.meld import prepare_meld
from abhinaya.corpora.msp_podcast import prepare_msp_podcast
from abhinaya.corpora.ravdess import parse_ravdess_name, prepare_ravdess
from abhinaya.labels import CANONICAL_LABELS
from abhinaya.manifest import validate_manifest, write_manifest

PREPARERS: dict[str, Callable[..., PrepareResult]] = {
    "msp-podcast": prepare_msp_podcast,
    "ravdess": prepare_ravdess,
    "emodb": prepare_emodb,
    "meld": prepare_meld,
    "csv": prepare_csv,
}

# Corpora whose file names carry the speaker: the speaker (as the preparer writes it) of a file stem.
_SPEAKER_IN_NAME: dict[str, Callable[[str], str]] = {
    "ravdess": lambda stem: parse_ravdess_name(stem)["actor"],
    "emodb": lambda stem: parse_emodb_name(stem)["speaker"],
}


def speaker_from_file_name(corpus: str | None, stem: str) -> str | None:
    """The speaker a file name of ``corpus`` names (RAVDESS ``03-01-05-01-02-01-21`` -> ``"21"``, EmoDB ``03a01Fa``
    -> ``"03"``), or None where the corpus's names carry no speaker or this name does not follow its pattern."""
    parse = _SPEAKER_IN_NAME.get(corpus or "")
    if parse is None:
        return None
    try:
        return parse(stem)
    except ValueError:
        return None


__all__ = [
    "PREPARERS",
    "PrepareError",
    "PrepareResult",
    "assign_splits",
    "check_audio_file",
    "prepare_corpus",
    "prepare_csv",
    "prepare_emodb",
    "prepare_meld",
    "prepare_msp_podcast",
    "prepare_ravdess",
    "speaker_from_file_name",
    "summarize",
]

_SHOWN_PROBLEMS = 10


def _problem_list(problems: list[str]) -> str:
    shown = "\n  ".join(problems[:_SHOWN_PROBLEMS])
    more = f"\n  ... and {len(problems) - _SHOWN_PROBLEMS} more" if len(problems) > _SHOWN_PROBLEMS else ""
    return f"\n  {shown}{more}" if problems else ""


def prepare_corpus(
    name: str,
    src: str | Path,
    output: str | Path,
    *,
    strict: bool = False,
    **options,
) -> PrepareResult:
    """Prepare corpus ``name`` (a key of ``PREPARERS``) from ``src`` and write
    the manifest ``output`` (JSONL, sorted by id).

    Utterances that fail validation (missing audio, unknown label, duplicate
    id) are left out and reported with the others. Raises ``PrepareError`` when
    ``src`` does not exist, when no usable utterance remains, or with
    ``strict`` when there was any problem; nothing is written then. Returns
    the written utterances, all problems and notes.
    """
    if name not in PREPARERS:
        raise PrepareError(f"unknown corpus {name!r}; known: {', '.join(PREPARERS)}")
    preparer = PREPARERS[name]
    accepted = [p for p in inspect.signature(preparer).parameters if p != "src"]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ValueError(f"prepare {name}: unknown option(s) {', '.join(unknown)}; accepted: {', '.join(accepted)}")
    src = Path(src).expanduser()
    if not src.exists():
        raise PrepareError(f"{src}: source does not exist")

    result = preparer(src, **options)
    problems = list(result.problems)
    if options.get("custom_labels"):
        allowed = {utt.label for utt in result.utterances if utt.label is not None}
    else:
        allowed = set(CANONICAL_LABELS)
    usable = []
    seen: set[str] = set()
    for utt in result.utterances:
        if utt.id in seen:
            problems.append(f"{utt.audio or src}: duplicate id {utt.id!r}; left out")
            continue
        found = validate_manifest([utt], check_audio=True, allowed_labels=allowed, source=src)
        if found:
            problems += [f"{p}; left out" for p in found]
            continue
        seen.add(utt.id)
        usable.append(utt)

    if not usable:
        if not problems:
            raise PrepareError(f"{src}: found nothing to prepare as {name} (is this the right folder and corpus layout?)")
        raise PrepareError(f"{src}: no usable utterances for {name} ({len(problems)} problem(s)){_problem_list(problems)}")
    if strict and problems:
        raise PrepareError(
            f"{src}: {len(problems)} problem(s) in strict mode; no manifest written{_problem_list(problems)}"
        )
    usable.sort(key=lambda utt: utt.id)
    write_manifest(output, usable)
    return PrepareResult(usable, problems, list(result.notes))


def summarize(result: PrepareResult) -> str:
    """A few lines: totals, then per split the count and the count per label."""
    utterances = result.utterances
    speakers = {u.speaker for u in utterances if u.speaker is not None}
    durations = [u.duration for u in utterances if u.duration is not None]
    head = f"{len(utterances)} utterance(s), {len(speakers)} speaker(s)"
    if durations:
        head += f", {sum(durations) / 60:.1f} min of audio"
    lines = [head]
    by_split: dict[str, Counter] = {}
    for utt in utterances:
        by_split.setdefault(utt.split or "(none)", Counter())[utt.label or "(unlabelled)"] += 1
    order = {"train": 0, "dev": 1, "test": 2}
    for split in sorted(by_split, key=lambda s: (order.get(s, 3), s)):
        counts = by_split[split]
        labels = ", ".join(f"{label} {n}" for label, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
        lines.append(f"  {split}: {sum(counts.values())} ({labels})")
    lines += result.notes
    if result.problems:
        lines.append(f"{len(result.problems)} problem(s)")
    return "\n".join(lines)
