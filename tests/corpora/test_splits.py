import pytest

from abhinaya.corpora.splits import (
    apply_speaker_split,
    check_speaker_independence,
    holdout_speakers,
    sorted_speakers,
    speaker_folds,
)
from abhinaya.manifest import Utterance

ACTORS = [f"{i:02d}" for i in range(1, 21)]


def test_ravdess_folds_are_contiguous_actor_blocks():
    folds = speaker_folds(list(reversed(ACTORS)), 5)
    assert folds[0] == ["01", "02", "03", "04"]
    assert folds[4] == ["17", "18", "19", "20"]
    assert sorted(sum(folds, [])) == ACTORS
    assert [len(f) for f in speaker_folds(["03", "08", "09", "10", "11", "12", "13", "14"], 3)] == [3, 3, 2]
    with pytest.raises(ValueError):
        speaker_folds(["a", "b"], 3)


def test_numeric_speakers_sort_numerically():
    utts = [Utterance(str(i), speaker=s) for i, s in enumerate(["10", "9", "bob", "1"])]
    assert sorted_speakers(utts) == ["1", "9", "10", "bob"]


def test_holdout_and_apply():
    dev, test = holdout_speakers(ACTORS, 2, 4)
    assert dev == ["15", "16"] and test == ["17", "18", "19", "20"]
    with pytest.raises(ValueError, match="keep one for training"):
        holdout_speakers(["a", "b"], 1, 1)
    utts = [Utterance(f"u{i}", speaker=s, split="train") for i, s in enumerate(ACTORS)]
    split = apply_speaker_split(utts, dev=dev, test=test)
    assert {u.split for u in split if u.speaker in test} == {"test"}
    assert {u.split for u in split if u.speaker == "01"} == {"train"}
    assert utts[19].split == "train"  # inputs untouched
    check_speaker_independence(split)
    with pytest.raises(ValueError, match="both dev and test"):
        apply_speaker_split(utts, dev=["01"], test=["01"])


def test_leak_is_detected():
    utts = [Utterance("a", speaker="01", split="train"), Utterance("b", speaker="01", split="test")]
    with pytest.raises(ValueError, match="01: test, train"):
        check_speaker_independence(utts)
