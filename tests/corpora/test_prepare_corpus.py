import json

import pytest

from abhinaya.corpora import PREPARERS, PrepareError, prepare_corpus, summarize
from abhinaya.manifest import read_manifest
from abhinaya.testing.dummies import (
    make_dummy_emodb,
    make_dummy_meld,
    make_dummy_ravdess,
)


@pytest.fixture
def ravdess(tmp_path):
    return make_dummy_ravdess(tmp_path / "ravdess", actors=(1, 2, 3), statements=("01",), seconds=0.2)


def test_registry():
    assert set(PREPARERS) == {"msp-podcast", "ravdess", "emodb", "meld", "csv"}


def test_prepare_corpus_writes_a_sorted_manifest(ravdess, tmp_path):
    output = tmp_path / "ravdess.jsonl"
    result = prepare_corpus("ravdess", ravdess, output, test_speakers=["3"])
    assert result.problems == []
    lines = [json.loads(line) for line in output.read_text(encoding="utf-8").splitlines()]
    assert [r["id"] for r in lines] == sorted(r["id"] for r in lines)
    assert len(lines) == 24
    assert lines[0]["audio"] == "ravdess/Actor_01/03-01-01-01-01-01-01.wav"
    back = read_manifest(output)
    assert back == result.utterances == sorted(result.utterances, key=lambda u: u.id)
    assert summarize(result).splitlines()[:3] == [
        "24 utterance(s), 3 speaker(s), 0.1 min of audio",
        "  train: 16 (angry 2, calm 2, disgust 2, fear 2, happy 2, neutral 2, sad 2, surprise 2)",
        "  test: 8 (angry 1, calm 1, disgust 1, fear 1, happy 1, neutral 1, sad 1, surprise 1)",
    ]


def test_prepare_corpus_reports_and_strict_writes_nothing(ravdess, tmp_path):
    corrupt = ravdess / "Actor_02" / "03-01-04-01-01-01-02.wav"
    corrupt.write_bytes(b"\xff" * 64)
    output = tmp_path / "out.jsonl"
    with pytest.raises(PrepareError, match="strict") as err:
        prepare_corpus("ravdess", ravdess, output, strict=True)
    assert str(corrupt) in str(err.value) and not output.exists()
    result = prepare_corpus("ravdess", ravdess, output)
    assert len(result.utterances) == 23 and len(read_manifest(output)) == 23
    assert result.problems[0].startswith(f"{corrupt}: cannot be decoded")
    assert "1 problem(s)" in summarize(result)


def test_prepare_corpus_nothing_usable(tmp_path):
    root = tmp_path / "ravdess"
    root.mkdir()
    (root / "03-01-01-01-01-01-01.wav").write_bytes(b"")
    (root / "notes.wav").write_bytes(b"")
    output = tmp_path / "out.jsonl"
    with pytest.raises(PrepareError, match="no usable utterances") as err:
        prepare_corpus("ravdess", root, output)
    assert str(root / "notes.wav") in str(err.value) and "empty (0 bytes)" in str(err.value)
    assert not output.exists()
    (root / "03-01-01-01-01-01-01.wav").unlink()
    (root / "notes.wav").unlink()
    with pytest.raises(PrepareError, match="found nothing to prepare as ravdess"):
        prepare_corpus("ravdess", root, output)


def test_prepare_corpus_bad_arguments(tmp_path):
    with pytest.raises(PrepareError, match="does not exist"):
        prepare_corpus("emodb", tmp_path / "missing", tmp_path / "out.jsonl")
    with pytest.raises(PrepareError, match="unknown corpus"):
        prepare_corpus("iemocap", tmp_path, tmp_path / "out.jsonl")
    with pytest.raises(ValueError, match="unknown option"):
        prepare_corpus("meld", tmp_path, tmp_path / "out.jsonl", keep_unlabelled=True)


def test_prepare_corpus_drops_missing_audio_found_by_validation(tmp_path):
    root = make_dummy_emodb(tmp_path / "emodb", speakers=("08",), texts=("a01",), seconds=0.1)
    table = tmp_path / "corpus.csv"
    table.write_text("path,label\nemodb/wav/08a01Wa.wav,angry\nemodb/wav/gone.wav,sad\n", encoding="utf-8")
    result = prepare_corpus("csv", table, tmp_path / "out.jsonl", check="none")
    assert [u.id for u in result.utterances] == ["08a01Wa"]
    assert len(result.problems) == 1 and "audio file not found" in result.problems[0]
    assert str(root / "wav" / "gone.wav") in result.problems[0]


def test_prepare_corpus_custom_labels_pass_validation(tmp_path):
    make_dummy_emodb(tmp_path / "emodb", speakers=("08",), texts=("a01",), seconds=0.1)
    table = tmp_path / "corpus.csv"
    table.write_text("path,label\nemodb/wav/08a01Wa.wav,Frustrated\n", encoding="utf-8")
    result = prepare_corpus("csv", table, tmp_path / "out.jsonl", custom_labels=True)
    assert result.problems == [] and read_manifest(tmp_path / "out.jsonl")[0].label == "frustrated"


def test_prepare_corpus_meld(tmp_path):
    make_dummy_meld(tmp_path / "meld", train_dialogues=4, dev_dialogues=4)
    result = prepare_corpus("meld", tmp_path / "meld", tmp_path / "meld.jsonl")
    records = [json.loads(line) for line in (tmp_path / "meld.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(records) == 40 and records[0]["id"] == "dev_dia0_utt0" and records[0]["audio"] is None
    assert "’" in (tmp_path / "meld.jsonl").read_text(encoding="utf-8")
    assert result.problems == []
