import csv
import shutil
from collections import Counter

import pytest

from abhinaya.corpora import PrepareError, prepare_msp_podcast
from abhinaya.labels import MSP_PODCAST_LABELS
from abhinaya.testing.dummies import MSP_PODCAST_COLUMNS, make_dummy_msp_podcast


@pytest.fixture(scope="module")
def msp(tmp_path_factory):
    return make_dummy_msp_podcast(tmp_path_factory.mktemp("msp"), seconds=0.25)


@pytest.fixture
def msp_copy(msp, tmp_path):
    return shutil.copytree(msp, tmp_path / "msp")


def _append_rows(root, rows):
    with (root / "Labels" / "labels_consensus.csv").open("a", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=MSP_PODCAST_COLUMNS, lineterminator="\n")
        for row in rows:
            writer.writerow({c: row.get(c, "") for c in MSP_PODCAST_COLUMNS})


def test_prepare_msp_podcast_dummy(msp):
    result = prepare_msp_podcast(msp)
    utts = result.utterances
    assert result.problems == []
    assert Counter(u.split for u in utts) == {"train": 16, "dev": 16, "test1": 16, "test2": 16, "test3": 4}
    labelled = [u for u in utts if u.split != "test3"]
    assert Counter(u.label for u in labelled) == {label: 8 for label in MSP_PODCAST_LABELS}
    assert all(u.label is None and u.attributes is None and u.speaker is None for u in utts if u.split == "test3")
    assert any("dropped 4 utterance(s)" in note and "O other: 2" in note for note in result.notes)
    for utt in labelled:
        assert set(utt.attributes) == {"arousal", "valence", "dominance"}
        assert all(isinstance(v, float) and 1.0 <= v <= 7.0 for v in utt.attributes.values())
        assert utt.text and utt.duration == pytest.approx(0.25)
    assert all(u.id.startswith("MSP-PODCAST_") and not u.id.endswith(".wav") for u in utts)
    assert all(u.audio == str(msp / "Audios" / f"{u.id}.wav") for u in utts)
    train = [u for u in utts if u.split == "train"]
    assert Counter(u.speaker for u in train) == {None: 8, "101": 8}
    assert {u.gender for u in train} == {None, "male"}
    dev_speakers = {u.speaker for u in utts if u.split == "dev"}
    assert dev_speakers == {"110", "111"}


def test_msp_keep_unlabelled(msp):
    result = prepare_msp_podcast(msp, keep_unlabelled=True, check="none")
    assert Counter(u.label is None for u in result.utterances if u.split in ("train", "dev")) == {False: 32, True: 4}
    assert not any("dropped" in note for note in result.notes)


def test_msp_forced_split_and_speakers(msp):
    forced = prepare_msp_podcast(msp, split="test", check="none")
    assert {u.split for u in forced.utterances} == {"test"}
    moved = prepare_msp_podcast(msp, test_speakers=["101"], dev_speakers=["120"], check="none")
    assert {u.split for u in moved.utterances if u.speaker == "101"} == {"test"}
    assert {u.split for u in moved.utterances if u.speaker == "120"} == {"dev"}
    assert Counter(u.split for u in moved.utterances)["train"] == 8


def test_msp_without_transcripts(msp_copy):
    shutil.rmtree(msp_copy / "Transcripts")
    result = prepare_msp_podcast(msp_copy, check="none")
    assert all(u.text is None for u in result.utterances) and result.problems == []


def test_msp_unlisted_audio(msp_copy):
    audios = msp_copy / "Audios"
    shutil.copy(audios / "MSP-PODCAST_0010_0001.wav", audios / "MSP-PODCAST_0099_0001.wav")
    ignored = prepare_msp_podcast(msp_copy, check="none")
    assert "MSP-PODCAST_0099_0001" not in {u.id for u in ignored.utterances}
    assert any("1 audio file(s) not in labels_consensus.csv ignored" in note for note in ignored.notes)
    kept = prepare_msp_podcast(msp_copy, include_unlisted=True)
    utt = next(u for u in kept.utterances if u.id == "MSP-PODCAST_0099_0001")
    assert (utt.split, utt.label, utt.speaker) == ("test", None, None)
    assert utt.duration == pytest.approx(0.25)
    assert kept.problems == []


def test_msp_bad_rows_and_files(msp_copy):
    labels = msp_copy / "Labels" / "labels_consensus.csv"
    n_lines = len(labels.read_text().splitlines())
    _append_rows(msp_copy, [
        {"FileName": "MSP-PODCAST_0500_0001.wav", "EmoClass": "Z", "Split_Set": "Train"},
        {"FileName": "MSP-PODCAST_0500_0002.wav", "EmoClass": "A", "Split_Set": "Validation"},
        {"FileName": "MSP-PODCAST_0500_0003.wav", "EmoClass": "", "Split_Set": "Train"},
        {"FileName": "MSP-PODCAST_0500_0004.wav", "EmoClass": "H", "Split_Set": "Train"},
        {"FileName": "MSP-PODCAST_0010_0001.wav", "EmoClass": "H", "Split_Set": "Train"},
        {"FileName": "MSP-PODCAST_0500_0005.wav", "EmoClass": "S", "EmoAct": "high", "Split_Set": "Development"},
        {"FileName": "MSP-PODCAST_0500_0006.wav", "EmoClass": "", "Split_Set": "Test2"},
    ])
    audios = msp_copy / "Audios"
    (audios / "MSP-PODCAST_0010_0003.wav").write_bytes(b"")
    shutil.copy(audios / "MSP-PODCAST_0010_0001.wav", audios / "MSP-PODCAST_0500_0005.wav")
    shutil.copy(audios / "MSP-PODCAST_0010_0001.wav", audios / "MSP-PODCAST_0500_0006.wav")
    result = prepare_msp_podcast(msp_copy)
    line = n_lines + 1
    expected = [
        f"{labels}:{line}: MSP-PODCAST_0500_0001.wav: unknown EmoClass 'Z'",
        f"{labels}:{line + 1}: MSP-PODCAST_0500_0002.wav: unknown Split_Set 'Validation'",
        f"{labels}:{line + 2}: MSP-PODCAST_0500_0003.wav: no EmoClass",
        f"{labels}:{line + 4}: MSP-PODCAST_0010_0001.wav listed again (first on line 2)",
        f"{labels}:{line + 5}: MSP-PODCAST_0500_0005.wav: EmoAct 'high' is not a number",
        f"{audios / 'MSP-PODCAST_0010_0003.wav'}: file is empty",
        f"{audios / 'MSP-PODCAST_0500_0004.wav'}: file not found",
    ]
    assert len(result.problems) == len(expected)
    for start in expected:
        assert any(p.startswith(start) for p in result.problems), (start, result.problems)
    by_id = {u.id: u for u in result.utterances}
    assert by_id["MSP-PODCAST_0500_0005"].attributes is None
    assert by_id["MSP-PODCAST_0500_0006"].label is None and by_id["MSP-PODCAST_0500_0006"].split == "test2"
    assert "MSP-PODCAST_0010_0003" not in by_id and len(by_id) == 68 - 1 + 2
    assert len(result.notes) == 2 and any("dropped 4" in n for n in result.notes)
    assert any("labels_detailed.csv: 340 judgements of 68 utterances" in n for n in result.notes)


def test_msp_missing_layout(tmp_path):
    with pytest.raises(PrepareError, match="does not exist"):
        prepare_msp_podcast(tmp_path / "nothing")
    with pytest.raises(PrepareError, match="labels_consensus.csv"):
        prepare_msp_podcast(tmp_path)
