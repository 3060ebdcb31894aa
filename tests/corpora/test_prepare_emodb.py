import shutil
from collections import Counter

import pytest

from abhinaya.corpora import PrepareError, prepare_emodb
from abhinaya.corpora.emodb import EMODB_TEXTS, parse_emodb_name
from abhinaya.labels import EMODB_LABELS
from abhinaya.testing.dummies import make_dummy_emodb


@pytest.fixture(scope="module")
def emodb(tmp_path_factory):
    return make_dummy_emodb(tmp_path_factory.mktemp("emodb"))


def test_prepare_emodb_dummy(emodb):
    result = prepare_emodb(emodb)
    utts = result.utterances
    assert result.problems == []
    assert len(utts) == 4 * 7 * 2
    assert Counter(u.label for u in utts) == {label: 8 for label in EMODB_LABELS}
    assert {(u.speaker, u.gender) for u in utts} == {("03", "male"), ("08", "female"), ("09", "female"), ("10", "male")}
    assert {u.split for u in utts} == {"train"}
    assert {u.text for u in utts} == {EMODB_TEXTS["a01"], EMODB_TEXTS["b01"]}
    utt = next(u for u in utts if u.id == "03b01La")
    assert utt.label == "boredom" and utt.text == "Was sind denn das für Tüten, die da unter dem Tisch stehen?"
    assert utt.audio == str(emodb / "wav" / "03b01La.wav")
    assert utt.duration == pytest.approx(1.0)


def test_emodb_splits(emodb):
    result = prepare_emodb(emodb, dev_speakers=["09"], test_speakers=["3", "10"], check="header")
    assert Counter(u.split for u in result.utterances) == {"train": 14, "dev": 14, "test": 28}
    assert {u.speaker for u in result.utterances if u.split == "test"} == {"03", "10"}
    forced = prepare_emodb(emodb, split="dev", check="none")
    assert {u.split for u in forced.utterances} == {"dev"}
    with pytest.raises(ValueError):
        prepare_emodb(emodb, dev_speakers=["09"], test_speakers=["09"])


def test_emodb_bad_files(tmp_path):
    root = make_dummy_emodb(tmp_path / "emodb", speakers=("08",), texts=("a02",), seconds=0.2)
    wav = root / "wav"
    good = wav / "08a02Wa.wav"
    (wav / "08a02Fa.wav").write_bytes(b"RIFF....WAVEjunk")
    (wav / "08a02Ta.wav").write_bytes(b"")
    for name in ("08a02Xa.wav", "08c05Wa.wav", "08a02W.wav"):
        shutil.copy(good, wav / name)
    result = prepare_emodb(root)
    assert len(result.utterances) == 5
    reasons = {p.split(": ", 1)[0]: p for p in result.problems}
    assert len(reasons) == 5
    assert "cannot be decoded" in reasons[str(wav / "08a02Fa.wav")]
    assert "empty" in reasons[str(wav / "08a02Ta.wav")]
    assert "unknown emotion letter 'X'" in reasons[str(wav / "08a02Xa.wav")]
    assert "unknown text code 'c05'" in reasons[str(wav / "08c05Wa.wav")]
    assert "EmoDB pattern" in reasons[str(wav / "08a02W.wav")]


def test_emodb_speaker_outside_the_corpus_has_no_gender(tmp_path):
    root = make_dummy_emodb(tmp_path, speakers=("21",), texts=("a01",), seconds=0.1)
    result = prepare_emodb(root, check="header")
    assert len(result.utterances) == 7
    assert {(u.speaker, u.gender) for u in result.utterances} == {("21", None)}


def test_parse_emodb_name():
    assert parse_emodb_name("16b10Ec") == {"speaker": "16", "text": "b10", "emotion": "E", "version": "c"}


def test_emodb_missing_source(tmp_path):
    with pytest.raises(PrepareError, match="does not exist"):
        prepare_emodb(tmp_path / "emodb")
