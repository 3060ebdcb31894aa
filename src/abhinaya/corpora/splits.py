"""Speaker-independent splits: no speaker is ever in two splits.

Speakers are sorted (numerically when they are numbers, e.g. RAVDESS actors
"01".."24"), so a split is reproducible from the speaker list alone.
"""

from __future__ import annotations

from typing import Iterable, Sequence

from abhinaya.manifest import Utterance


def _speaker_key(speaker: str):
    return (0, int(speaker), "") if speaker.isdigit() else (1, 0, speaker)


def sorted_speakers(utterances: Iterable[Utterance]) -> list[str]:
    speakers = {u.speaker for u in utterances if u.speaker is not None}
    return sorted(speakers, key=_speaker_key)


def speaker_folds(speakers: Sequence[str], num_folds: int) -> list[list[str]]:
    """Contiguous folds of the sorted speakers (RAVDESS with 5 folds: actors
    1-4, 5-8, ...). Fold sizes differ by at most one."""
    speakers = sorted(speakers, key=_speaker_key)
    if not 1 < num_folds <= len(speakers):
        raise ValueError(f"cannot make {num_folds} speaker folds from {len(speakers)} speakers")
    base, extra = divmod(len(speakers), num_folds)
    folds, start = [], 0
    for k in range(num_folds):
        size = base + (1 if k < extra else 0)
        folds.append(speakers[start : start + size])
        start += size
    return folds


def holdout_speakers(speakers: Sequence[str], num_dev: int, num_test: int) -> tuple[list[str], list[str]]:
    """The last ``num_test`` sorted speakers for test, the ``num_dev`` before
    them for dev; at least one speaker must remain for training."""
    speakers = sorted(speakers, key=_speaker_key)
    if num_dev < 0 or num_test < 0 or num_dev + num_test >= len(speakers):
        raise ValueError(
            f"cannot hold out {num_dev} dev and {num_test} test speakers from {len(speakers)} speakers "
            "and keep one for training"
        )
    test = speakers[len(speakers) - num_test :] if num_test else []
    dev = speakers[len(speakers) - num_test - num_dev : len(speakers) - num_test] if num_dev else []
    return dev, test


def apply_speaker_split(
    utterances: Sequence[Utterance], dev: Iterable[str] = (), test: Iterable[str] = (), default: str = "train"
) -> list[Utterance]:
    """Copies of ``utterances`` with ``split`` set by speaker: ``dev`` and
    ``test`` speakers go there, everybody else to ``default``."""
    dev, test = set(dev), set(test)
    overlap = dev & test
    if overlap:
        raise ValueError(f"speaker(s) {sorted(overlap)} cannot be in both dev and test")
    out = []
    for utt in utterances:
        split = "dev" if utt.speaker in dev else "test" if utt.speaker in test else default
        out.append(Utterance(**{**utt.__dict__, "split": split}))
    return out


def check_speaker_independence(utterances: Sequence[Utterance]) -> None:
    """Raise ``ValueError`` if a speaker appears in more than one split."""
    splits: dict[str, set[str]] = {}
    for utt in utterances:
        if utt.speaker is not None and utt.split is not None:
            splits.setdefault(utt.speaker, set()).add(utt.split)
    shared = {spk: sorted(s) for spk, s in splits.items() if len(s) > 1}
    if shared:
        shown = "; ".join(f"{spk}: {', '.join(s)}" for spk, s in list(shared.items())[:5])
        raise ValueError(f"speaker(s) appear in more than one split ({shown})")
