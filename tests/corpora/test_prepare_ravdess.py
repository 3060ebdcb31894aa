import shutil
from collections import Counter

import pytest

from abhinaya.corpora import PrepareError, prepare_ravdess
from abhinaya.corpora.ravdess import parse_ravdess_name
from abhinaya.labels import RAVDESS_LABELS
from abhinaya.testing.dummies import make_dummy_ravdess


@pytest.fixture(scope="module")
def ravdess(tmp_path_factory):
    return make_dummy_ravdess(tmp_path_factory.mktemp("ravdess"))


@pytest.fixture
def small_ravdess(tmp_path):
    return make_dummy_ravdess(tmp_path / "ravdess", actors=(1, 2), statements=("01",), seconds=0.3)


def test_prepare_ravdess_dummy(ravdess):
    result = prepare_ravdess(ravdess)
    utts = result.utterances
    assert result.problems == [] and result.notes == []
    assert len(utts) == 6 * 8 * 2
    assert Counter(u.label for u in utts) == {label: 12 for label in RAVDESS_LABELS}
    assert Counter(u.speaker for u in utts) == {f"{a:02d}": 16 for a in range(1, 7)}
    assert {u.split for u in utts} == {"train"}
    assert Counter(u.text for u in utts) == {"Kids are talking by the door": 48, "Dogs are sitting by the door": 48}
    assert all(u.duration == pytest.approx(1.0) for u in utts)
    assert all(u.attributes is None for u in utts)
    by_id = {u.id: u for u in utts}
    utt = by_id["03-01-05-01-02-01-04"]
    assert (utt.label, utt.speaker, utt.gender, utt.text) == ("angry", "04", "female", "Dogs are sitting by the door")
    assert utt.audio == str(ravdess / "Actor_04" / "03-01-05-01-02-01-04.wav")
    assert by_id["03-01-01-01-01-01-03"].gender == "male"


def test_ravdess_speaker_splits(ravdess):
    result = prepare_ravdess(ravdess, dev_speakers=["3"], test_speakers="05,06", check="header")
    splits = {(u.speaker, u.split) for u in result.utterances}
    assert splits == {("01", "train"), ("02", "train"), ("04", "train"), ("03", "dev"), ("05", "test"), ("06", "test")}
    assert result.problems == []


def test_ravdess_unknown_speaker_is_a_problem(ravdess):
    result = prepare_ravdess(ravdess, test_speakers=["24"], check="none")
    assert len(result.problems) == 1 and "'24'" in result.problems[0] and str(ravdess) in result.problems[0]
    assert len(result.utterances) == 96


def test_ravdess_forced_split(ravdess):
    result = prepare_ravdess(ravdess, split="test", check="none")
    assert {u.split for u in result.utterances} == {"test"}
    assert all(u.duration is None for u in result.utterances)


def test_ravdess_bad_files_are_reported_and_the_rest_kept(small_ravdess):
    actor = small_ravdess / "Actor_01"
    good = actor / "03-01-01-01-01-01-01.wav"
    corrupt = actor / "03-01-02-01-01-01-01.wav"
    corrupt.write_bytes(b"\x00garbage" * 50)
    empty = actor / "03-01-03-01-01-01-01.wav"
    empty.write_bytes(b"")
    cases = {
        actor / "recording_7.wav": "expected 7 fields",
        actor / "03-01-09-01-01-01-01.wav": "unknown emotion code 09",
        actor / "01-01-03-01-01-02-01.wav": "modality 01",
        actor / "03-01-03-03-01-01-01.wav": "intensity 03",
        actor / "03-01-03-01-01-x1-01.wav": "repetition field",
    }
    for path in cases:
        shutil.copy(good, path)
    shutil.copy(good, actor / "03-02-03-01-01-01-01.wav")  # a song
    result = prepare_ravdess(small_ravdess)
    assert len(result.utterances) == 16 - 2
    ids = {u.id for u in result.utterances}
    assert corrupt.stem not in ids and empty.stem not in ids
    problems = {p.split(": ", 1)[0]: p.split(": ", 1)[1] for p in result.problems}
    assert len(problems) == len(result.problems) == 2 + len(cases)
    assert "cannot be decoded" in problems[str(corrupt)]
    assert "empty (0 bytes)" in problems[str(empty)]
    for path, reason in cases.items():
        assert reason in problems[str(path)], problems[str(path)]
    assert any("skipped 1 song file" in note for note in result.notes)


def test_ravdess_duplicate_stem_is_a_problem(small_ravdess):
    first = small_ravdess / "Actor_01" / "03-01-01-01-01-01-01.wav"
    copy = small_ravdess / "more" / "03-01-01-01-01-01-01.wav"
    copy.parent.mkdir()
    shutil.copy(first, copy)
    result = prepare_ravdess(small_ravdess, check="header")
    assert len(result.utterances) == 16
    assert len(result.problems) == 1
    assert str(copy) in result.problems[0] and str(first) in result.problems[0]


def test_ravdess_missing_source(tmp_path):
    with pytest.raises(PrepareError, match="does not exist"):
        prepare_ravdess(tmp_path / "missing")


def test_parse_ravdess_name():
    fields = parse_ravdess_name("03-01-08-02-01-02-13")
    assert fields["emotion"] == "08" and fields["actor"] == "13" and fields["vocal channel"] == "01"
    with pytest.raises(ValueError, match="vocal channel 03"):
        parse_ravdess_name("03-03-08-02-01-02-13")
