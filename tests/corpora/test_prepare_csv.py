import shutil

import pytest

from abhinaya.corpora import PrepareError, prepare_csv
from abhinaya.testing.dummies import make_dummy_emodb


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    root = make_dummy_emodb(tmp_path_factory.mktemp("clips"), speakers=("08",), texts=("a01",), seconds=0.2)
    return sorted((root / "wav").glob("*.wav"))


@pytest.fixture
def corpus(tmp_path, clips):
    audio = tmp_path / "data" / "audio"
    audio.mkdir(parents=True)
    names = []
    for i, clip in enumerate(clips[:4]):
        names.append(shutil.copy(clip, audio / f"clip{i}.wav"))
    return tmp_path / "data", names


def _table(folder, text):
    path = folder / "corpus.csv"
    path.write_text(text, encoding="utf-8")
    return path


def test_prepare_csv_relative_and_absolute_paths(corpus):
    folder, clips = corpus
    table = _table(folder, (
        "path,label,speaker,split,text\n"
        "audio/clip0.wav,Anger,spk1,,Hello there\n"
        "audio/clip1.wav,happiness,spk1,Dev,\n"
        f"{clips[2]},sad,spk2,test,\"Well, fine\"\n"
        "audio/clip3.wav,,spk2,,\n"
    ))
    result = prepare_csv(table)
    assert result.problems == [] and result.notes == []
    rows = [(u.id, u.label, u.speaker, u.split, u.text) for u in result.utterances]
    assert rows == [
        ("clip0", "angry", "spk1", "train", "Hello there"),
        ("clip1", "happy", "spk1", "dev", None),
        ("clip2", "sad", "spk2", "test", "Well, fine"),
        ("clip3", None, "spk2", "train", None),
    ]
    assert result.utterances[0].audio == str(folder.resolve() / "audio" / "clip0.wav")
    assert all(u.duration == pytest.approx(0.2) for u in result.utterances)
    moved = prepare_csv(table, test_speakers=["spk1"])
    assert [u.split for u in moved.utterances] == ["test", "test", "test", "train"]


def test_prepare_csv_problems(corpus):
    folder, clips = corpus
    (folder / "audio" / "clip3.wav").write_bytes(b"not a wav file")
    (folder / "other").mkdir()
    shutil.copy(clips[0], folder / "other" / "clip0.wav")
    table = _table(folder, (
        "path,label,extra\n"
        "audio/clip0.wav,neutral,x\n"
        "audio/clip1.wav,elated,x\n"
        "other/clip0.wav,sad,x\n"
        "audio/missing.wav,sad,x\n"
        "audio/clip3.wav,fear,x\n"
        ",sad,x\n"
        "audio/clip2.wav,Surprised,x\n"
    ))
    result = prepare_csv(table)
    assert [(u.id, u.label) for u in result.utterances] == [("clip0", "neutral"), ("clip2", "surprise")]
    assert len(result.problems) == 5
    assert result.problems[0].startswith(f"{table}:3: {folder.resolve() / 'audio' / 'clip1.wav'}: unknown emotion label 'elated'")
    assert result.problems[1].startswith(f"{table}:4: {folder.resolve() / 'other' / 'clip0.wav'}: same id 'clip0'")
    assert str(folder.resolve() / "audio" / "clip0.wav") in result.problems[1]
    assert result.problems[2] == f"{table}:7: empty path"
    assert result.problems[3].startswith(f"{folder.resolve() / 'audio' / 'missing.wav'}: file not found")
    assert result.problems[4].startswith(f"{folder.resolve() / 'audio' / 'clip3.wav'}: cannot be decoded")
    assert result.notes == [f"{table}: ignored column(s) extra"]


def test_prepare_csv_custom_labels(corpus):
    folder, _ = corpus
    table = _table(folder, "path,label\naudio/clip0.wav,Frustrated\naudio/clip1.wav,excited\n")
    result = prepare_csv(table, custom_labels=True, check="none")
    assert [u.label for u in result.utterances] == ["frustrated", "excited"]
    assert len(prepare_csv(table, check="none").problems) == 2


def test_prepare_csv_bad_tables(corpus, tmp_path):
    folder, _ = corpus
    with pytest.raises(PrepareError, match="missing column"):
        prepare_csv(_table(folder, "file,emotion\naudio/clip0.wav,sad\n"))
    with pytest.raises(PrepareError, match="does not exist"):
        prepare_csv(tmp_path / "none.csv")
    with pytest.raises(PrepareError, match="expected a file"):
        prepare_csv(folder)


def test_ragged_rows_are_problems_naming_their_line(tmp_path):
    import soundfile as sf
    import numpy as np

    from abhinaya.corpora.generic_csv import prepare_csv

    for name in ("a", "b", "c"):
        sf.write(tmp_path / f"{name}.wav", 0.1 * np.sin(np.arange(8000) / 5.0), 16000)
    table = tmp_path / "list.csv"
    table.write_text("path,label,speaker\na.wav,angry,s1\nb.wav,sad,s1,extra\nc.wav\n", encoding="utf-8")
    result = prepare_csv(table)
    assert [u.id for u in result.utterances] == ["a"]
    assert any("list.csv:3: 4 field(s), the header has 3" in p for p in result.problems)
    assert any("list.csv:4: 1 field(s), the header has 3" in p for p in result.problems)


def test_an_unterminated_quote_is_reported_as_such(tmp_path):
    from abhinaya.corpora.common import PrepareError
    from abhinaya.corpora.generic_csv import prepare_csv

    table = tmp_path / "list.csv"
    table.write_text('path,label\n"a.wav,angry\nb.wav,sad\n', encoding="utf-8")
    with pytest.raises(PrepareError, match="quote is opened and never closed"):
        prepare_csv(table)


def test_an_empty_csv_is_called_empty(tmp_path):
    from abhinaya.corpora.common import PrepareError
    from abhinaya.corpora.generic_csv import prepare_csv

    (tmp_path / "list.csv").write_text("", encoding="utf-8")
    with pytest.raises(PrepareError, match="empty file"):
        prepare_csv(tmp_path / "list.csv")
