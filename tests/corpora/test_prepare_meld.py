import csv
import shutil
from collections import Counter

import pytest

from abhinaya.corpora import PrepareError, prepare_meld
from abhinaya.corpora.meld import fix_mojibake
from abhinaya.labels import MELD_LABELS
from abhinaya.testing.dummies import MELD_COLUMNS, make_dummy_meld


@pytest.fixture(scope="module")
def meld(tmp_path_factory):
    return make_dummy_meld(tmp_path_factory.mktemp("meld"))


def _write(path, rows):
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(MELD_COLUMNS)
        for row in rows:
            writer.writerow(row)
    return path


def _row(number, text, emotion, dialogue, utterance, speaker="Ross"):
    return [number, text, speaker, emotion, "neutral", dialogue, utterance, 1, 1, "00:00:01,000", "00:00:02,000"]


def test_prepare_meld_folder_mixes_splits_with_prefixed_ids(meld):
    result = prepare_meld(meld)
    utts = result.utterances
    assert result.problems == []
    assert Counter(u.split for u in utts) == {"train": 100, "dev": 30}
    assert set(u.label for u in utts if u.split == "dev") == set(MELD_LABELS)
    assert all(u.audio is None and u.duration is None and u.text for u in utts)
    assert {u.id for u in utts if u.split == "dev"} >= {"dev_dia0_utt0", "dev_dia5_utt4"}
    assert "train_dia0_utt0" in {u.id for u in utts}
    assert len({u.id for u in utts}) == len(utts)
    assert any("’" in u.text for u in utts)


def test_prepare_meld_single_file_keeps_plain_ids(meld):
    result = prepare_meld(meld / "dev_sent_emo.csv")
    assert len(result.utterances) == 30
    assert {u.split for u in result.utterances} == {"dev"}
    assert result.utterances[0].id == "dia0_utt0"
    with (meld / "dev_sent_emo.csv").open(encoding="utf-8", newline="") as handle:
        first = next(csv.DictReader(handle))
    assert result.utterances[0].text == first["Utterance"]
    assert result.utterances[0].speaker == first["Speaker"]


def test_prepare_meld_other_csv_and_forced_split(meld, tmp_path):
    other = shutil.copy(meld / "dev_sent_emo.csv", tmp_path / "friends.csv")
    assert {u.split for u in prepare_meld(tmp_path).utterances} == {"train"}
    assert {u.split for u in prepare_meld(other, split="test").utterances} == {"test"}
    forced = prepare_meld(meld, split="train")
    assert {u.split for u in forced.utterances} == {"train"}
    assert len({u.id for u in forced.utterances}) == 130


def test_prepare_meld_speaker_assignment(meld):
    result = prepare_meld(meld / "train_sent_emo.csv", test_speakers=["Ross"], dev_speakers=["Joey"])
    assert {u.split for u in result.utterances if u.speaker == "Ross"} == {"test"}
    assert {u.split for u in result.utterances if u.speaker == "Joey"} == {"dev"}
    assert {u.split for u in result.utterances if u.speaker not in ("Ross", "Joey")} == {"train"}


def test_prepare_meld_bad_rows_name_file_and_line(tmp_path):
    path = _write(tmp_path / "train_sent_emo.csv", [
        _row(1, "Fine.", "neutral", 0, 0),
        _row(2, "Two\nlines, quoted", "joy", 0, 1),
        _row(3, "Huh?", "confused", 0, 2),
        _row(4, "No dialogue", "anger", "", 3),
        _row(5, "Bad utterance id", "anger", 0, "x"),
        _row(6, "Again", "fear", 0, 0),
        _row(7, "I donâ€™t know… â€œreallyâ€\x9d", "Sadness", 0, 4),
    ])
    result = prepare_meld(path)
    assert [u.id for u in result.utterances] == ["dia0_utt0", "dia0_utt1", "dia0_utt4"]
    assert result.utterances[1].text == "Two lines, quoted"
    assert result.utterances[2].text == "I don’t know… “really”"
    assert result.utterances[2].label == "sad"
    assert len(result.problems) == 4
    assert result.problems[0].startswith(f"{path}:5: unknown emotion 'confused'")
    assert result.problems[1].startswith(f"{path}:6: Dialogue_ID '' is missing")
    assert result.problems[2].startswith(f"{path}:7: Utterance_ID 'x'")
    assert result.problems[3].startswith(f"{path}:8: duplicate dialogue/utterance id dia0_utt0 (first on line 2)")


def test_prepare_meld_missing_columns_and_sources(tmp_path):
    bad = tmp_path / "dev_sent_emo.csv"
    bad.write_text("a,b\n1,2\n", encoding="utf-8")
    result = prepare_meld(tmp_path)
    assert result.utterances == [] and "missing column(s)" in result.problems[0] and str(bad) in result.problems[0]
    with pytest.raises(PrepareError, match="does not exist"):
        prepare_meld(tmp_path / "missing")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(PrepareError, match="no MELD csv"):
        prepare_meld(empty)


def test_fix_mojibake():
    assert fix_mojibake("Itâ€™s") == "It’s"
    assert fix_mojibake("plain ’ text") == "plain ’ text"


def test_prepare_meld_fills_dialogue_context_in_turn_order(tmp_path):
    path = _write(
        tmp_path / "dev_sent_emo.csv",
        [
            _row(1, "Second.", "joy", 0, 1, speaker="Monica"),
            _row(2, "First.", "neutral", 0, 0, speaker="Ross"),
            _row(3, "Third.", "anger", 0, 2, speaker="Ross"),
            _row(4, "Other dialogue.", "sadness", 1, 0, speaker="Joey"),
        ],
    )
    by_id = {u.id: u for u in prepare_meld(path).utterances}
    assert by_id["dia0_utt0"].context is None
    assert by_id["dia0_utt1"].context == ["Ross: First."]
    assert by_id["dia0_utt2"].context == ["Ross: First.", "Monica: Second."]
    assert by_id["dia1_utt0"].context is None  # dialogues do not leak into each other
